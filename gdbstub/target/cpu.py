"""The CPU execution engine: runs the emulated x86-64 CPU and says why it stopped.

`Cpu.run()` is blocking and meant for a worker thread; it returns exactly one
StopEvent.  Everything that can stop a run is turned into that one value:
software breakpoints, debug-register slots (through debugregs.DebugUnit),
CPU faults (as the signal Linux would deliver), the process's own exit or
signal, and stop requests from other threads (Ctrl-C, detach).

Cost model: with no slot armed and no software breakpoint the CPU runs
without any Python code or memory hook (only the process's syscall hook and
an interrupt hook, which costs nothing until an interrupt happens).
Breakpoints and execute slots are code hooks bound to their one address;
data slots cost only on accesses to the pages they live on, or, once such a
page has proved busy with accesses that match no slot, a memory hook per slot
and counted runs (debugregs.py: hot pages).  One more cost while a watched
page is write-protected: every instruction that stores in a C helper (6
below) through a register calls Python each time it runs (~4 us: 100k
`fstp tbyte ptr [rdi]` to another page took 6 ms unarmed, 430 ms armed);
one with a fixed address elsewhere (a global) is not hooked.

Unicorn 2.1.4 behaviours this module works around (measured):
1. code hooks added or deleted between runs do not affect translated blocks:
   every hook change is followed by `ctl_remove_cache` on its address;
2. `emu_start(count=1)` after an uncounted run executes whole cached blocks:
   the translation cache is flushed before the first counted run that follows
   an uncounted one (Unicorn flushes by itself on the way back);
3. `emu_stop()` inside a code hook stops *before* that instruction: the fault
   semantics of breakpoints and execute slots;
4. with EFLAGS.TF set an instruction raises #DB (interrupt 1) after it runs,
   and a `pushf` stores TF: how single steps look like Linux's;
5. `emu_stop()` inside a memory hook stops right after that access, inside
   the instruction (RIP on it), except in C-helper instructions, where a
   counted run stops before the next instruction (debugregs.py);
6. a store made in a C helper to a write-protected page is dropped, not a
   fault: while a watched page is write-protected, each instruction that
   stores in a helper (helper_stores.py) has a code hook, which stops the run
   before it when its store reaches such a page; it is then stepped under the
   watch, as after a protection fault.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from unicorn import (
    UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID, UC_ERR_READ_PROT,
    UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_PROT, UC_ERR_WRITE_UNMAPPED, UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_INVALID,
    UC_PROT_EXEC, UC_PROT_WRITE, Uc, UcError,
)
from unicorn.x86_const import UC_X86_REG_CS, UC_X86_REG_ECX, UC_X86_REG_EFLAGS, UC_X86_REG_RCX, UC_X86_REG_RIP

from gdbstub.hwbp.attr import HW_BREAKPOINT_X, Hit, WatchSlot
from gdbstub.target.debugregs import DebugUnit, WatchFault, WatchMode, WatchStatistics
from gdbstub.target.disasm import LEGACY_PREFIXES, MAX_INSN_LEN, REX_PREFIXES
from gdbstub.target.helper_stores import HelperStore, find_helper_stores, fixed_store_range, store_range
from gdbstub.target.events import (
    SIGBUS, SIGFPE, SIGILL, SIGINT, SIGSEGV, SIGTRAP, STOP_REQUESTED, StopEvent, StopKind, WatchHit,
    stop_for_process_event,
)

__all__ = ["Cpu"]

_HLT = 0xF4
_ICEBP = 0xF1
_INT_IMM8 = 0xCD
_POPF = 0x9D
_IRET = 0xCF
_TRAP_FLAG = 0x100          # EFLAGS.TF
_DEBUG_VECTOR = 1           # #DB

# x86 exception vector -> the signal Linux delivers for it in user mode.
_SIGNAL_OF_VECTOR = {
    0: SIGFPE,     # #DE divide error
    1: SIGTRAP,    # #DB
    3: SIGTRAP,    # #BP int3
    4: SIGSEGV,    # #OF into
    5: SIGSEGV,    # #BR bound
    6: SIGILL,     # #UD
    13: SIGSEGV,   # #GP
    14: SIGSEGV,   # #PF
    16: SIGFPE,    # #MF x87
    17: SIGBUS,    # #AC alignment check
    19: SIGFPE,    # #XM SIMD floating point
}
_UNMAPPED_OR_PROT = frozenset({
    UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED, UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_PROT, UC_ERR_WRITE_PROT, UC_ERR_FETCH_PROT,
})
# Faults the watch protection can cause.  After a data fault the code hooks
# of the instruction have run (its block was translated and entered); after a
# fetch fault they have not.
_DATA_WATCH_FAULTS = frozenset({UC_ERR_READ_PROT, UC_ERR_WRITE_PROT})
_WATCH_FAULTS = _DATA_WATCH_FAULTS | {UC_ERR_FETCH_PROT}

# Watch faults arriving faster than this, several times in a row, switch the
# run to "counted" emulation: Unicorn's instruction-count hook then stays in
# every translated block (about 2.5x slower code) but a one-instruction step
# no longer costs a full translation-cache flush (about 80 us each).  A fast
# run that lasts longer than this switches back.
_HOT_RUN_SECONDS = 0.002
_HOT_STREAK = 4
_UNBOUNDED_COUNT = 1 << 62
# A run with a time limit (run(within=...)) goes in counted slices of this many instructions
# (about a millisecond) and looks at the clock between them.
_SLICE_INSTRUCTIONS = 10_000

# How often a pending stop request re-sends emu_stop while the run has not
# acknowledged it (closes the window just before an emu_start).
_STOP_RETRY_SECONDS = 0.005


class _Detach:
    def __repr__(self) -> str:
        return "DETACH"


_DETACH = _Detach()


class Cpu:
    """One emulated x86-64 CPU, driven by one thread at a time."""

    def __init__(self, uc: Uc, process: Any = None, cpu_index: int = 0, task: Any = None, *,
                 watch_mode: WatchMode = WatchMode.AUTO) -> None:
        self.uc = uc
        self.process = process
        self.cpu_index = cpu_index
        self.task = task
        self.on_debug_exception: Callable[[Hit], bool] | None = None

        guest_perms = process.page_perms if process is not None else _snapshot_perms(uc)
        self._guest_perms = guest_perms
        self._unit = DebugUnit(uc, guest_perms, wrap_hook=self._guarded, mode=watch_mode)
        # Instructions that store in a C helper, found in the executable memory last scanned
        # (None: scan again before they are next needed; the mappings or the code changed).
        self._helper_stores: dict[int, HelperStore] = {}
        self._scanned_code: tuple[tuple[int, int], ...] | None = None
        self._helpers_hooked_for: frozenset[int] | None = None   # the protected pages, since the scan
        self._helpers_to_hook: set[int] = set()
        self._sw_breakpoints: set[int] = set()
        self._code_hooks: dict[int, int] = {}
        self._retired_hooks: dict[int, int] = {}   # unwanted since the last run: deleted before the next
        self._pending_slots: tuple[WatchSlot, ...] | None = None
        self._on_code_hook = self._guarded(self._on_code)
        self._intr_hook = uc.hook_add(UC_HOOK_INTR, self._guarded(self._on_interrupt))
        # Called only for faulting accesses: remembers the address for siginfo's si_addr.
        self._invalid_hook = uc.hook_add(UC_HOOK_MEM_INVALID, self._guarded(self._on_invalid_access))
        self._fault_addr: int | None = None

        # Run state (touched by the run thread only).
        self._hook_error: BaseException | None = None
        self._hook_stop: StopEvent | None = None
        self._interrupt: int | None = None
        self._suppress_at: int | None = None       # EFLAGS.RF for this one instruction
        self._rf_addr: int | None = None           # RF set by the last HWBREAK stop
        self._resume_through: int | None = None
        self._resume_pc: int | None = None         # RIP after the last step, if known
        self._before_helper_store: tuple[int, int] | None = None   # the store the run stopped before
        self._resync_pending = False               # stopped to install hooks: the run goes on
        self._in_emulation = False
        self._hooks_stale = False                  # slot/breakpoint change made inside a hook
        self._count_hook_live = False              # Unicorn's count hook is in the cached blocks
        self._trap_flag_step = False               # a user step runs with EFLAGS.TF: its #DB is expected

        # Cross-thread stop requests.
        self._lock = threading.Lock()
        self._running = False
        self._pending: int | _Detach | None = None
        self._stop_retrier: threading.Thread | None = None

        if process is not None:
            process.mapping_listeners.append(self._unit.reprotect)
            process.mapping_listeners.append(self._mappings_changed)

    # ---- registers and memory (debugger side: never triggers slots) ---------------------------
    @property
    def pc(self) -> int:
        return self.uc.reg_read(UC_X86_REG_RIP)

    @pc.setter
    def pc(self, value: int) -> None:
        if value != self._rf_addr:
            self._rf_addr = None
        self.uc.reg_write(UC_X86_REG_RIP, value)

    def read_memory(self, addr: int, length: int) -> bytes:
        """The readable prefix of [addr, addr + length): b"" if the first byte is not mapped."""
        if length <= 0:
            return b""
        try:
            # Almost every read is mapped whole: one call, no walk of the region list (~15 us).
            return bytes(self.uc.mem_read(addr, length))
        except UcError:
            pass
        return b"".join(bytes(self.uc.mem_read(start, size)) for start, size in self._mapped_runs(addr, length))

    def write_memory(self, addr: int, data: bytes) -> None:
        """Write like a debugger: read-only and watched pages too, all or nothing."""
        if not data:
            return
        if sum(size for _, size in self._mapped_runs(addr, len(data))) != len(data):
            raise OSError(errno.EFAULT, f"cannot write {len(data)} bytes at {addr:#x}")
        self.uc.mem_write(addr, bytes(data))
        # Code the debugger patched must be translated again (and scanned again).
        self.uc.ctl_remove_cache(addr, addr + len(data))
        if any(begin < addr + len(data) and addr < end for begin, end in self._scanned_code or ()):
            self._scanned_code = None
            self._sync_code_hooks()

    def _mapped_runs(self, addr: int, length: int) -> list[tuple[int, int]]:
        """The mapped pieces of [addr, addr + length) that continue without a gap from addr."""
        end = addr + length
        runs: list[tuple[int, int]] = []
        cursor = addr
        for begin, last in sorted((b, e) for b, e, _ in self.uc.mem_regions()):
            if last < cursor:
                continue
            if begin > cursor or cursor >= end:
                break
            stop = min(last + 1, end)
            runs.append((cursor, stop - cursor))
            cursor = stop
        return runs

    # ---- breakpoints and slots ----------------------------------------------------------------
    def add_sw_breakpoint(self, addr: int) -> None:
        self._sw_breakpoints.add(addr)
        self._sync_code_hooks()

    def remove_sw_breakpoint(self, addr: int) -> bool:
        present = addr in self._sw_breakpoints
        self._sw_breakpoints.discard(addr)
        self._sync_code_hooks()
        return present

    def clear_sw_breakpoints(self) -> None:
        """Drop every software breakpoint (the debugger that set them has gone)."""
        self._sw_breakpoints.clear()
        self._sync_code_hooks()

    def set_debug_slots(self, slots: Sequence[WatchSlot]) -> None:
        """Enforce exactly `slots` (the decoded DR0-DR3 + DR7) for every instruction from now on.

        They take effect when the CPU next runs (or is inspected): gdb removes
        and re-inserts its watchpoints around every stop, and that pair then
        changes no page protection and no hook.
        """
        self._pending_slots = tuple(slots)
        if self._in_emulation:
            # Called by an execute-slot handler inside a code hook: applied
            # between two emu_starts (mem_protect / cache flushes are not
            # safe while a block runs).
            self._hooks_stale = True

    @property
    def debug_slots(self) -> tuple[WatchSlot, ...]:
        self._settle_when_idle()
        return self._unit.slots

    def watch_statistics(self) -> WatchStatistics:
        """Faults, hook stops and hot pages the data slots have caused so far."""
        self._settle_when_idle()
        return self._unit.statistics()

    @property
    def hook_counts(self) -> dict[str, int]:
        """Python hooks the CPU has in force on code and on memory (a retired code hook
        is deleted before any instruction runs, so it is not counted)."""
        self._settle_when_idle()
        return {"code": len(self._code_hooks), "memory": self._unit.memory_hooks}

    def _settle_when_idle(self) -> None:
        # (another thread inspecting a running CPU must not change Unicorn's state under it)
        with self._lock:
            running = self._running
        if not running:
            self._settle_slots()

    def _settle_slots(self) -> None:
        if self._pending_slots is not None and not self._in_emulation:
            self._apply_slots()

    def _apply_slots(self) -> None:
        slots, self._pending_slots = self._pending_slots, None
        if slots is not None and slots != self._unit.slots:
            self._unit.load(slots)
        self._sync_code_hooks()

    def _sync_code_hooks(self) -> None:
        if self._in_emulation:
            self._hooks_stale = True
            return
        wanted = self._sw_breakpoints | self._unit.exec_addresses
        if self._unit.protects_writes:
            wanted |= self._helper_stores_to_watch()
        # gdb removes its breakpoints at every stop and inserts the same ones before it resumes:
        # a removed hook is only retired until the next emu_start, and taken back if wanted again,
        # so that z0/Z0 pair costs no Unicorn call and no cache flush.
        for addr in [a for a in self._code_hooks if a not in wanted]:
            self._retired_hooks[addr] = self._code_hooks.pop(addr)
        for addr in wanted - self._code_hooks.keys():
            hook = self._retired_hooks.pop(addr, None)
            if hook is None:
                hook = self.uc.hook_add(UC_HOOK_CODE, self._on_code_hook, begin=addr, end=addr)
                self.uc.ctl_remove_cache(addr, addr + 1)
            self._code_hooks[addr] = hook
        self._hooks_stale = False

    def _helper_stores_to_watch(self) -> set[int]:
        """The helper stores that may reach a write-protected page: all but those whose fixed
        address (a global's) lies elsewhere, which then run without a Python call."""
        stores = self._scan_helper_stores()
        pages = self._unit.write_protected_pages
        if pages != self._helpers_hooked_for:   # (gdb's z0/Z0 at every stop come here too)
            self._helpers_hooked_for = pages
            self._helpers_to_hook = set()
            for addr, store in stores.items():
                fixed = fixed_store_range(store)
                if fixed is None or self._unit.write_protected(*fixed):
                    self._helpers_to_hook.add(addr)
        return self._helpers_to_hook

    def _mappings_changed(self) -> None:
        # (brk and data mmaps leave the executable memory as it was: no new scan for them)
        if self._scanned_code is None or self._executable_runs() == self._scanned_code:
            return
        self._scanned_code = None
        self._sync_code_hooks()
        if self._in_emulation and self._unit.protects_writes:
            # (a system call mapped code: hook its helper stores before any of it runs)
            self._resync_pending = True
            self.uc.emu_stop()

    def _executable_runs(self) -> tuple[tuple[int, int], ...]:
        """[begin, end) of each stretch of memory the program may execute."""
        runs: list[tuple[int, int]] = []
        for begin, last, _ in sorted(self.uc.mem_regions()):
            if not (self._guest_perms(begin) or 0) & UC_PROT_EXEC:
                continue
            if runs and runs[-1][1] == begin:
                runs[-1] = (runs[-1][0], last + 1)
            else:
                runs.append((begin, last + 1))
        return tuple(runs)

    def _scan_helper_stores(self) -> dict[int, HelperStore]:
        """The helper-storing instructions in executable memory, scanned when it may have changed."""
        if self._scanned_code is None:
            self._helpers_hooked_for = None     # the stores to hook are chosen again
            self._scanned_code = self._executable_runs()
            self._helper_stores = find_helper_stores(
                (begin, bytes(self.uc.mem_read(begin, end - begin))) for begin, end in self._scanned_code)
        return self._helper_stores

    def _delete_retired_hooks(self) -> None:
        for addr, hook in self._retired_hooks.items():
            self.uc.hook_del(hook)
            self.uc.ctl_remove_cache(addr, addr + 1)
        self._retired_hooks.clear()

    # ---- stop requests (any thread) -----------------------------------------------------------
    def request_stop(self, signal: int = SIGINT) -> None:
        """Stop the active run with SIGNAL(signal), or the next run before it executes anything."""
        self._request(signal)

    def detach_stop(self) -> None:
        """Make the active run (or, if none is active yet, the next one) return DETACHED."""
        self._request(_DETACH)

    def discard_stop_requests(self) -> None:
        """Forget a queued Ctrl-C or detach: the client that asked for it has gone."""
        with self._lock:
            self._pending = None

    def _request(self, reason: int | _Detach) -> None:
        with self._lock:
            if self._pending is None or reason is _DETACH:
                self._pending = reason
            if not self._running:
                return
            self.uc.emu_stop()
            if self._stop_retrier is None:
                self._stop_retrier = threading.Thread(
                    target=self._retry_stop, name="cpu-stop-retry", daemon=True)
                self._stop_retrier.start()

    def _retry_stop(self) -> None:
        # emu_stop is lost if it lands between our check of _pending and
        # Unicorn's reset of its stop flag at the start of emu_start; repeat
        # it until the run has taken the request.
        while True:
            time.sleep(_STOP_RETRY_SECONDS)
            with self._lock:
                if not self._running or self._pending is None:
                    self._stop_retrier = None
                    return
                self.uc.emu_stop()

    def _take_request(self) -> StopEvent | None:
        with self._lock:
            reason, self._pending = self._pending, None
        if reason is None:
            return None
        if reason is _DETACH:
            return StopEvent(StopKind.DETACHED, pc=self.pc, reason="debugger detached")
        return StopEvent(StopKind.SIGNAL, signal=reason, pc=self.pc, reason=STOP_REQUESTED)

    # ---- running ------------------------------------------------------------------------------
    def run(self, step: bool = False, within: float | None = None) -> StopEvent | None:
        """Run (or execute one instruction) until something stops the CPU; blocking.

        `within`: give up after about that many seconds and return None, every instruction so
        far executed whole, as if stopped between two; run() again goes on from there.  (The
        server tries a continue on its own thread first: most end within a millisecond.)
        """
        with self._lock:
            if self._running:
                raise RuntimeError("Cpu.run() is already active")
            queued = self._pending is not None
            self._running = not queued
        if queued:
            event = self._take_request()
            assert event is not None
            return event
        try:
            return self._run(step, within)
        finally:
            with self._lock:
                self._running = False
                # A request that raced with another stop reason belongs to the run it interrupted.
                self._pending = None

    def _run(self, step: bool, within: float | None) -> StopEvent | None:
        self._resync_pending = False     # (one set by a step that mapped code has been served)
        self._settle_slots()
        pc = self.pc
        rf = pc if self._rf_addr == pc else None
        self._rf_addr = None
        self._resume_pc = None
        if step:
            return self._single_step(pc, rf)
        if rf is not None:
            event = self._execute_one(pc, suppress=rf)
            if event is not None:
                return event
        hot = False
        streak = 0
        give_up_at = None
        if within is not None:
            if not self._quiet_end_is_count():
                return None
            give_up_at = time.perf_counter() + within
        while True:
            event = self._take_request()
            if event is not None:
                return event
            # (RIP reads cost ~3 us in the binding: reuse the one the last step made)
            begin, self._resume_pc = self._resume_pc, None
            # Slot hooks need counted runs: a stop from a C helper then lands before the next instruction.
            counted = hot or self._unit.hook_mode
            started = time.perf_counter()
            if give_up_at is None:
                count = _UNBOUNDED_COUNT if counted else 0
            elif started < give_up_at:
                count = _SLICE_INSTRUCTIONS
            else:
                return None
            fault = self._emulate(self.pc if begin is None else begin, count)
            elapsed = time.perf_counter() - started
            stopped_in = self._unit.hook_stop_pc
            if stopped_in is not None:
                if fault is None and self.pc != stopped_in:
                    # The instruction completed (a C helper): the stop is its trap.
                    event = self._report_completed(stopped_in)
                    if event is not None:
                        return event
                    continue
                # Stopped inside the instruction (or it faulted after the access): as if it never ran.
                self._unit.rewind_hook_stop()
            event = self._stop_after_hooks()
            if event is not None:
                return event
            if self._resync_pending:
                self._resync_pending = False
                continue
            if self._resume_through is not None:
                event = self._resume_after_resync()
                if event is not None:
                    return event
                continue
            # (a stop before a helper store that reaches a watched page counts as a data fault)
            helper_store, self._before_helper_store = self._before_helper_store, None
            watch_fault = helper_store is not None or (
                fault is not None and fault.errno in _WATCH_FAULTS and self._unit.watching_data)
            if fault is not None and not watch_fault:
                return self._signal_for_fault(fault)
            if watch_fault or stopped_in is not None:
                streak = streak + 1 if elapsed < _HOT_RUN_SECONDS else 0
                hot = streak >= _HOT_STREAK
                pc = self.pc
                fetch = fault is not None and fault.errno not in _DATA_WATCH_FAULTS
                cause = WatchFault(pc, fetch, elapsed, started + elapsed) if watch_fault else None
                # After a data fault or a hook stop the code hooks at pc already ran: step with RF.
                event = self._execute_one(pc, suppress=None if fetch else pc, fault=cause,
                                          helper_store=helper_store)
                if event is not None:
                    return event
                continue
            event = self._take_request()
            if event is not None:
                return event
            pc = self.pc
            if pc == 0:
                # emu_start's `until` is 0: a jump there ends emulation quietly, before the fetch
                # that would fault (nothing is ever mapped at 0).
                return StopEvent(StopKind.SIGNAL, signal=SIGSEGV, pc=0, fault_addr=0, reason="jump to address 0")
            if give_up_at is not None:
                self._resume_pc = pc
                continue          # the slice ran out: the next one, or give up
            # Unicorn ends emulation quietly on `hlt` at CPL 0, leaving RIP after it
            # (in user mode it is a #GP: a Linux process runs at CPL 3).
            return _hlt_stop(pc - 1 if self.read_memory(pc - 1, 1) == bytes([_HLT]) else pc)

    def _quiet_end_is_count(self) -> bool:
        """Can a counted emulation that ends for no reason only have used up its count?

        Yes at CPL 3, where `hlt` raises #GP (a Linux process: process.py); at CPL 0 a `hlt`
        ends emulation just as quietly, and the two cannot be told apart afterwards."""
        return self.uc.reg_read(UC_X86_REG_CS) & 3 == 3

    def _single_step(self, pc: int, rf: int | None) -> StopEvent:
        """Execute one instruction as Linux's PTRACE_SINGLESTEP does: with EFLAGS.TF set.

        The instruction sees TF (a stepped pushf stores it).  Afterwards TF is
        cleared again unless the program had set it itself, or the instruction
        was a popf/iret that ran: then TF is what it loaded (the kernel's
        is_setting_trap_flag rule).
        """
        flags = self.uc.reg_read(UC_X86_REG_EFLAGS)
        forced = not flags & _TRAP_FLAG
        loads_flags = _loads_flags(self.read_memory(pc, MAX_INSN_LEN))
        if forced:
            self.uc.reg_write(UC_X86_REG_EFLAGS, flags | _TRAP_FLAG)
        self._trap_flag_step = True
        ran = False
        try:
            event = self._execute_one(pc, suppress=rf) or StopEvent(StopKind.STEP, pc=self.pc)
            ran = event.kind in (StopKind.STEP, StopKind.WATCH)
            return event
        finally:
            self._trap_flag_step = False
            if forced and not (loads_flags and ran):
                self.uc.reg_write(UC_X86_REG_EFLAGS, self.uc.reg_read(UC_X86_REG_EFLAGS) & ~_TRAP_FLAG)

    def _execute_one(self, pc: int, suppress: int | None, fault: WatchFault | None = None,
                     helper_store: tuple[int, int] | None = None) -> StopEvent | None:
        """Execute exactly one instruction (one REP iteration) at pc, watching data slots.

        `fault`: the watch fault that made the run step it.  Returns the
        StopEvent it caused, or None when the run may go on.
        """
        event = self._take_request()
        if event is not None:
            return event
        if helper_store is None:     # (not found already by the code hook that stopped the run)
            helper_store = self._protected_helper_store(pc)
        if helper_store is not None:
            # Unicorn would drop a store the guest may not make and run past it: fault here instead.
            # (Only the first byte is sure to be written: how far the store goes is Unicorn's.)
            start = helper_store[0]
            if not (self._guest_perms(start) or 0) & UC_PROT_WRITE:
                return StopEvent(StopKind.SIGNAL, signal=SIGSEGV, pc=pc, fault_addr=start,
                                 reason=f"helper store to {start:#x}, which the program cannot write")
            fault = fault or WatchFault(pc, False, 0.0)
        if fault is None and self._unit.watching_data and not self._unit.hook_mode:
            # A step that is not a watch fault's re-execution: try it with the protection in
            # place first. Most touch no watched page, and then no whole-memory hook is added
            # and deleted: Unicorn frees a deleted hook only when the next emu_start ends, and
            # until then that whole run takes the slow memory path (measured 2.1x after a stepi).
            self._suppress_at = suppress
            try:
                error = self._emulate(pc, 1)
            finally:
                self._suppress_at = None
            if error is None or error.errno not in _WATCH_FAULTS:
                return self._after_one(pc, error, None, ())
            fault = WatchFault(pc, error.errno not in _DATA_WATCH_FAULTS, 0.0)
        if fault is not None and self._count_hook_live:
            # After a counted run the step would reuse the block cached then, whose reads of a
            # page protected against reading (a read-only watch) skip the step's memory hook.
            self.uc.ctl_remove_cache(pc, pc + 1)
        self._unit.begin_step(fault)
        self._suppress_at = suppress
        try:
            fault = self._emulate(pc, 1)
        finally:
            self._suppress_at = None
            self._unit.end_step()
        if fault is not None:
            self._unit.discard_accesses()
        hit = self._unit.take_hit(self.cpu_index, self.task, pc)
        return self._after_one(pc, fault, hit, self._describe(hit))

    def _after_one(self, pc: int, fault: UcError | None, hit: Hit | None, watches) -> StopEvent | None:
        """What one executed instruction at pc means: a stop, or None to run on."""
        event = self._stop_after_hooks()
        if event is not None:
            return event
        if self._resume_through is not None:
            return self._resume_after_resync()
        if fault is not None:
            # Guest permissions were in force: a genuine violation.
            return self._signal_for_fault(fault)
        after = self.pc
        if after == pc + 1 and self.read_memory(pc, 1) == bytes([_HLT]):
            return _hlt_stop(pc)
        if after == pc and self._finish_rep(pc):
            after = self.pc
        return self._report(hit, watches, after)

    def _report_completed(self, ip: int) -> StopEvent | None:
        """A slot hook's stop landed after the instruction at ip: report its trap."""
        hit = self._unit.take_hit(self.cpu_index, self.task, ip)
        watches = self._describe(hit)
        event = self._stop_after_hooks()
        if event is not None:
            return event
        return self._report(hit, watches, self.pc)

    def _describe(self, hit: Hit | None) -> tuple[WatchHit, ...]:
        # (described before the handler runs: it may disarm its own slots)
        if hit is None:
            return ()
        return tuple(WatchHit(s.addr, s.length, s.access, s.index) for s in map(self._unit.slot, hit.slots))

    def _report(self, hit: Hit | None, watches: tuple[WatchHit, ...], after: int) -> StopEvent | None:
        """Deliver the trap of an instruction that completed with RIP at `after`."""
        if hit is not None and self._deliver(hit):
            return StopEvent(StopKind.WATCH, pc=after, watches=watches,
                             reason=f"access {hit.access} at {hit.addr:#x} size {hit.size}")
        self._resume_pc = after
        return self._take_request()

    def _finish_rep(self, pc: int) -> bool:
        """Leave a REP string instruction whose last iteration just ran.

        Hardware moves RIP past the instruction with the last iteration;
        Unicorn's counted execution stops at the REP with the counter at zero
        and needs one more (memory-free) step to leave it.
        """
        counter = _rep_counter(self.read_memory(pc, MAX_INSN_LEN))
        if counter is None or self.uc.reg_read(counter) != 0:
            return False
        self._suppress_at = pc
        try:
            fault = self._emulate(pc, 1)
        finally:
            self._suppress_at = None
        if fault is not None:
            raise RuntimeError(f"leaving a finished REP at {pc:#x} faulted: {fault}")
        return True

    def _emulate(self, begin: int, count: int) -> UcError | None:
        """One emu_start; a Python exception from a hook is re-raised here."""
        if self._retired_hooks:
            self._delete_retired_hooks()
        if count > 0 and not self._count_hook_live:
            self.uc.ctl_flush_tb()
        self._in_emulation = True
        try:
            self.uc.emu_start(begin, 0, count=count)
            fault = None
        except UcError as exc:
            fault = exc
        finally:
            self._in_emulation = False
            self._count_hook_live = count > 0
        error, self._hook_error = self._hook_error, None
        if error is not None:
            raise error
        return fault

    def _stop_after_hooks(self) -> StopEvent | None:
        """What the hooks and the process recorded during the last emu_start."""
        if self._hooks_stale:
            self._apply_slots()       # changed by an execute-slot handler inside a code hook
        event, self._hook_stop = self._hook_stop, None
        if event is not None:
            return event
        if self.process is not None:
            happened = self.process.take_event()
            if happened is not None:
                return stop_for_process_event(happened, pc=self.pc)
        vector, self._interrupt = self._interrupt, None
        if vector is not None:
            return self._signal_for_vector(vector)
        return None

    def _resume_after_resync(self) -> StopEvent | None:
        # An execute-slot handler changed slots or breakpoints and let its
        # instruction run: install the change, then run that one instruction
        # with RF so the handler is not called twice for one arrival.
        addr, self._resume_through = self._resume_through, None
        return self._execute_one(addr, suppress=addr)

    def _deliver(self, hit: Hit) -> bool:
        handler = self.on_debug_exception
        stop = bool(handler(hit)) if handler is not None else False
        self._settle_slots()        # slots the handler changed are in force for the next instruction
        return stop

    # ---- hooks --------------------------------------------------------------------------------
    def _guarded(self, fn: Callable[..., object]) -> Callable[..., object]:
        """Wrap a hook so its exception stops emulation and leaves run() as itself."""
        def hook(*args: object) -> object:
            try:
                return fn(*args)
            except BaseException as exc:
                if self._hook_error is None:
                    self._hook_error = exc
                self.uc.emu_stop()
                return None
        return hook

    def _on_code(self, uc: Uc, address: int, size: int, _: object) -> None:
        if address == self._suppress_at:
            return
        if address in self._sw_breakpoints:
            self._hook_stop = StopEvent(StopKind.SWBREAK, pc=address)
            uc.emu_stop()
            return
        slots = self._unit.exec_slots_at(address)
        if slots:
            hit = Hit(self.cpu_index, self.task, address, address, size, HW_BREAKPOINT_X, slots)
            if self._deliver(hit):
                self._hook_stop = StopEvent(StopKind.HWBREAK, pc=address)
                self._rf_addr = address
                uc.emu_stop()
                return
            if self._hooks_stale:
                self._resume_through = address
                uc.emu_stop()
                return
        helper_store = self._protected_helper_store(address)
        if helper_store is not None:
            self._before_helper_store = helper_store
            uc.emu_stop()

    def _protected_helper_store(self, pc: int) -> tuple[int, int] | None:
        """[start, end) of the store of the instruction at pc, if it is a helper store that would
        reach a write-protected watched page."""
        store = self._helper_stores.get(pc) if self._unit.protects_writes else None
        if store is None:
            return None
        start, end = store_range(self.uc, store)
        return (start, end) if self._unit.write_protected(start, end) else None

    def _on_interrupt(self, uc: Uc, vector: int, _: object) -> None:
        if not (vector == _DEBUG_VECTOR and self._trap_flag_step):   # a step's TF trap is the step itself
            self._interrupt = vector
        uc.emu_stop()

    def _on_invalid_access(self, uc: Uc, access: int, address: int, size: int, value: int, _: object) -> bool:
        self._fault_addr = address
        return False      # still a fault: the run loop decides what it means

    # ---- faults as signals --------------------------------------------------------------------
    def _signal_for_vector(self, vector: int) -> StopEvent:
        pc = self.pc
        signal = _SIGNAL_OF_VECTOR.get(vector)
        if signal is None:
            # `int n` without a user gate is a #GP at the instruction; Unicorn leaves RIP after it.
            signal = SIGSEGV
            if self.read_memory(pc - 2, 2) == bytes([_INT_IMM8, vector]):
                pc -= 2
        return StopEvent(StopKind.SIGNAL, signal=signal, pc=pc, reason=f"cpu exception {vector}")

    def _signal_for_fault(self, fault: UcError) -> StopEvent:
        pc = self.pc
        if fault.errno == UC_ERR_INSN_INVALID:
            if self.read_memory(pc, 1) == bytes([_ICEBP]):
                # icebp is a trap (#DB after the instruction), reported as SIGTRAP:
                # RIP moves past it, so a continue goes on after it.
                self.pc = pc + 1
                return StopEvent(StopKind.SIGNAL, signal=SIGTRAP, pc=pc + 1, reason="icebp")
            return StopEvent(StopKind.SIGNAL, signal=SIGILL, pc=pc, reason=str(fault))
        if fault.errno in _UNMAPPED_OR_PROT:
            address = pc if fault.errno in (UC_ERR_FETCH_UNMAPPED, UC_ERR_FETCH_PROT) else self._fault_addr
            return StopEvent(StopKind.SIGNAL, signal=SIGSEGV, pc=pc, reason=str(fault), fault_addr=address)
        return StopEvent(StopKind.SIGNAL, signal=SIGSEGV, pc=pc, reason=f"emulation error: {fault}")


_STRING_OPCODES = frozenset({0x6C, 0x6D, 0x6E, 0x6F, 0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF})


def _hlt_stop(pc: int) -> StopEvent:
    """`hlt` is privileged: in user mode it is a #GP, which Linux delivers as SIGSEGV at the hlt."""
    return StopEvent(StopKind.SIGNAL, signal=SIGSEGV, pc=pc, reason="hlt in user mode")


def _opcode_and_prefixes(code: bytes) -> tuple[int | None, set[int]]:
    """The first opcode byte of the instruction `code` starts with (None if there is none) and
    the legacy prefixes before it."""
    prefixes = set()
    for byte in code:
        if byte in LEGACY_PREFIXES:
            prefixes.add(byte)
        elif byte not in REX_PREFIXES:      # (REX only sits between the prefixes and the opcode)
            return byte, prefixes
    return None, prefixes


def _rep_counter(code: bytes) -> int | None:
    """The count register (RCX, or ECX under 0x67) of a REP string instruction, else None."""
    opcode, prefixes = _opcode_and_prefixes(code)
    if opcode in _STRING_OPCODES and prefixes & {0xF2, 0xF3}:
        return UC_X86_REG_ECX if 0x67 in prefixes else UC_X86_REG_RCX
    return None


def _loads_flags(code: bytes) -> bool:
    """Is this instruction a popf or iret (the ones that set TF themselves, for Linux's step)?"""
    opcode, _ = _opcode_and_prefixes(code)
    return opcode in (_POPF, _IRET)


def _snapshot_perms(uc: Uc) -> Callable[[int], int | None]:
    """Guest permissions of a raw program: Unicorn's mappings as they are now."""
    regions = [(begin, end, perms) for begin, end, perms in uc.mem_regions()]

    def page_perms(addr: int) -> int | None:
        for begin, end, perms in regions:
            if begin <= addr <= end:
                return perms
        return None

    return page_perms
