"""StopEvent -> the stop-reply packet (GDB manual, "Stop Reply Packets")."""

from __future__ import annotations

from ..hwbp.attr import HW_BREAKPOINT_R, HW_BREAKPOINT_RW
from ..target.events import StopEvent, StopKind

# The letter gdb reads for a watchpoint of each kind; all three mean "stopped by a watchpoint".
_WATCH_WORD = {HW_BREAKPOINT_R: b"rwatch", HW_BREAKPOINT_RW: b"awatch"}


def format_stop_reply(
    event: StopEvent,
    *,
    expedited: list[tuple[int, bytes]],
    swbreak: bool,
    hwbreak: bool,
) -> bytes:
    """Build `T..`, `W..` or `X..`.

    `expedited` is [(regnum, little-endian value)] for the registers gdb reads
    at every stop (rbp, rsp, rip), so it does not have to ask with `g`.
    `swbreak`/`hwbreak` say whether gdb offered those stop reasons in qSupported.
    """
    if event.kind is StopKind.EXITED:
        return b"W%02x" % (event.status & 0xFF)
    if event.kind is StopKind.KILLED:
        return b"X%02x" % (event.signal & 0xFF)
    parts = [b"T%02x" % (event.signal & 0xFF)]
    if event.kind is StopKind.WATCH and event.watches:
        hit = event.watches[0]
        parts.append(_WATCH_WORD.get(hit.access, b"watch") + b":%x;" % hit.addr)
    elif event.kind is StopKind.SWBREAK and swbreak:
        parts.append(b"swbreak:;")
    elif event.kind is StopKind.HWBREAK and hwbreak:
        parts.append(b"hwbreak:;")
    for regnum, value in expedited:
        parts.append(b"%02x:%s;" % (regnum, value.hex().encode()))
    parts.append(b"thread:%x;" % event.thread)
    return b"".join(parts)
