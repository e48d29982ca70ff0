"""The Linux x86-64 `siginfo_t` of a stop, as gdb reads it with qXfer:siginfo:read.

gdb shows it as `$_siginfo` (`p $_siginfo._sifields._sigfault.si_addr`). The
codes are the ones the kernel would put there for the same event.
"""

from __future__ import annotations

from collections.abc import Callable

from construct import Bytes, Int32sl, Int64ul, Padding, Struct

from .events import SIGBUS, SIGFPE, SIGILL, SIGINT, SIGSEGV, SIGTRAP, STOP_REQUESTED, StopEvent, StopKind

SI_USER = 0          # kill(): gdb's Ctrl-C reaches the program as a SIGINT from its debugger
SI_KERNEL = 0x80     # int3, #GP and similar: the kernel raised it
SI_TKILL = -6        # tgkill()/tkill(): abort() and raise()
SEGV_MAPERR = 1      # no mapping at the address
SEGV_ACCERR = 2      # the mapping forbids the access
ILL_ILLOPN = 2       # illegal operand (Linux's code for #UD)
FPE_INTDIV = 1       # integer divide by zero
TRAP_TRACE = 2       # single step
TRAP_HWBKPT = 4      # debug-register breakpoint or watchpoint

# siginfo_t is 128 bytes: three ints, padding, then a union; the fault and kill layouts are all we fill.
_SIGINFO = Struct(
    "si_signo" / Int32sl,
    "si_errno" / Int32sl,
    "si_code" / Int32sl,
    Padding(4),
    "first" / Int64ul,        # si_addr for faults; si_pid (low 32 bits) + si_uid (high) for kills
    "rest" / Bytes(128 - 24),
)


def _kill_fields(pid: int, uid: int) -> int:
    return (pid & 0xFFFFFFFF) | (uid & 0xFFFFFFFF) << 32


def build_siginfo(event: StopEvent, *, pid: int, debugger_pid: int, mapped: Callable[[int], bool],
                  uid: int = 0) -> bytes:
    """The siginfo_t the kernel would have delivered for this stop.

    `mapped(addr)`: whether the program has memory at addr (a fault there is SEGV_ACCERR).
    """
    signal = event.signal
    code, first = SI_KERNEL, 0
    if event.kind is StopKind.STEP:
        code = TRAP_TRACE
    elif event.kind in (StopKind.WATCH, StopKind.HWBREAK):
        code = TRAP_HWBKPT
        first = event.watches[0].addr if event.watches else event.pc
    elif event.kind is StopKind.SWBREAK:
        code = SI_KERNEL                                  # an int3 planted by the debugger
    elif signal == SIGSEGV and event.fault_addr is not None:
        code = SEGV_ACCERR if mapped(event.fault_addr) else SEGV_MAPERR
        first = event.fault_addr
    elif signal == SIGILL:
        code, first = ILL_ILLOPN, event.pc
    elif signal == SIGFPE:
        code, first = FPE_INTDIV, event.pc
    elif signal == SIGINT and event.reason == STOP_REQUESTED:
        code, first = SI_USER, _kill_fields(debugger_pid, uid)
    elif signal not in (SIGSEGV, SIGBUS, SIGTRAP):
        code, first = SI_TKILL, _kill_fields(pid, uid)    # the program signalled itself
    return _SIGINFO.build(dict(si_signo=signal, si_errno=0, si_code=code, first=first,
                               rest=bytes(128 - 24)))
