"""`vFile:...`: gdb reads the served program's file through us (host I/O).

Only the program itself can be opened, read-only (target/hostio.py enforces it).
Replies are `F<result>[,errno][;binary data]`, numbers in hex.
"""

from __future__ import annotations

from ...target.hostio import HostIOError
from ..errors import Unsupported
from ..limits import PACKET_SIZE, fit_binary_reply
from ..outputs import Reply
from ._parse import hex_bytes, hex_int, split


def _ok(result: int, data: bytes | None = None) -> Reply:
    head = b"F%x" % result
    if data is None:
        return Reply(head)
    return Reply(head + b";" + data, binary=True)


def _setfs(hio, args):
    return _ok(hio.setfs(hex_int(args, "pid")))


def _open(hio, args):
    path, flags, mode = split(args, b",", 3, "vFile arguments")
    return _ok(hio.open(hex_bytes(path), hex_int(flags, "flags"), hex_int(mode, "mode")))


# gdb reads the file through a one-chunk cache and asks for a whole PacketSize at each miss, while
# it wants one part of the ELF file at a time (a header table, a section, the symbol table). Bytes
# past that part would be sent, decoded by gdb and thrown away, at over 10 ns each to gdb. So a
# read gets the rest of the part it starts in, and at least _PREAD_MIN bytes, which cover the
# small parts gdb reads one after another (the ELF header, the program headers, the notes).
# Measured, gdb connecting with no local file: see docs/performance.md.
_PREAD_MIN = 0x400


def _pread(hio, args):
    fd, count, offset = split(args, b",", 3, "vFile arguments")
    fd, count, offset = hex_int(fd, "fd"), hex_int(count, "count"), hex_int(offset, "offset")
    wanted = max(_PREAD_MIN, hio.part_rest(fd, offset))
    data = fit_binary_reply(hio.pread(fd, min(count, wanted, PACKET_SIZE), offset))
    return _ok(len(data), data)


def _fstat(hio, args):
    data = hio.fstat(hex_int(args, "fd"))
    return _ok(len(data), data)


def _close(hio, args):
    hio.close(hex_int(args, "fd"))
    return _ok(0)


def _readlink(hio, args):
    data = hio.readlink(hex_bytes(args))
    return _ok(len(data), data)


_OPERATIONS = {
    b"setfs": _setfs,
    b"open": _open,
    b"pread": _pread,
    b"fstat": _fstat,
    b"close": _close,
    b"readlink": _readlink,
}


def handle_vFile(session, args: bytes) -> Reply:
    op, _, rest = args[1:].partition(b":")
    operation = _OPERATIONS.get(op)
    if operation is None:
        raise Unsupported(f"vFile:{op!r}")   # pwrite, unlink...: never on the host
    try:
        return operation(session.target.hostio, rest)
    except HostIOError as exc:
        return Reply(b"F-1,%x" % exc.errno)


COMMANDS = {b"vFile": handle_vFile}
