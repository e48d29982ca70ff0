"""The command table: packet name -> handler. Find any packet's code in one hop:

    ?  D  k  vKill  H  T  qC  qfThreadInfo  qAttached  qOffsets  qSymbol  qSupported
    QStartNoAckMode  vMustReplyEmpty  qTStatus                -> base.py
    g  G  p  P                                                -> registers.py
    m  M  X                                                   -> memory.py
    c  C  s  S  vCont?  vCont                                 -> resume.py
    Z  z                                                      -> breakpoints.py
    qXfer (features, auxv, exec-file, threads, siginfo,
           libraries-svr4)                                    -> xfer.py
    vFile (setfs, open, pread, fstat, close, readlink)        -> host_io.py
    qRcmd (monitor ...)                                       -> monitor.py

Each handler is `handler(session, args) -> bytes | Output | list[Output]`, where
`args` is the payload after the name. Handlers raise RspError subclasses for
errors; session._dispatch turns them into replies.
"""

from __future__ import annotations

import re

from . import base, breakpoints, host_io, memory, monitor, registers, resume, xfer

COMMANDS = {
    **base.COMMANDS,
    **registers.COMMANDS,
    **memory.COMMANDS,
    **resume.COMMANDS,
    **breakpoints.COMMANDS,
    **xfer.COMMANDS,
    **host_io.COMMANDS,
    **monitor.COMMANDS,
}

_NAME_END = re.compile(rb"[:;,]")


def packet_name(payload: bytes) -> tuple[bytes, bytes]:
    """Split a payload into the name the table is keyed by and the rest.

    Single-letter packets (`m400000,4`) are named by their letter; `q`, `Q`
    and `v` packets by the word before the first `:`, `;` or `,`
    (`vCont;c` -> `vCont`, but `vCont?` stays whole).
    """
    if not payload:
        return b"", b""
    if payload[:1] not in (b"q", b"Q", b"v"):
        return payload[:1], payload[1:]
    separator = _NAME_END.search(payload)
    end = separator.start() if separator else len(payload)
    return payload[:end], payload[end:]
