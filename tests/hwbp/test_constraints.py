"""The accounting against an independent model of what it must guarantee.

The model knows nothing of Linux's formulas. It states the invariant the
accounting exists for: whatever task each CPU runs (or none), the breakpoints
that would then be installed on that CPU fit in its slots, pool by pool. A
registration is acceptable iff the invariant still holds with it added.
The same run also context-switches for real, so an accounting error shows up
as an EBUSY from the arch's install, or as a wrong enforced-slot count.
"""

from __future__ import annotations

from dataclasses import dataclass
from errno import EINVAL, ENOSPC

from hypothesis import given, settings
from hypothesis import strategies as st

from gdbstub.hwbp import (
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    BreakpointCore,
    HwBreakpointError,
)
from gdbstub.hwbp.virt import VirtDebugArch
from gdbstub.hwbp.x86 import X86DebugArch

NCPUS = 3
TASKS = ("A", "B", "C")


@dataclass(frozen=True)
class ModelBp:
    cpu: int
    task: str | None
    pool: str


class ScheduleModel:
    """Breakpoints as (cpu, task, pool); capacity per pool."""

    def __init__(self, capacity: dict[str, int]) -> None:
        self.capacity = capacity
        self.live: list[ModelBp] = []

    def installed_on(self, cpu: int, running: str | None, bps: list[ModelBp], pool: str) -> int:
        return sum(
            1
            for bp in bps
            if bp.pool == pool
            and ((bp.task is None and bp.cpu == cpu) or (bp.task is not None and bp.task == running and bp.cpu in (-1, cpu)))
        )

    def fits(self, bps: list[ModelBp]) -> bool:
        return all(
            self.installed_on(cpu, running, bps, pool) <= limit
            for cpu in range(NCPUS)
            for running in (None, *TASKS)
            for pool, limit in self.capacity.items()
        )

    def accepts(self, bp: ModelBp) -> bool:
        return self.fits([*self.live, bp])


def pool_of(bp_type: int, split: bool) -> str:
    return "inst" if split and bp_type == HW_BREAKPOINT_X else "data"


def attr_for(bp_type: int, n: int) -> BreakpointAttr:
    if bp_type == HW_BREAKPOINT_X:
        return BreakpointAttr(bp_addr=0x401000 + n, bp_len=8, bp_type=bp_type)
    return BreakpointAttr(bp_addr=0x600000 + 8 * n, bp_len=4, bp_type=bp_type)


ARCHES = {
    "x86": (X86DebugArch, {"data": 4}, False),
    "virt-split": (lambda: VirtDebugArch(slots=2, inst_slots=1), {"data": 2, "inst": 1}, True),
    "virt3": (lambda: VirtDebugArch(slots=3), {"data": 3}, False),
}

register_op = st.tuples(
    st.just("register"),
    st.integers(-1, NCPUS - 1),
    st.sampled_from((None, *TASKS)),
    st.sampled_from((HW_BREAKPOINT_W, HW_BREAKPOINT_RW, HW_BREAKPOINT_X)),
)
unregister_op = st.tuples(st.just("unregister"), st.integers(0, 1000))
switch_op = st.tuples(st.just("switch"), st.integers(0, NCPUS - 1), st.sampled_from((None, *TASKS)))
ops = st.lists(st.one_of(register_op, register_op, unregister_op, switch_op), max_size=60)


@settings(max_examples=150, deadline=None)
@given(arch_name=st.sampled_from(sorted(ARCHES)), script=ops)
def test_accounting_matches_schedule_model(arch_name, script):
    make_arch, capacity, split = ARCHES[arch_name]
    core = BreakpointCore(make_arch(), ncpus=NCPUS)
    model = ScheduleModel(capacity)
    pairs = []  # (core breakpoint, model breakpoint), in registration order
    running: list[str | None] = [None] * NCPUS

    for n, op in enumerate(script):
        if op[0] == "register":
            _, cpu, task, bp_type = op
            candidate = ModelBp(cpu, task, pool_of(bp_type, split))
            try:
                bp = core.register(attr_for(bp_type, n), cpu, task)
            except HwBreakpointError as err:
                if cpu == -1 and task is None:
                    assert err.errno == EINVAL
                else:
                    assert err.errno == ENOSPC, err
                    assert not model.accepts(candidate), f"refused {candidate} that fits"
                continue
            assert model.accepts(candidate), f"accepted {candidate} that cannot fit"
            model.live.append(candidate)
            pairs.append((bp, candidate))
        elif op[0] == "unregister" and pairs:
            bp, candidate = pairs.pop(op[1] % len(pairs))
            core.unregister(bp)
            model.live.remove(candidate)
        elif op[0] == "switch":
            _, cpu, task = op
            core.set_current_task(cpu, task)  # an install past capacity raises EBUSY
            running[cpu] = task

        for cpu in range(NCPUS):
            expected = sum(model.installed_on(cpu, running[cpu], model.live, pool) for pool in capacity)
            assert len(core.enforced_slots(cpu)) == expected

    for bp, _ in pairs:
        core.unregister(bp)
    assert not core.is_used()


def test_model_rejects_what_linux_rejects():
    """The model itself must be able to say no (guards against a vacuous model)."""
    model = ScheduleModel({"data": 1})
    model.live.append(ModelBp(-1, "A", "data"))
    assert not model.accepts(ModelBp(0, None, "data"))
    assert not model.accepts(ModelBp(1, "A", "data"))
    assert model.accepts(ModelBp(-1, "B", "data"))
