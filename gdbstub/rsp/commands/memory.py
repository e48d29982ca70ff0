"""`m`, `M`, `X`: program memory. Debugger accesses never trigger watchpoints."""

from __future__ import annotations

import errno

from ..errors import MalformedPacket, TargetError
from ..limits import PACKET_SIZE, REPLY_HEADER_ROOM
from ._parse import addr_length, hex_bytes, split


def handle_m(session, args: bytes) -> bytes:
    """Read: a partial read returns what is readable; nothing readable is EFAULT."""
    addr, length = addr_length(args)
    length = min(length, (PACKET_SIZE - REPLY_HEADER_ROOM) // 2)   # two hex digits a byte
    data = session.target.read_memory(addr, length)
    if length and not data:
        raise TargetError(errno.EFAULT, f"cannot read memory at 0x{addr:x}")
    return data.hex().encode()


def next_read(request: bytes, reply: bytes) -> bytes | None:
    """After `m addr,length` answered with `reply` (n bytes, in hex), the `m addr+n,length` that
    would continue that read; None if `request` is no well-formed `m`."""
    if not request.startswith(b"m"):
        return None
    try:
        addr, length = addr_length(request[1:])
    except MalformedPacket:
        return None
    return b"m%x,%x" % (addr + len(reply) // 2, length)


def _write(session, addr: int, data: bytes) -> bytes:
    try:
        session.target.write_memory(addr, data)
    except OSError as exc:
        raise TargetError(exc.errno or errno.EFAULT, f"cannot write memory at 0x{addr:x}") from None
    return b"OK"


def handle_M(session, args: bytes) -> bytes:
    where, data = split(args, b":", 2, "M addr,length:data")
    addr, length = addr_length(where)
    data = hex_bytes(data)
    if len(data) != length:
        raise MalformedPacket(f"M: length {length} but {len(data)} bytes")
    return _write(session, addr, data)


def handle_X(session, args: bytes) -> bytes:
    """Binary write; the codec already undid the `}` escapes. `X addr,0:` probes support."""
    where, data = split(args, b":", 2, "X addr,length:data")
    addr, length = addr_length(where)
    if len(data) != length:
        raise MalformedPacket(f"X: length {length} but {len(data)} bytes")
    if not length:
        return b"OK"
    return _write(session, addr, data)


COMMANDS = {b"m": handle_m, b"M": handle_M, b"X": handle_X}
