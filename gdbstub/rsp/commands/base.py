"""Connection, thread and status packets (GDB manual: "Packets", "General Query Packets")."""

from __future__ import annotations

import errno

from ..errors import TargetError, Unsupported
from ..limits import PACKET_SIZE
from ..outputs import EnterNoAck, Reply
from ._parse import hex_int, thread_id


def handle_qSupported(session, args: bytes) -> bytes:
    """`qSupported:feature;feature...`: remember what gdb offers, say what we implement."""
    offered = args[1:].split(b";") if args.startswith(b":") else []
    session.gdb_features = {f[:-1] for f in offered if f.endswith(b"+")}
    features = [
        b"PacketSize=%x" % PACKET_SIZE,
        b"QStartNoAckMode+",
        b"qXfer:features:read+",
        b"qXfer:exec-file:read+",
        b"qXfer:auxv:read+",
        b"qXfer:threads:read+",
        b"qXfer:siginfo:read+",
        b"qXfer:libraries-svr4:read+",
        b"swbreak+",
        b"vContSupported+",
    ]
    if session.target.has_hw_breakpoints:
        features.append(b"hwbreak+")
    return b";".join(features)


def handle_QStartNoAckMode(session, args: bytes):
    """The OK is still acknowledged; the codec drops acks after sending it."""
    return [Reply(b"OK"), EnterNoAck()]


def handle_unsupported(session, args: bytes) -> bytes:
    """vMustReplyEmpty must get the empty reply; qTStatus: no tracepoints here."""
    raise Unsupported("reply empty")


def handle_question(session, args: bytes) -> bytes:
    """`?`: why the program last stopped."""
    return session.stop_reply(session.last_stop)


def handle_D(session, args: bytes):
    """Detach: release gdb's breakpoints; the program stays stopped for the next client."""
    return [Reply(b"OK"), session.close("detached")]


def handle_k(session, args: bytes):
    """Kill: end the program (the server starts it afresh for the next client); no reply."""
    session.target.kill()
    return [session.close("killed")]


def handle_vKill(session, args: bytes):
    """`vKill;pid`: as `k`, but answered OK (gdb tries it first: one exchange less than `k`).

    One process is served, and without multiprocess+ gdb names it by a pid of its own (42000):
    any well-formed pid means it."""
    hex_int(args.removeprefix(b";"), "pid")
    session.target.kill()
    return [Reply(b"OK"), session.close("killed")]


def _check_thread(session, tid: int) -> None:
    if tid not in (0, -1, session.target.tid):
        raise TargetError(errno.ESRCH, f"no thread {tid:x}")


def handle_H(session, args: bytes) -> bytes:
    """`Hg<tid>` / `Hc<tid>`: one thread, so only check that it is ours."""
    if args[:1] not in (b"g", b"c"):
        raise Unsupported("H" + args[:1].decode(errors="replace"))
    _check_thread(session, thread_id(args[1:]))
    return b"OK"


def handle_T(session, args: bytes) -> bytes:
    """`T<tid>`: is the thread alive?"""
    _check_thread(session, thread_id(args))
    if session.target.exited:
        raise TargetError(errno.ESRCH, "the program has exited")
    return b"OK"


def handle_qC(session, args: bytes) -> bytes:
    return b"QC%x" % session.target.tid


def handle_qfThreadInfo(session, args: bytes) -> bytes:
    return b"m%x" % session.target.tid


def handle_qsThreadInfo(session, args: bytes) -> bytes:
    return b"l"


def handle_qAttached(session, args: bytes) -> bytes:
    """0: we started the program, so gdb offers to kill it on quit."""
    return b"0"


def handle_qOffsets(session, args: bytes) -> bytes:
    """The load bias (non-zero only for static-pie programs)."""
    bias = session.target.load_bias
    return b"Text=%x;Data=%x;Bss=%x" % (bias, bias, bias)


def handle_qSymbol(session, args: bytes) -> bytes:
    """We need no symbol values from gdb."""
    return b"OK"


COMMANDS = {
    b"qSupported": handle_qSupported,
    b"QStartNoAckMode": handle_QStartNoAckMode,
    b"vMustReplyEmpty": handle_unsupported,
    b"qTStatus": handle_unsupported,
    b"?": handle_question,
    b"D": handle_D,
    b"k": handle_k,
    b"vKill": handle_vKill,
    b"H": handle_H,
    b"T": handle_T,
    b"qC": handle_qC,
    b"qfThreadInfo": handle_qfThreadInfo,
    b"qsThreadInfo": handle_qsThreadInfo,
    b"qAttached": handle_qAttached,
    b"qOffsets": handle_qOffsets,
    b"qSymbol": handle_qSymbol,
}
