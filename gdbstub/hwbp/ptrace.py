"""A task's debug registers as ptrace sees them (arch/x86/kernel/ptrace.c, reference §3.7).

PTRACE_PEEKUSER / PTRACE_POKEUSER on `u_debugreg[n]` never touch the real
DR0-DR7: each of the task's four slots is a breakpoint of the core API
(owner "ptrace"), scheduled like any other, so the hardware DR index it lands
in may differ from n. This object keeps the ptrace view:

- DR0-DR3 writes create the slot's breakpoint (disabled, LEN_1 WRITE
  placeholder, as Linux) or move it (modify);
- a DR7 write decodes each slot's enable/type/length and registers or
  modifies its breakpoint; on the first failure the previous configuration
  is restored and the errno raised (Linux's second pass);
- DR6 reads report the slots (ptrace numbering) that fired in the task's last
  debug exception (`virtual_dr6`, kept with positive polarity); writes set it;
- DR4/DR5 read as 0 and refuse writes with EIO; other numbers are EIO.

Handlers return True: a ptrace user stops the task with SIGTRAP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import replace
from errno import EIO

from .attr import HW_BREAKPOINT_LEN_1, HW_BREAKPOINT_W, BreakpointAttr, Hit
from .core import Breakpoint, BreakpointCore
from .errors import HwBreakpointError
from .x86 import DR6_RESERVED, DR_TRAP0, HBP_NUM, arch_bp_generic_fields, decode_dr7

__all__ = ["DR_CONTROL_RESERVED", "PtraceDebugRegs"]

log = logging.getLogger(__name__)

OWNER = "ptrace"
DR_STATUS = 6
DR_CONTROL = 7
# arch/x86/include/uapi/asm/debugreg.h (x86-64): bits 10-15 and 32-63 of DR7 are not the user's.
DR_CONTROL_RESERVED = 0xFFFF_FFFF_0000_FC00
_WORD = (1 << 64) - 1

TrapListener = Callable[[int, Hit], None]


class PtraceDebugRegs:
    """u_debugreg[0..7] of one traced task."""

    def __init__(self, core: BreakpointCore, task: Hashable, *, on_trap: TrapListener | None = None) -> None:
        if task is None:
            raise ValueError("ptrace debug registers belong to a task")
        self.core = core
        self.task = task
        self.on_trap = on_trap           # (ptrace slot, hit), after virtual_dr6 is updated
        self._bps: list[Breakpoint | None] = [None] * HBP_NUM
        self._dr7 = 0                    # the last DR7 value written successfully, as written
        self._virtual_dr6 = 0            # positive polarity: bit n = slot n fired
        self._last_hit: Hit | None = None
        self._lock = threading.Lock()    # virtual_dr6: set on the CPU thread, read by the tracer

    # ----- PTRACE_PEEKUSER / PTRACE_POKEUSER ----------------------------------------------

    def peek(self, regno: int) -> int:
        """ptrace_get_debugreg: the value a tracer reads from u_debugreg[regno]."""
        _check_regno(regno)
        if regno < HBP_NUM:
            bp = self._bps[regno]
            return bp.info.address if bp is not None else 0
        if regno == DR_STATUS:
            with self._lock:
                return self._virtual_dr6 ^ DR6_RESERVED   # back to the hardware's polarity
        if regno == DR_CONTROL:
            return self._dr7
        return 0  # DR4/DR5 do not exist; Linux reads them as 0

    def poke(self, regno: int, value: int) -> None:
        """ptrace_set_debugreg: write u_debugreg[regno]; raises HwBreakpointError(errno)."""
        _check_regno(regno)
        value &= _WORD
        if regno < HBP_NUM:
            self._set_address(regno, value)
        elif regno == DR_STATUS:
            with self._lock:
                self._virtual_dr6 = value ^ DR6_RESERVED   # stored with positive polarity
        elif regno == DR_CONTROL:
            self._write_dr7(value)
            self._dr7 = value
        else:
            raise HwBreakpointError(EIO, f"DR{regno} does not exist (DR4/DR5 are reserved)")

    # ----- the rest of the task's life --------------------------------------------------

    @property
    def virtual_dr6(self) -> int:
        """Slots (ptrace numbering) that fired in the last debug exception, positive polarity."""
        with self._lock:
            return self._virtual_dr6

    def breakpoint(self, slot: int) -> Breakpoint | None:
        """The core breakpoint behind u_debugreg[slot], if any."""
        return self._bps[slot]

    def release(self) -> None:
        """The task exited (flush_ptrace_hw_breakpoint): unregister everything, reset the file."""
        bps, self._bps = self._bps, [None] * HBP_NUM
        self.core.unregister_wide(bps)
        self._dr7 = 0
        with self._lock:
            self._virtual_dr6 = 0
            self._last_hit = None

    # ----- DR0-DR3 and DR7 -----------------------------------------------------------------

    def _set_address(self, slot: int, addr: int) -> None:
        """ptrace_set_breakpoint_addr: create a disabled placeholder, or move the breakpoint."""
        bp = self._bps[slot]
        if bp is None:
            attr = BreakpointAttr(bp_addr=addr, bp_len=HW_BREAKPOINT_LEN_1, bp_type=HW_BREAKPOINT_W,
                                  disabled=True, exclude_kernel=True)
            self._bps[slot] = self._register(attr)
        else:
            self.core.modify(bp, replace(bp.attr, bp_addr=addr), privileged=False)

    def _write_dr7(self, value: int) -> None:
        """ptrace_write_dr7: all four slots or, on the first failure, the old configuration."""
        data = value & ~DR_CONTROL_RESERVED
        before = list(self._bps)
        old_attrs = [bp.attr if bp is not None else None for bp in before]
        try:
            for slot in range(HBP_NUM):
                self._apply_slot(slot, data)
        except HwBreakpointError as exc:
            self._restore(before, old_attrs)
            log.info("DR7 write %#x refused (%s); previous configuration restored", value, exc)
            raise

    def _apply_slot(self, slot: int, data: int) -> None:
        enabled, len_code, type_code = decode_dr7(data, slot)
        bp = self._bps[slot]
        if bp is None and not enabled:
            return
        length, bp_type = arch_bp_generic_fields(len_code, type_code)
        if bp is None:
            # Enabled without an address: Linux watches address 0.
            attr = BreakpointAttr(bp_addr=0, bp_len=length, bp_type=bp_type, exclude_kernel=True)
            self._bps[slot] = self._register(attr)
            return
        self.core.modify(bp, replace(bp.attr, bp_len=length, bp_type=bp_type, disabled=not enabled),
                         privileged=False)

    def _restore(self, before: list[Breakpoint | None], old_attrs: list[BreakpointAttr | None]) -> None:
        """Undo a partial DR7 write exactly: new breakpoints go, changed ones get their attrs back.

        (Linux re-runs the write with the old DR7 instead, which can leave a
        breakpoint made by the failed pass registered as a disabled placeholder.)
        """
        for slot in range(HBP_NUM):
            bp, old_bp, old_attr = self._bps[slot], before[slot], old_attrs[slot]
            if bp is not None and bp is not old_bp:
                self.core.unregister(bp)
                self._bps[slot] = None
            elif bp is not None and old_attr is not None and bp.attr != old_attr:
                # The same attrs it held a moment ago: this cannot run out of room.
                self.core.modify(bp, old_attr, privileged=False)

    def _register(self, attr: BreakpointAttr) -> Breakpoint:
        return self.core.register_user(attr, self.task, self._triggered, owner=OWNER, privileged=False)

    # ----- hits --------------------------------------------------------------------------------

    def _triggered(self, bp: Breakpoint, hit: Hit) -> bool:
        """ptrace_triggered: mark the slot in virtual_dr6 and stop the task (SIGTRAP)."""
        slot = next((n for n, mine in enumerate(self._bps) if mine is bp), None)
        if slot is None:
            return False   # a breakpoint this file no longer owns (released mid-hit)
        with self._lock:
            if hit is not self._last_hit:
                # A new debug exception: the virtual DR6 starts afresh (exc_debug_user).
                self._virtual_dr6 = 0
                self._last_hit = hit
            self._virtual_dr6 |= DR_TRAP0 << slot
        if self.on_trap is not None:
            self.on_trap(slot, hit)
        return True


def _check_regno(regno: int) -> None:
    if not 0 <= regno <= DR_CONTROL:
        raise HwBreakpointError(EIO, f"u_debugreg[{regno}] is outside the debug-register area")
