"""`qRcmd,<hex command>`: gdb's `monitor ...`. Output goes out as `O` packets, then OK.

The commands themselves live in gdbstub/monitor.py, outside the protocol layer.
"""

from __future__ import annotations

from ..outputs import Reply
from ._parse import hex_bytes

_O_CHUNK = 1024   # text bytes per `O` packet (2 hex digits each)


def handle_qRcmd(session, args: bytes) -> list[Reply]:
    command = hex_bytes(args[1:]).decode("utf-8", errors="replace")
    text = session.target.monitor(command)
    data = text.encode()
    replies = [Reply(b"O" + data[i : i + _O_CHUNK].hex().encode()) for i in range(0, len(data), _O_CHUNK)]
    replies.append(Reply(b"OK"))
    return replies


COMMANDS = {b"qRcmd": handle_qRcmd}
