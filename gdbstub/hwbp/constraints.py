"""Per-CPU / per-task slot accounting (kernel/events/hw_breakpoint.c, 2022 rework).

Decides at registration whether a breakpoint could ever be scheduled without
exceeding the slots of any CPU it may run on. It never picks a slot index.

Linux keeps histograms so the answer costs O(slots); here the same numbers are
computed by brute force over the registered set, which is small and makes each
rule readable:

* a CPU breakpoint is always installed on its CPU;
* a task breakpoint is installed only while its task runs, and one task runs
  per CPU at a time, so other tasks never constrain a task breakpoint, while a
  CPU breakpoint must leave room for the busiest task on that CPU.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from .arch import TYPE_DATA, TYPE_INST
from .attr import HW_BREAKPOINT_R, HW_BREAKPOINT_W


def find_slot_idx(bp_type: int, mixed_slots: bool) -> int:
    """The pool a breakpoint type draws from: data if it reads or writes, else instruction."""
    if mixed_slots or bp_type & (HW_BREAKPOINT_R | HW_BREAKPOINT_W):
        return TYPE_DATA
    return TYPE_INST


@dataclass(frozen=True)
class Reservation:
    """What the accounting knows of one registered breakpoint."""

    cpu: int  # -1: every CPU (task breakpoints only)
    task: Hashable | None  # None: a CPU breakpoint
    slot_type: int
    weight: int = 1

    def applies_on(self, cpu: int) -> bool:
        return self.cpu in (-1, cpu)


class SlotConstraints:
    """The registered set, keyed by breakpoint identity, and the questions Linux asks of it."""

    def __init__(self, ncpus: int) -> None:
        self.ncpus = ncpus
        self._reservations: dict[object, Reservation] = {}

    def __len__(self) -> int:
        return len(self._reservations)

    def cpus_of(self, res: Reservation) -> Iterable[int]:
        """Linux cpumask_of_bp: the bound CPU, or every possible CPU."""
        return range(self.ncpus) if res.cpu == -1 else (res.cpu,)

    def cpu_pinned(self, cpu: int, slot_type: int) -> int:
        """Slots CPU breakpoints always hold on `cpu`."""
        return sum(
            r.weight
            for r in self._reservations.values()
            if r.task is None and r.cpu == cpu and r.slot_type == slot_type
        )

    def task_bp_pinned(self, cpu: int, task: Hashable, slot_type: int) -> int:
        """Slots `task` holds on `cpu` while it runs there (all-CPU ones + ones bound to it)."""
        return sum(
            r.weight
            for r in self._reservations.values()
            if r.task is not None and r.task == task and r.slot_type == slot_type and r.applies_on(cpu)
        )

    def max_task_bp_pinned(self, cpu: int, slot_type: int) -> int:
        """The most slots any single task can hold on `cpu`."""
        per_task: dict[Hashable, int] = {}
        for r in self._reservations.values():  # one pass, not one per task
            if r.task is not None and r.slot_type == slot_type and r.applies_on(cpu):
                per_task[r.task] = per_task.get(r.task, 0) + r.weight
        return max(per_task.values(), default=0)

    def pinned_slots_on(self, cpu: int, res: Reservation) -> int:
        """Slots already committed on `cpu` that `res` would have to share it with."""
        if res.task is None:
            others = self.max_task_bp_pinned(cpu, res.slot_type)
        else:
            others = self.task_bp_pinned(cpu, res.task, res.slot_type)
        return self.cpu_pinned(cpu, res.slot_type) + others

    def max_bp_pinned_slots(self, res: Reservation) -> tuple[int, int]:
        """(slots committed on the busiest CPU `res` may run on, that CPU)."""
        pairs = ((self.pinned_slots_on(cpu, res), cpu) for cpu in self.cpus_of(res))
        return max(pairs, key=lambda pair: pair[0])  # the first busiest CPU, for messages

    def toggle_bp_slot(self, key: object, res: Reservation, enable: bool) -> None:
        """Add (enable) or remove the bookkeeping of one breakpoint; no checks."""
        if enable:
            self._reservations[key] = res
        else:
            del self._reservations[key]

    def reservation(self, key: object) -> Reservation | None:
        return self._reservations.get(key)

    def is_used(self) -> bool:
        return bool(self._reservations)
