"""`qXfer:object:read:annex:offset,length`: target.xml, the auxv, the exec-file path, the threads,
the siginfo of the last stop, the shared-library list."""

from __future__ import annotations

import errno
from xml.sax.saxutils import escape

from ..errors import MalformedPacket, TargetError, Unsupported
from ..limits import fit_binary_reply
from ..outputs import Reply
from ._parse import addr_length


def _features(session, annex: bytes) -> bytes:
    if annex != b"target.xml":
        raise TargetError(0, f"no target description {annex!r}")   # E00: bad annex
    return session.target.target_xml.encode()


def _auxv(session, annex: bytes) -> bytes:
    return session.target.auxv


def _exec_file(session, annex: bytes) -> bytes:
    return session.target.exec_path.encode()


def _threads(session, annex: bytes) -> bytes:
    """One packet instead of qfThreadInfo + qsThreadInfo, which gdb asks at every stop."""
    target = session.target
    name = escape(target.comm, {'"': "&quot;"})
    return (f'<?xml version="1.0"?>\n<threads>\n'
            f'<thread id="{target.tid:x}" core="0" name="{name}"/>\n</threads>\n').encode()


def _siginfo(session, annex: bytes) -> bytes:
    try:
        return session.target.siginfo(session.last_stop)
    except OSError as exc:
        raise TargetError(exc.errno, exc.strerror) from None


# The served process has no file system to load a library from (open gets ENOENT, and the loader
# refuses programs that need one), so its list is always empty. Said outright, it spares gdb its
# own search: without it, gdb walks the program headers in memory one `m` at a time (30 packets
# per connect), which is what it does against gdbserver, whose list fails for a static program.
_NO_LIBRARIES = b'<library-list-svr4 version="1.0"/>'


def _libraries_svr4(session, annex: bytes) -> bytes:
    return _NO_LIBRARIES


_OBJECTS = {b"features": _features, b"auxv": _auxv, b"exec-file": _exec_file, b"threads": _threads,
            b"siginfo": _siginfo, b"libraries-svr4": _libraries_svr4}


def handle_qXfer(session, args: bytes) -> Reply:
    fields = args[1:].split(b":")
    if len(fields) != 4:
        raise MalformedPacket("qXfer:object:read:annex:offset,length")
    obj, op, annex, window = fields
    reader = _OBJECTS.get(obj)
    if reader is None or op != b"read":
        raise Unsupported(f"qXfer:{obj!r}:{op!r}")
    offset, length = addr_length(window)
    data = reader(session, annex)
    if offset > len(data):
        raise TargetError(errno.EINVAL, f"offset {offset} beyond {len(data)}")
    chunk = fit_binary_reply(data[offset : offset + length])
    more = offset + len(chunk) < len(data)
    return Reply((b"m" if more else b"l") + chunk, binary=True)


COMMANDS = {b"qXfer": handle_qXfer}
