"""`Z`/`z type,addr,kind`: breakpoints and watchpoints.

Z0 are software breakpoints kept by the CPU, never patched into memory.
Z1-Z4 go through the target's debugger consumer of the core breakpoint API;
a target without one answers empty (gdb: "not supported").
"""

from __future__ import annotations

from ..errors import MalformedPacket, Unsupported
from ._parse import hex_int, split


def _parse(args: bytes) -> tuple[int, int, int]:
    # Conditions and commands (`;X...`) are only sent when offered; we offer none.
    fields = split(args.split(b";", 1)[0], b",", 3, "Z type,addr,kind")
    kind_text = fields[0]
    if len(kind_text) != 1 or not kind_text.isdigit():
        raise MalformedPacket(f"bad breakpoint type {kind_text!r}")
    return int(kind_text), hex_int(fields[1], "address"), hex_int(fields[2], "kind")


def _handle(session, args: bytes, *, insert: bool) -> bytes:
    ztype, addr, kind = _parse(args)
    if ztype == 0:
        (session.target.insert_sw_breakpoint if insert else session.target.remove_sw_breakpoint)(addr)
        return b"OK"
    if ztype > 4 or session.target.debugger is None:
        raise Unsupported(f"{'Z' if insert else 'z'}{ztype}")
    (session.target.debugger.insert if insert else session.target.debugger.remove)(ztype, addr, kind)
    return b"OK"


def handle_Z(session, args: bytes) -> bytes:
    return _handle(session, args, insert=True)


def handle_z(session, args: bytes) -> bytes:
    return _handle(session, args, insert=False)


COMMANDS = {b"Z": handle_Z, b"z": handle_z}
