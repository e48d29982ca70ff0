"""The emulated debug registers: enforce a list of WatchSlots on a Unicorn CPU.

The breakpoint core decides *which* slots exist (DR0-DR3 + DR7, decoded into
`WatchSlot`s); this module makes the emulated CPU honour exactly those, with
the x86 semantics of Intel SDM Vol. 3B §17.3:

* a data slot (W, RW, or R on the virt arch) is a *trap*: it fires after the
  accessing instruction completed, once per instruction, with every matching
  slot reported together (several DR6.Bn bits);
* an execute slot is a *fault* before the instruction; the CPU (cpu.py) owns
  the code hooks and the RF bookkeeping, this unit only says which slots sit
  at an address.

How data slots are watched without slowing every memory access (a Unicorn
memory hook, even on a small range, slows all accesses ~1.6x): the pages that
hold a watched range lose the guest's WRITE (and READ for slots that watch
reads) permission, so an access there raises a precise, restartable
protection fault with nothing committed.  The CPU then calls
`begin_step()`, executes exactly one instruction, and `end_step()`:
permissions are restored for that instruction, a temporary memory hook
records the accesses, and `take_hit()` turns the matching ones into one Hit.
Write-only slots leave EXEC alone, so code sharing a page with watched data
runs at full speed.  Slots that watch reads must also take EXEC away on a
page that holds code (measured: a code fetch fills Unicorn's TLB entry with
read permission, so reads from a page that executes never fault); code on
such a page then faults whenever a block of it is translated (cached blocks
run on), each time one instruction is stepped: exact, slower.  One Unicorn
bug (measured, 2.1.4): a store made inside a C helper (x87 80-bit
stores, fxsave, cmpxchg16b) to a protected page is *dropped* and the run goes
on past the instruction, UC_ERR_WRITE_PROT being reported only when it ends:
the CPU stops before each such instruction whose store reaches a
write-protected page and steps it here (helper_stores.py finds them).

Hot pages.  Protection costs ~30 us for *every* access to a watched page,
also for accesses that match no slot ("false sharing": a loop counter next to
the watched variable makes the loop ~900x slower).  A page whose false faults
take a large share of the run time goes to hook mode: it gets the guest's
permissions back and each slot on it gets a Unicorn memory hook on its range,
widened at the start so an access that starts before the range and overlaps
it is seen (Unicorn compares only an access's start address with a hook's
range).  Unicorn 2.1.4 facts this relies on (measured):

* `emu_stop()` from a memory hook ends the run right after that one access,
  with RIP still on the instruction: a store it hooked is already in memory,
  everything after it in the instruction is not done.  So the hook saves the
  bytes a matching store overwrites; the CPU puts them back
  (`rewind_hook_stop`) and executes the instruction again as one watched step,
  exactly as after a protection fault (flags and registers are as before the
  instruction: measured).
* Instructions whose accesses happen inside a C helper (x87 80-bit loads and
  stores, fxsave, cmpxchg16b, maskmovdqu...) do not end there: the stop lands
  at the next instruction when the run is counted (Unicorn then checks for a
  stop before every instruction), at the end of the translated block when it
  is not.  The CPU therefore runs counted while any hook exists, and a stop
  that lands after the instruction is the trap itself: `take_hit` reports it.
* While any memory hook exists every access is slower (~1.5x), and counted
  runs cost ~3x more: hook mode is several times slower than no watch, but
  hundreds of times faster than a fault per access.  A page is therefore
  switched only when most of its recent false faults took a larger share of
  the time than hook mode would cost (`_HOT_FAULT_SHARE`), and it stays hot (also when gdb removes and
  re-inserts its watchpoints at every stop) for the life of the unit.
"""

from __future__ import annotations

import ctypes
import enum
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from unicorn import (
    UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_READ, UC_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE,
    Uc, UcError,
)
from unicorn.x86_const import UC_X86_REG_RIP

from gdbstub.hwbp.attr import HW_BREAKPOINT_R, HW_BREAKPOINT_W, HW_BREAKPOINT_X, Hit, WatchSlot
from gdbstub.target.disasm import MAX_INSN_LEN
from gdbstub.target.elf import PAGE_SIZE

__all__ = ["DebugUnit", "WatchFault", "WatchMode", "WatchStatistics", "slot_matches", "pages_of"]

_PAGE_MASK = ~(PAGE_SIZE - 1)

# What a slot kind takes away from its pages so that the access it watches faults.
_PROT_REMOVED_FOR = {HW_BREAKPOINT_W: UC_PROT_WRITE, HW_BREAKPOINT_R: UC_PROT_READ}
_ACCESS_OF_UC = {UC_MEM_READ: HW_BREAKPOINT_R, UC_MEM_WRITE: HW_BREAKPOINT_W}
_HOOK_KIND_FOR = {HW_BREAKPOINT_R: UC_HOOK_MEM_READ, HW_BREAKPOINT_W: UC_HOOK_MEM_WRITE}

# How far before a slot its hook starts: Unicorn reports accesses of at most
# 8 bytes (a 16-byte movdqu is two, fxsave many: measured); 16 leaves room and
# costs only a Python call for a near miss.
_WIDEST_ACCESS = 16

# Hot-page policy: a false fault (an access that matched no slot) is "busy"
# when handling it (from the fault to the end of its watched step) took at
# least _HOT_FAULT_SHARE of that plus the time the program ran before it.
# After _HOT_AFTER_FALSE_FAULTS false faults on a page, the page switches when
# most of them were busy, else its tally is halved and keeps counting.  A
# vote, not a sum of times, so that one slow interval (the first run
# translating code, a loaded machine) cannot outweigh sixty fast ones.
# Measured: in a tight loop a false fault's handling takes ~30 us against a
# few us of running (share ~0.9); in gdb's watch loop, where every continue
# has one false fault, ~100 us against ~120 us (share ~0.46, most of that
# "run" re-translating what the previous step's cache flush threw away); a
# page touched once every 2 ms of running shares ~0.02.  Hook mode runs code
# ~3.5x slower, so it pays when the program runs only some tens of us
# between false faults.
_HOT_AFTER_FALSE_FAULTS = 64
_HOT_FAULT_SHARE = 0.35


def slot_matches(slot: WatchSlot, addr: int, size: int, access: int) -> bool:
    """Does a data access of `size` bytes at `addr` trigger `slot`?

    Any overlap with [slot.addr, slot.addr + slot.length) counts, as with the
    hardware comparators (an 8-byte write starting 4 bytes before a 4-byte
    slot hits it; an adjacent one does not).
    """
    if not slot.access & access & (HW_BREAKPOINT_R | HW_BREAKPOINT_W):
        return False
    return addr < slot.addr + slot.length and slot.addr < addr + size


def _bits_for(access: int, table: dict[int, int]) -> int:
    """The union of `table`'s values for the HW_BREAKPOINT_* kinds in `access`."""
    bits = 0
    for kind, value in table.items():
        if access & kind:
            bits |= value
    return bits


def pages_of(addr: int, length: int) -> range:
    """Page base addresses covering [addr, addr + length)."""
    first = addr & _PAGE_MASK
    last = (addr + max(length, 1) - 1) & _PAGE_MASK
    return range(first, last + PAGE_SIZE, PAGE_SIZE)


class _MemoryHook:
    """A read/write hook on all memory that can be added and removed cheaply.

    `Uc.hook_add` builds a new ctypes thunk on every call (~30 us measured, the
    largest single cost of a watched step); this keeps one thunk and calls
    the C API directly when the binding exposes it (unicorn 2.1's
    `unicorn_py3`), else falls back to hook_add/hook_del.
    """

    _KINDS = UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE

    def __init__(self, uc: Uc, callback: Callable[..., object]) -> None:
        self._uc = uc
        self._callback = callback
        self._handle: int | None = None
        try:
            from unicorn.unicorn_py3 import unicorn as binding
            self._lib = binding.uclib
            self._handle_type = binding.uc_hook_h
            self._thunk = binding.HOOK_MEM_ACCESS_CFUNC(
                lambda _engine, access, addr, size, value, _key: callback(uc, access, addr, size, value, None))
            self._engine = uc._uch
        except (ImportError, AttributeError):
            self._lib = None

    @property
    def installed(self) -> bool:
        return self._handle is not None

    def add(self) -> None:
        if self._lib is None:
            self._handle = self._uc.hook_add(self._KINDS, self._callback)
            return
        handle = self._handle_type()
        status = self._lib.uc_hook_add(self._engine, ctypes.byref(handle), self._KINDS, self._thunk,
                                       None, ctypes.c_uint64(1), ctypes.c_uint64(0))
        if status != 0:
            raise UcError(status)
        self._handle = handle.value

    def remove(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if self._lib is None:
            self._uc.hook_del(handle)
            return
        status = self._lib.uc_hook_del(self._engine, self._handle_type(handle))
        if status != 0:
            raise UcError(status)


class WatchMode(enum.Enum):
    """How the pages that hold data slots are watched."""

    AUTO = "auto"          # protection; a page busy with false sharing switches to a hook
    PROTECT = "protect"    # protection only: every access to a watched page faults
    HOOK = "hook"          # every watched page in hook mode from the start (tests, benchmarks)


@dataclass(frozen=True)
class WatchFault:
    """A protection fault the watch caused, as the CPU saw it: what the hot-page policy learns from."""

    pc: int
    fetch: bool            # the instruction fetch faulted (a read-watched page that holds code)
    run_seconds: float     # how long the program ran before it
    seen_at: float = field(default_factory=time.perf_counter)   # when the run ended with it


@dataclass(frozen=True)
class WatchStatistics:
    """Python-level work the data slots have caused so far."""

    protection_faults: int     # watch faults, each one stepped instruction
    false_faults: int          # ... of which matched no slot (false sharing)
    hook_stops: int            # runs a slot hook stopped at a matching access
    hot_pages: frozenset[int]  # watched pages now in hook mode


@dataclass(frozen=True)
class _Access:
    addr: int
    size: int
    access: int


@dataclass(frozen=True)
class _HookStop:
    pc: int                    # the instruction the slot hook stopped in
    addr: int
    saved: bytes | None        # what the stopped store overwrote (None for a read)


@dataclass
class _Traffic:
    """False faults on one page and what they cost (the hot-page policy's tally)."""

    faults: int = 0
    busy: int = 0               # ... whose step took at least _HOT_FAULT_SHARE of the time


HookWrapper = Callable[[Callable[..., object]], Callable[..., object]]


class DebugUnit:
    """DR0-DR3/DR7 as enforced state: which slots exist and how their pages are watched.

    `guest_perms(page)` gives the program's own UC_PROT_* for a page (None if
    unmapped): the permissions restored during a step and the base from which
    watch bits are removed, so a genuine guest violation still faults.
    `wrap_hook` wraps every hook callback this unit installs (the CPU uses it
    to carry exceptions out of emu_start).  `mode` chooses protection, hooks,
    or protection that switches busy pages to hooks (see the module docstring).
    """

    def __init__(
        self,
        uc: Uc,
        guest_perms: Callable[[int], int | None],
        wrap_hook: HookWrapper = lambda fn: fn,
        mode: WatchMode = WatchMode.AUTO,
    ) -> None:
        self._uc = uc
        self._guest_perms = guest_perms
        self._mode = mode
        self._memory_hook = _MemoryHook(uc, wrap_hook(self._on_memory_access))
        self._on_slot_hook = wrap_hook(self._on_slot_access)
        self._slots: tuple[WatchSlot, ...] = ()
        self._data_slots: tuple[WatchSlot, ...] = ()
        self._exec_slots: dict[int, tuple[int, ...]] = {}
        self._by_index: dict[int, WatchSlot] = {}
        self._removed: dict[int, int] = {}    # page -> UC_PROT bits the slots need taken away there
        self._protected: dict[int, int] = {}  # ... restricted to the pages watched by protection
        self._write_protected: frozenset[int] = frozenset()   # ... of which writes fault
        self._hooked_pages: frozenset[int] = frozenset()
        self._slot_hooks: list[int] = []
        self._learned_hot: set[int] = set()   # pages that proved busy: hooked whenever watched
        self._traffic: dict[int, _Traffic] = {}
        self._first_match: _Access | None = None
        self._matched: set[int] = set()
        self._hook_stop: _HookStop | None = None
        # the watched step in progress
        self._stepping = False
        self._step_fault: WatchFault | None = None
        self._step_pages: set[int] = set()
        # statistics
        self._protection_faults = 0
        self._false_faults = 0
        self._hook_stops = 0

    # ---- what is armed -------------------------------------------------------------------
    @property
    def slots(self) -> tuple[WatchSlot, ...]:
        return self._slots

    @property
    def watching_data(self) -> bool:
        return bool(self._data_slots)

    @property
    def exec_addresses(self) -> frozenset[int]:
        return frozenset(self._exec_slots)

    @property
    def hot_pages(self) -> frozenset[int]:
        """Watched pages in hook mode: guest permissions, a memory hook per slot on them."""
        return self._hooked_pages

    @property
    def hook_mode(self) -> bool:
        """Some slot is watched by a memory hook: runs must be counted (see the module docstring)."""
        return bool(self._slot_hooks)

    @property
    def memory_hooks(self) -> int:
        return len(self._slot_hooks) + (1 if self._memory_hook.installed else 0)

    @property
    def protects_writes(self) -> bool:
        """Some watched page is write-protected (stores made in C helpers need the CPU's help)."""
        return bool(self._write_protected)

    @property
    def write_protected_pages(self) -> frozenset[int]:
        return self._write_protected

    def write_protected(self, start: int, end: int) -> bool:
        """Would a store to [start, end) fault on a watched page now (outside a watched step)?"""
        if self._stepping or not self._write_protected:
            return False
        return not self._write_protected.isdisjoint(pages_of(start, end - start))

    def exec_slots_at(self, addr: int) -> tuple[int, ...]:
        return self._exec_slots.get(addr, ())

    def slot(self, index: int) -> WatchSlot:
        return self._by_index[index]

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(self._protection_faults, self._false_faults, self._hook_stops, self._hooked_pages)

    def load(self, slots: Sequence[WatchSlot]) -> None:
        """Enforce exactly `slots` from now on (the DR7 write)."""
        self._disarm()
        self._slots = tuple(slots)
        self._by_index = {s.index: s for s in self._slots}
        self._data_slots = tuple(s for s in self._slots if s.access & (HW_BREAKPOINT_R | HW_BREAKPOINT_W))
        exec_slots: dict[int, list[int]] = {}
        for s in self._slots:
            if s.access & HW_BREAKPOINT_X:
                exec_slots.setdefault(s.addr, []).append(s.index)
        self._exec_slots = {addr: tuple(sorted(idx)) for addr, idx in exec_slots.items()}
        removed: dict[int, int] = {}
        for s in self._data_slots:
            bits = _bits_for(s.access, _PROT_REMOVED_FOR)
            for page in pages_of(s.addr, s.length):
                removed[page] = removed.get(page, 0) | bits
        self._removed = removed
        self._arm()

    def reprotect(self) -> None:
        """Re-apply the watch protection after the guest changed its mappings."""
        self._protect()

    # ---- one watched instruction ----------------------------------------------------------
    def begin_step(self, fault: WatchFault | None = None) -> None:
        """Give watched pages back their guest permissions and record accesses.

        `fault`: the protection fault that made the CPU step this instruction.
        """
        if not self._data_slots:
            return
        self._unprotect()
        self._first_match = None
        self._matched.clear()
        self._step_pages.clear()
        self._stepping = True          # the slot hooks leave this instruction to the recorder
        self._step_fault = fault
        if fault is not None:
            self._protection_faults += 1
        # The whole address space: an access may start on the page before a
        # watched one, and the hook only lives for one instruction.
        self._memory_hook.add()

    def end_step(self) -> None:
        if not self._memory_hook.installed:
            return
        self._memory_hook.remove()
        self._stepping = False
        fault, self._step_fault = self._step_fault, None
        hot = set()
        if fault is not None and self._first_match is None:
            hot = self._count_false_fault(fault, time.perf_counter() - fault.seen_at)
        if hot:
            self._disarm()
            self._learned_hot |= hot
            self._arm()
        else:
            self._protect()

    def take_hit(self, cpu: int, task: object, ip: int) -> Hit | None:
        """The Hit for the instruction just stepped (or just stopped after), or None (and forget it)."""
        first, matched = self._first_match, self._matched
        self._hook_stop = None
        if first is None:
            return None
        self._first_match = None
        self._matched = set()
        return Hit(cpu, task, ip, first.addr, first.size, first.access, tuple(sorted(matched)))

    def discard_accesses(self) -> None:
        """The stepped instruction faulted: nothing it touched counts."""
        self._first_match = None
        self._matched.clear()

    # ---- slot hooks ----------------------------------------------------------------------
    @property
    def hook_stop_pc(self) -> int | None:
        """The instruction in which a slot hook stopped the last run, if one did."""
        return None if self._hook_stop is None else self._hook_stop.pc

    def rewind_hook_stop(self) -> None:
        """The run stopped inside an instruction (RIP on it): undo the store it stopped at.

        Everything else the instruction did before that store is redone
        identically when it is stepped (x86 instructions read before they write).
        """
        stop, self._hook_stop = self._hook_stop, None
        self.discard_accesses()
        if stop is not None and stop.saved is not None:
            self._uc.mem_write(stop.addr, stop.saved)

    # ---- internals ------------------------------------------------------------------------
    def _on_memory_access(self, uc: Uc, uc_access: int, addr: int, size: int, value: int, _: object) -> None:
        access = _ACCESS_OF_UC.get(uc_access)
        if access is None:
            return
        for page in {addr & _PAGE_MASK, (addr + size - 1) & _PAGE_MASK}:
            if page in self._protected:
                self._step_pages.add(page)
        for s in self._data_slots:
            if slot_matches(s, addr, size, access):
                if self._first_match is None:
                    self._first_match = _Access(addr, size, access)
                self._matched.add(s.index)

    def _on_slot_access(self, uc: Uc, uc_access: int, addr: int, size: int, value: int, _: object) -> None:
        if self._stepping:
            return
        access = _ACCESS_OF_UC.get(uc_access)
        if access is None:
            return
        matched = [s.index for s in self._data_slots if slot_matches(s, addr, size, access)]
        if not matched:
            return              # a near miss inside the widened range
        if self._hook_stop is None:
            saved = self._read_quietly(addr, size) if access == HW_BREAKPOINT_W else None
            self._hook_stop = _HookStop(uc.reg_read(UC_X86_REG_RIP), addr, saved)
            self._first_match = _Access(addr, size, access)
            self._hook_stops += 1
            uc.emu_stop()
        # (a helper-implemented instruction goes on to its other accesses: they count too)
        self._matched.update(matched)

    def _read_quietly(self, addr: int, size: int) -> bytes | None:
        try:
            return bytes(self._uc.mem_read(addr, size))
        except UcError:         # not mapped: the access faults and writes nothing
            return None

    def _count_false_fault(self, fault: WatchFault, handling: float) -> set[int]:
        """Tally a step that matched no slot on the pages it faulted on; the pages now hot."""
        pages = set(self._step_pages)
        if fault.fetch:
            pages.update(p for p in pages_of(fault.pc, MAX_INSN_LEN) if p in self._protected)
        if not pages:           # the guest's own violation, not ours
            return set()
        self._false_faults += 1
        if self._mode is not WatchMode.AUTO:
            return set()
        busy = handling >= _HOT_FAULT_SHARE * (handling + fault.run_seconds)
        hot = set()
        for page in pages:
            traffic = self._traffic.setdefault(page, _Traffic())
            traffic.faults += 1
            traffic.busy += busy
            if traffic.faults < _HOT_AFTER_FALSE_FAULTS:
                continue
            if 2 * traffic.busy > traffic.faults:
                hot.add(page)
                del self._traffic[page]
            else:               # not busy enough: let older faults weigh half
                traffic.faults //= 2
                traffic.busy //= 2
        return hot

    def _arm(self) -> None:
        """Watch `_removed`: hooks on the hot pages' slots, protection on the other pages."""
        if self._mode is WatchMode.HOOK:
            hot = frozenset(self._removed)
        elif self._mode is WatchMode.AUTO:
            hot = frozenset(self._learned_hot.intersection(self._removed))
        else:
            hot = frozenset()
        self._hooked_pages = hot
        self._protected = {page: bits for page, bits in self._removed.items() if page not in hot}
        self._write_protected = frozenset(page for page, bits in self._protected.items() if bits & UC_PROT_WRITE)
        for s in self._data_slots:
            if hot.isdisjoint(pages_of(s.addr, s.length)):
                continue
            begin = max(0, s.addr - (_WIDEST_ACCESS - 1))
            kinds = _bits_for(s.access, _HOOK_KIND_FOR)
            self._slot_hooks.append(self._uc.hook_add(kinds, self._on_slot_hook, begin=begin,
                                                      end=s.addr + s.length - 1))
        self._protect()

    def _disarm(self) -> None:
        self._unprotect()
        for handle in self._slot_hooks:
            self._uc.hook_del(handle)
        self._slot_hooks.clear()

    def _protect(self) -> None:
        self._set_perms(self._protected.items())

    def _unprotect(self) -> None:
        self._set_perms((page, 0) for page in self._protected)

    def _set_perms(self, pages: Iterable[tuple[int, int]]) -> None:
        for page, removed in pages:
            guest = self._guest_perms(page)
            if guest is None:       # unmapped: an access faults as unmapped anyway
                continue
            perms = guest & ~removed
            if removed & UC_PROT_READ:
                # A code fetch fills Unicorn's TLB with read permission for
                # the whole page, so reads on a page that executes are only
                # caught if its code faults too (it then runs one
                # instruction per fault: slow, but exact).
                perms &= ~UC_PROT_EXEC
            self._uc.mem_protect(page, PAGE_SIZE, perms)
