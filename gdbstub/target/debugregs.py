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
such a page then runs one instruction per fetch fault: exact but slow.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from unicorn import (
    UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_MEM_READ, UC_MEM_WRITE, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE,
    Uc, UcError,
)

from gdbstub.hwbp.attr import HW_BREAKPOINT_R, HW_BREAKPOINT_W, HW_BREAKPOINT_X, Hit, WatchSlot

__all__ = ["PAGE_SIZE", "DebugUnit", "slot_matches", "pages_of"]

PAGE_SIZE = 0x1000
_PAGE_MASK = ~(PAGE_SIZE - 1)

# What a slot kind takes away from its pages so that the access it watches faults.
_PROT_REMOVED_FOR = {HW_BREAKPOINT_W: UC_PROT_WRITE, HW_BREAKPOINT_R: UC_PROT_READ}
_ACCESS_OF_UC = {UC_MEM_READ: HW_BREAKPOINT_R, UC_MEM_WRITE: HW_BREAKPOINT_W}


def slot_matches(slot: WatchSlot, addr: int, size: int, access: int) -> bool:
    """Does a data access of `size` bytes at `addr` trigger `slot`?

    Any overlap with [slot.addr, slot.addr + slot.length) counts, as with the
    hardware comparators (an 8-byte write starting 4 bytes before a 4-byte
    slot hits it; an adjacent one does not).
    """
    if not slot.access & access & (HW_BREAKPOINT_R | HW_BREAKPOINT_W):
        return False
    return addr < slot.addr + slot.length and slot.addr < addr + size


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


@dataclass(frozen=True)
class _Access:
    addr: int
    size: int
    access: int


HookWrapper = Callable[[Callable[..., object]], Callable[..., object]]


class DebugUnit:
    """DR0-DR3/DR7 as enforced state: which slots exist and which pages they guard.

    `guest_perms(page)` gives the program's own UC_PROT_* for a page (None if
    unmapped): the permissions restored during a step and the base from which
    watch bits are removed, so a genuine guest violation still faults.
    `wrap_hook` wraps every hook callback this unit installs (the CPU uses it
    to carry exceptions out of emu_start).
    """

    def __init__(
        self,
        uc: Uc,
        guest_perms: Callable[[int], int | None],
        wrap_hook: HookWrapper = lambda fn: fn,
    ) -> None:
        self._uc = uc
        self._guest_perms = guest_perms
        self._memory_hook = _MemoryHook(uc, wrap_hook(self._on_memory_access))
        self._slots: tuple[WatchSlot, ...] = ()
        self._data_slots: tuple[WatchSlot, ...] = ()
        self._exec_slots: dict[int, tuple[int, ...]] = {}
        self._by_index: dict[int, WatchSlot] = {}
        self._removed: dict[int, int] = {}    # page -> UC_PROT bits taken away from the guest's
        self._first_match: _Access | None = None
        self._matched: set[int] = set()

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
    def watched_pages(self) -> dict[int, int]:
        """page -> UC_PROT bits removed from the guest's permissions there."""
        return dict(self._removed)

    @property
    def memory_hooks(self) -> int:
        return 1 if self._memory_hook.installed else 0

    def exec_slots_at(self, addr: int) -> tuple[int, ...]:
        return self._exec_slots.get(addr, ())

    def slot(self, index: int) -> WatchSlot:
        return self._by_index[index]

    def load(self, slots: Sequence[WatchSlot]) -> None:
        """Enforce exactly `slots` from now on (the DR7 write)."""
        self._unprotect()
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
            bits = 0
            for kind, prot in _PROT_REMOVED_FOR.items():
                if s.access & kind:
                    bits |= prot
            for page in pages_of(s.addr, s.length):
                removed[page] = removed.get(page, 0) | bits
        self._removed = removed
        self._protect()

    def reprotect(self) -> None:
        """Re-apply the watch protection after the guest changed its mappings."""
        self._protect()

    # ---- one watched instruction ----------------------------------------------------------
    def begin_step(self) -> None:
        """Give watched pages back their guest permissions and record accesses."""
        if not self._data_slots:
            return
        self._unprotect()
        self._first_match = None
        self._matched.clear()
        # The whole address space: an access may start on the page before a
        # watched one, and the hook only lives for one instruction.
        self._memory_hook.add()

    def end_step(self) -> None:
        if not self._memory_hook.installed:
            return
        self._memory_hook.remove()
        self._protect()

    def take_hit(self, cpu: int, task: object, ip: int) -> Hit | None:
        """The Hit for the instruction just stepped, or None (and forget it)."""
        first, matched = self._first_match, self._matched
        if first is None:
            return None
        self._first_match = None
        self._matched = set()
        return Hit(cpu, task, ip, first.addr, first.size, first.access, tuple(sorted(matched)))

    def discard_accesses(self) -> None:
        """The stepped instruction faulted: nothing it touched counts."""
        self._first_match = None
        self._matched.clear()

    # ---- internals ------------------------------------------------------------------------
    def _on_memory_access(self, uc: Uc, uc_access: int, addr: int, size: int, value: int, _: object) -> None:
        access = _ACCESS_OF_UC.get(uc_access)
        if access is None:
            return
        for s in self._data_slots:
            if slot_matches(s, addr, size, access):
                if self._first_match is None:
                    self._first_match = _Access(addr, size, access)
                self._matched.add(s.index)

    def _protect(self) -> None:
        self._set_perms(self._removed.items())

    def _unprotect(self) -> None:
        self._set_perms((page, 0) for page in self._removed)

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
