"""The core hardware-breakpoint API (kernel/events/hw_breakpoint.c).

Registration = reserve a slot (constraints.py decides whether it fits), then
let the arch parse the attributes, releasing the reservation if it refuses.
Scheduling = install enabled breakpoints into the per-CPU register images:
CPU breakpoints on their CPU at once, task breakpoints on the CPU where their
task is current. No DR bit is touched here; the arch owns the image.

One RLock guards the accounting and the images: consumers call from the trio
thread while the CPU thread delivers hits. Handlers and listeners run without it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from errno import EINVAL, ENOENT, ENOSPC, ENOSYS, EPERM
from typing import Any

from .arch import DebugArch
from .attr import HW_BREAKPOINT_EMPTY, HW_BREAKPOINT_INVALID, BreakpointAttr, Hit, WatchSlot
from .constraints import Reservation, SlotConstraints, find_slot_idx
from .errors import HwBreakpointError

log = logging.getLogger(__name__)

Handler = Callable[["Breakpoint", Hit], "bool | None"]
Listener = Callable[[int], None]

_ids = itertools.count(1)


class Breakpoint:
    """One registered breakpoint (Linux: a perf_event of PERF_TYPE_BREAKPOINT)."""

    def __init__(
        self,
        core: BreakpointCore,
        attr: BreakpointAttr,
        cpu: int,
        task: Hashable | None,
        handler: Handler | None,
        owner: str,
    ) -> None:
        self.id = next(_ids)
        self.attr = attr
        self.cpu = cpu
        self.task = task
        self.handler = handler
        self.owner = owner
        self.count = 0  # hits so far
        self.info: Any = None  # the arch's translation (Linux: counter_arch_bp)
        self._core = core
        self._enabled = not attr.disabled
        self._registered = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def registered(self) -> bool:
        return self._registered

    def enable(self) -> None:
        """perf_event_enable: arm it again; the reservation never went away."""
        self._core.toggle(self, True)

    def disable(self) -> None:
        """perf_event_disable: stop it firing but keep its reservation."""
        self._core.toggle(self, False)

    def __repr__(self) -> str:
        state = "enabled" if self._enabled else "disabled"
        if not self._registered:
            state = "unregistered"
        return (
            f"<Breakpoint #{self.id} {self.owner} type={self.attr.bp_type} "
            f"{self.attr.bp_addr:#x}/{self.attr.bp_len} cpu={self.cpu} task={self.task!r} {state}>"
        )


class BreakpointCore:
    """Registration, accounting and per-CPU scheduling of hardware breakpoints."""

    def __init__(self, arch: DebugArch, ncpus: int = 1) -> None:
        if ncpus < 1:
            raise ValueError("ncpus must be >= 1")
        self.arch = arch
        self.ncpus = ncpus
        self._lock = threading.RLock()
        self._constraints = SlotConstraints(ncpus)
        self._breakpoints: list[Breakpoint] = []
        self._registers = [arch.new_registers() for _ in range(ncpus)]
        self._installed: list[list[Breakpoint]] = [[] for _ in range(ncpus)]
        self._current: list[Hashable | None] = [None] * ncpus
        self._listeners: list[Listener] = []
        self._dirty: set[int] = set()
        self._depth = 0

    # --- public API: registration ------------------------------------------------------

    def register(
        self,
        attr: BreakpointAttr,
        cpu: int,
        task: Hashable | None = None,
        handler: Handler | None = None,
        *,
        owner: str = "kernel",
        privileged: bool = True,
    ) -> Breakpoint:
        """perf_event_create_kernel_counter: cpu=-1 means every CPU (needs a task)."""
        with self._update():
            return self._register(attr, cpu, task, handler, owner, privileged)

    def register_user(
        self,
        attr: BreakpointAttr,
        task: Hashable,
        handler: Handler | None = None,
        *,
        owner: str = "kernel",
        privileged: bool = True,
    ) -> Breakpoint:
        """register_user_hw_breakpoint: a task breakpoint on all CPUs."""
        if task is None:
            raise HwBreakpointError(EINVAL, "a user breakpoint needs a task")
        return self.register(attr, -1, task, handler, owner=owner, privileged=privileged)

    def register_wide(
        self, attr: BreakpointAttr, handler: Handler | None = None, *, owner: str = "kernel"
    ) -> list[Breakpoint]:
        """register_wide_hw_breakpoint: one CPU breakpoint per CPU, all or nothing."""
        with self._update():
            made: list[Breakpoint] = []
            try:
                for cpu in range(self.ncpus):
                    made.append(self._register(attr, cpu, None, handler, owner, True))
            except HwBreakpointError:
                for bp in made:
                    self._unregister(bp)
                raise
            return made

    def unregister(self, bp: Breakpoint | None) -> None:
        """unregister_hw_breakpoint: uninstall everywhere and release the slot (None: no-op)."""
        if bp is None:
            return
        with self._update():
            self._unregister(bp)

    def unregister_wide(self, bps: Iterable[Breakpoint | None]) -> None:
        """unregister_wide_hw_breakpoint."""
        with self._update():
            for bp in bps:
                if bp is not None:
                    self._unregister(bp)

    def modify(self, bp: Breakpoint, attr: BreakpointAttr, *, privileged: bool = True) -> None:
        """modify_user_hw_breakpoint: new addr/len/type/disabled, or nothing changes.

        As in Linux, only bp_addr, bp_len, bp_type and disabled are taken from
        `attr`; the other fields keep their registered values.
        """
        with self._update():
            self._check_supported()
            if not bp._registered:
                raise HwBreakpointError(ENOENT, f"{bp!r} is not registered")
            new_attr = replace(
                bp.attr,
                bp_addr=attr.bp_addr,
                bp_len=attr.bp_len,
                bp_type=attr.bp_type,
                disabled=attr.disabled,
            )
            # Validate everything before touching the armed breakpoint.
            info = self.hw_breakpoint_parse(new_attr, privileged)
            if new_attr.bp_type != bp.attr.bp_type:
                self.modify_bp_slot(bp, bp.attr.bp_type, new_attr.bp_type)
            bp._enabled = False
            self._sync_cpus(self._cpus_of(bp))
            bp.attr, bp.info = new_attr, info
            bp._enabled = not new_attr.disabled
            self._sync_cpus(self._cpus_of(bp))

    def toggle(self, bp: Breakpoint, enable: bool) -> None:
        """Arm or disarm a registered breakpoint (bp.enable()/bp.disable())."""
        with self._update():
            if not bp._registered:
                raise HwBreakpointError(ENOENT, f"{bp!r} is not registered")
            bp._enabled = enable
            self._sync_cpus(self._cpus_of(bp))

    def release_task(self, task: Hashable) -> None:
        """The task exited: unregister all its breakpoints (flush_ptrace_hw_breakpoint)."""
        with self._update():
            for bp in [b for b in self._breakpoints if b.task is not None and b.task == task]:
                self._unregister(bp)

    # --- public API: queries -------------------------------------------------------------

    def is_used(self) -> bool:
        """hw_breakpoint_is_used: does any breakpoint hold a reservation?"""
        with self._lock:
            return self._constraints.is_used()

    def slots(self, bp_type: int) -> int:
        """hw_breakpoint_slots for the pool `bp_type` draws from."""
        if not self.arch.supported:
            return 0
        return self.arch.hw_breakpoint_slots(find_slot_idx(bp_type, self.arch.mixed_slots))

    def breakpoints(self) -> list[Breakpoint]:
        """Every registered breakpoint, oldest first."""
        with self._lock:
            return list(self._breakpoints)

    def slot_of(self, bp: Breakpoint, cpu: int) -> int | None:
        """The slot (DR index) `bp` occupies on `cpu`, or None if not installed there."""
        with self._lock:
            return self.arch.slot_of(self.registers(cpu), bp)

    def registers(self, cpu: int) -> Any:
        """The register image of `cpu` (x86: .dr, .dr6, .dr7)."""
        self._check_cpu(cpu)
        return self._registers[cpu]

    def enforced_slots(self, cpu: int) -> list[WatchSlot]:
        """What the hardware of `cpu` enforces, decoded from its image."""
        with self._lock:
            return self.arch.enforced_slots(self.registers(cpu))

    # --- public API: the emulated CPU's side ---------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """`listener(cpu)` runs after the image of `cpu` changed (outside the lock)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def set_current_task(self, cpu: int, task: Hashable | None) -> None:
        """Context switch: `task` now runs on `cpu` (None: idle)."""
        with self._update():
            self._check_cpu(cpu)
            self._current[cpu] = task
            self._sync_cpu(cpu)

    def current_task(self, cpu: int) -> Hashable | None:
        self._check_cpu(cpu)
        return self._current[cpu]

    def deliver(self, hit: Hit) -> bool:
        """The #DB handler (hw_breakpoint_handler): count, call handlers, say whether to stop.

        Sets the status bit of every slot in `hit.slots` (sticky until
        clear_dr6), then for each slot's owner that is armed and not excluded
        by exclude_user/exclude_kernel: count += 1 and, every sample_period
        hits, call its handler. True if any handler asked to stop.
        """
        due: list[Breakpoint] = []
        with self._lock:
            regs = self.registers(hit.cpu)
            self.arch.record_hit(regs, hit.slots)
            in_kernel = self.arch.ip_in_kernel(hit.ip)
            for slot in dict.fromkeys(hit.slots):
                bp = self.arch.slot_owner(regs, slot)
                if bp is None or not (bp._enabled and bp._registered):
                    continue  # a stale status bit, or a hit racing a disable
                if (bp.attr.exclude_kernel and in_kernel) or (bp.attr.exclude_user and not in_kernel):
                    continue
                bp.count += 1
                period = bp.attr.sample_period
                if bp.handler is not None and period > 0 and bp.count % period == 0:
                    due.append(bp)
        stop = False
        for bp in due:
            if bp.handler is not None and bp.handler(bp, hit):
                stop = True
        return stop

    def clear_dr6(self, cpu: int) -> None:
        """Software clears the status register (x86: DR6 back to 0xFFFF0FF0)."""
        with self._lock:
            self.arch.clear_status(self.registers(cpu))

    # --- reserve / release / modify (Linux names) ----------------------------------------

    def reserve_bp_slot(self, bp: Breakpoint, bp_type: int | None = None) -> None:
        """__reserve_bp_slot: EINVAL for EMPTY/INVALID, ENOSPC if it cannot fit."""
        bp_type = bp.attr.bp_type if bp_type is None else bp_type
        if bp_type in (HW_BREAKPOINT_EMPTY, HW_BREAKPOINT_INVALID):
            raise HwBreakpointError(EINVAL, f"breakpoint type {bp_type} is EMPTY or INVALID")
        slot_type = find_slot_idx(bp_type, self.arch.mixed_slots)
        weight = self.arch.hw_breakpoint_weight(bp.attr)
        res = Reservation(bp.cpu, bp.task, slot_type, weight)
        pinned, cpu = self._constraints.max_bp_pinned_slots(res)
        capacity = self.arch.hw_breakpoint_slots(slot_type)
        if pinned + weight > capacity:
            raise HwBreakpointError(
                ENOSPC,
                f"no free debug-register slot on cpu {cpu} ({pinned} of {capacity} already committed)",
            )
        self._constraints.toggle_bp_slot(bp, res, enable=True)

    def release_bp_slot(self, bp: Breakpoint) -> None:
        res = self._constraints.reservation(bp)
        if res is not None:
            self._constraints.toggle_bp_slot(bp, res, enable=False)

    def modify_bp_slot(self, bp: Breakpoint, old_type: int, new_type: int) -> None:
        """Move the reservation to the pool of `new_type`; on failure keep the old one."""
        self.release_bp_slot(bp)
        try:
            self.reserve_bp_slot(bp, new_type)
        except HwBreakpointError:
            # Cannot fail: the slot was ours a moment ago and we hold the lock.
            self.reserve_bp_slot(bp, old_type)
            raise

    def hw_breakpoint_parse(self, attr: BreakpointAttr, privileged: bool) -> Any:
        """The arch parse, then the kernel-space rules (EINVAL / EPERM)."""
        info = self.arch.hw_breakpoint_arch_parse(attr)
        if self.arch.arch_check_bp_in_kernelspace(info):
            if attr.exclude_kernel:
                raise HwBreakpointError(EINVAL, "a kernel-space breakpoint cannot exclude the kernel")
            if not privileged:
                raise HwBreakpointError(EPERM, "kernel-space breakpoints need CAP_SYS_ADMIN")
        return info

    def register_perf_hw_breakpoint(self, bp: Breakpoint, privileged: bool) -> None:
        """Reserve first (ENOSPC beats a bad attribute), then parse, releasing on failure."""
        self.reserve_bp_slot(bp)
        try:
            bp.info = self.hw_breakpoint_parse(bp.attr, privileged)
        except HwBreakpointError:
            self.release_bp_slot(bp)
            raise

    # --- internals -----------------------------------------------------------------------

    def _register(
        self,
        attr: BreakpointAttr,
        cpu: int,
        task: Hashable | None,
        handler: Handler | None,
        owner: str,
        privileged: bool,
    ) -> Breakpoint:
        if not isinstance(attr, BreakpointAttr):
            raise TypeError(f"attr must be a BreakpointAttr, not {type(attr).__name__}")
        try:
            self._check_supported()
            self._check_event(attr, cpu, task)
            bp = Breakpoint(self, attr, cpu, task, handler, owner)
            self.register_perf_hw_breakpoint(bp, privileged)
        except HwBreakpointError as err:
            log.info("%s: breakpoint %#x/%d type %d cpu %d refused: %s",
                     owner, attr.bp_addr, attr.bp_len, attr.bp_type, cpu, err)
            raise
        bp._registered = True
        self._breakpoints.append(bp)
        self._sync_cpus(self._cpus_of(bp))
        return bp

    def _unregister(self, bp: Breakpoint) -> None:
        if not bp._registered:
            return
        bp._registered = False
        self._breakpoints.remove(bp)
        self._sync_cpus(self._cpus_of(bp))  # uninstalls it: it is no longer wanted
        self.release_bp_slot(bp)

    def _check_supported(self) -> None:
        if not self.arch.supported:
            raise HwBreakpointError(ENOSYS, f"{self.arch.name} has no hardware breakpoints")

    def _check_event(self, attr: BreakpointAttr, cpu: int, task: Hashable | None) -> None:
        """What perf_event_open rejects before the breakpoint PMU sees the event."""
        if cpu == -1 and task is None:
            raise HwBreakpointError(EINVAL, "a breakpoint on all CPUs needs a task")
        if cpu != -1:
            self._check_cpu(cpu)
        if attr.sample_period < 0:
            raise HwBreakpointError(EINVAL, "sample_period must be >= 0")

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.ncpus:
            raise HwBreakpointError(EINVAL, f"cpu {cpu} does not exist (0..{self.ncpus - 1})")

    def _cpus_of(self, bp: Breakpoint) -> Iterable[int]:
        return range(self.ncpus) if bp.cpu == -1 else (bp.cpu,)

    def _should_install(self, bp: Breakpoint, cpu: int) -> bool:
        if not bp._enabled:
            return False
        if bp.task is None:
            return bp.cpu == cpu
        current = self._current[cpu]
        return bp.cpu in (-1, cpu) and current is not None and current == bp.task

    def _sync_cpus(self, cpus: Iterable[int]) -> None:
        for cpu in cpus:
            self._sync_cpu(cpu)

    def _sync_cpu(self, cpu: int) -> None:
        """Make `cpu`'s image hold exactly the breakpoints that should run there."""
        wanted = [bp for bp in self._breakpoints if self._should_install(bp, cpu)]
        installed = self._installed[cpu]
        regs = self._registers[cpu]
        for bp in [b for b in installed if b not in wanted]:
            self.arch.uninstall(regs, bp)
            installed.remove(bp)
            self._dirty.add(cpu)
        for bp in wanted:
            if bp not in installed:
                self.arch.install(regs, bp)
                installed.append(bp)
                self._dirty.add(cpu)

    @contextmanager
    def _update(self) -> Iterator[None]:
        """Hold the lock; once the outermost update ends, tell listeners what changed."""
        dirty: list[int] = []
        listeners: list[Listener] = []
        try:
            with self._lock:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        dirty = sorted(self._dirty)
                        self._dirty.clear()
                        listeners = list(self._listeners)
        finally:
            for cpu in dirty:
                for listener in listeners:
                    listener(cpu)
