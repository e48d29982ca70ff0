"""Why the emulated CPU stopped: the one value a run returns."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

SIGINT = 2
SIGILL = 4
SIGTRAP = 5
SIGABRT = 6
SIGBUS = 7
SIGFPE = 8
SIGKILL = 9
SIGSEGV = 11

# StopEvent.reason of a stop the debugger asked for (Ctrl-C): siginfo reports it as the
# debugger's kill(), not as a signal the program raised.
STOP_REQUESTED = "stop requested"


class StopKind(enum.Enum):
    STEP = "step"            # single step finished (SIGTRAP)
    SWBREAK = "swbreak"      # Z0 breakpoint: stopped before the instruction
    HWBREAK = "hwbreak"      # execute debug-register slot: a fault, before the instruction
    WATCH = "watch"          # data debug-register slot: a trap, after the instruction
    SIGNAL = "signal"        # a signal for the program: SIGINT (Ctrl-C), SIGSEGV, SIGILL, SIGABRT...
    EXITED = "exited"        # the program exited: `status`
    KILLED = "killed"        # the program was terminated by `signal`
    DETACHED = "detached"    # the run was stopped because the debugger went away


@dataclass(frozen=True)
class WatchHit:
    """One data slot that fired: the watched range and how it was accessed."""

    addr: int          # the slot's address (inside the range the debugger asked for)
    length: int
    access: int        # HW_BREAKPOINT_R / _W / _RW: the kind of the slot that fired
    slot: int


@dataclass(frozen=True)
class StopEvent:
    kind: StopKind
    signal: int = SIGTRAP
    status: int = 0                      # exit status for EXITED
    pc: int = 0
    watches: tuple[WatchHit, ...] = field(default_factory=tuple)
    thread: int = 1                      # tid of the thread that stopped
    reason: str = ""                     # a human line for logs (fault address, ...)
    fault_addr: int | None = None        # the data address of a memory fault (siginfo's si_addr)


def stop_for_process_event(happened, pc: int = 0) -> StopEvent:
    """The stop a process event causes: ProcessExit(status) -> EXITED; ProcessSignal(signo) ->
    SIGNAL, or KILLED when the signal ended the process (duck-typed: .status / .signo / .killed)."""
    if hasattr(happened, "status"):
        return StopEvent(StopKind.EXITED, status=happened.status, pc=pc)
    kind = StopKind.KILLED if getattr(happened, "killed", False) else StopKind.SIGNAL
    return StopEvent(kind, signal=happened.signo, pc=pc)
