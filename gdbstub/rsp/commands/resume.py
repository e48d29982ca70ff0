"""`c`, `s`, `C`, `S`, `vCont?`, `vCont`: resuming the program.

A resume never replies at once: it returns StartRun, and the stop reply is
sent when the CPU's StopEvent comes back (session.stopped).
"""

from __future__ import annotations

from ..errors import MalformedPacket
from ._parse import hex_int, thread_id


def _resume_at(session, addr: bytes, *, step: bool, signal: int = 0):
    if addr:
        session.target.set_pc(hex_int(addr, "address"))
    return session.resume(step=step, signal=signal)


def handle_c(session, args: bytes):
    return _resume_at(session, args, step=False)


def handle_s(session, args: bytes):
    return _resume_at(session, args, step=True)


def _signal_and_addr(args: bytes) -> tuple[int, bytes]:
    sig, _, addr = args.partition(b";")
    return hex_int(sig, "signal"), addr


def handle_C(session, args: bytes):
    signal, addr = _signal_and_addr(args)
    return _resume_at(session, addr, step=False, signal=signal)


def handle_S(session, args: bytes):
    signal, addr = _signal_and_addr(args)
    return _resume_at(session, addr, step=True, signal=signal)


def handle_vCont_query(session, args: bytes) -> bytes:
    return b"vCont;c;C;s;S;t"


def handle_vCont(session, args: bytes):
    """`vCont;action[:tid];...`: apply the first action that names our thread (or all)."""
    if not args.startswith(b";"):
        raise MalformedPacket("vCont needs actions")
    ours = session.target.tid
    for action in args[1:].split(b";"):
        verb, _, tid = action.partition(b":")
        if tid and thread_id(tid) not in (-1, 0, ours):
            continue
        kind = verb[:1]
        if kind == b"c":
            return session.resume(step=False)
        if kind == b"s":
            return session.resume(step=True)
        if kind in (b"C", b"S"):
            return session.resume(step=kind == b"S", signal=hex_int(verb[1:], "signal"))
        if kind == b"t":
            return b"OK"   # all-stop: the thread is already stopped
        raise MalformedPacket(f"unknown vCont action {verb!r}")
    return b"OK"            # no action for our thread: it stays stopped


COMMANDS = {
    b"c": handle_c,
    b"s": handle_s,
    b"C": handle_C,
    b"S": handle_S,
    b"vCont?": handle_vCont_query,
    b"vCont": handle_vCont,
}
