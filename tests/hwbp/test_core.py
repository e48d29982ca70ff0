"""The core API: Linux's KUnit accounting scenarios, errors, modify, delivery, scheduling."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from errno import EINVAL, ENOENT, ENOSPC, EPERM

import pytest

from gdbstub.hwbp import (
    HW_BREAKPOINT_EMPTY,
    HW_BREAKPOINT_INVALID,
    HW_BREAKPOINT_LEN_1,
    HW_BREAKPOINT_LEN_4,
    HW_BREAKPOINT_LEN_8,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    Breakpoint,
    BreakpointAttr,
    BreakpointCore,
    Hit,
)
from gdbstub.hwbp.arch import TASK_SIZE_MAX
from gdbstub.hwbp.virt import VirtDebugArch
from gdbstub.hwbp.x86 import X86DebugArch

from . import expect_errno

CURRENT = "current"  # the KUnit `current` task
OTHER = "other"  # the KUnit get_other_task()
BREAK_VARS = 0x601000  # &break_vars[0]
USER_VAR = 0x404028
KERNEL_VAR = 0xFFFF_FFFF_8200_0000


def watch(addr: int = USER_VAR, length: int = HW_BREAKPOINT_LEN_4, bp_type: int = HW_BREAKPOINT_W, **kw) -> BreakpointAttr:
    return BreakpointAttr(bp_addr=addr, bp_len=length, bp_type=bp_type, **kw)


def hit(cpu: int, *slots: int, ip: int = 0x401000) -> Hit:
    return Hit(cpu=cpu, task=None, ip=ip, addr=USER_VAR, size=4, access=HW_BREAKPOINT_W, slots=slots)


# --- the KUnit suite (kernel/events/hw_breakpoint_test.c) ---------------------------------


@dataclass
class KUnit:
    """The test's state: the core, test_bps[] and the next free index."""

    core: BreakpointCore
    bps: list[Breakpoint | None] = field(default_factory=list)

    @property
    def nslots(self) -> int:
        return self.core.slots(HW_BREAKPOINT_RW)

    def register_test_bp(self, cpu: int, task: str | None) -> Breakpoint:
        attr = watch(BREAK_VARS + len(self.bps), HW_BREAKPOINT_LEN_1, HW_BREAKPOINT_RW)
        return self.core.register(attr, cpu, task)

    def fill_one_slot(self, cpu: int, task: str | None) -> None:
        self.bps.append(self.register_test_bp(cpu, task))

    def fill_slots(self, cpu: int, task: str | None, skip: int = 0) -> None:
        """Fill `cpu`/`task` with breakpoints, leaving `skip` slots free."""
        for _ in range(self.nslots - skip):
            self.fill_one_slot(cpu, task)

    def expect_nospc(self, cpu: int, task: str | None) -> None:
        expect_errno(ENOSPC, self.register_test_bp, cpu, task)

    def unregister(self, index: int) -> None:
        bp = self.bps[index]
        assert bp is not None
        self.core.unregister(bp)
        self.bps[index] = None


ARCHES = {
    "x86": X86DebugArch,
    "virt3": lambda: VirtDebugArch(slots=3),
    "virt6": lambda: VirtDebugArch(slots=6),
}


@pytest.fixture(params=[(arch, ncpus) for arch in ARCHES for ncpus in (2, 3, 8)],
                ids=lambda p: f"{p[0]}-{p[1]}cpus")
def kunit(request):
    arch_name, ncpus = request.param
    test = KUnit(BreakpointCore(ARCHES[arch_name](), ncpus=ncpus))
    yield test
    # test_exit: everything goes, and then nothing is in use.
    for bp in test.bps:
        test.core.unregister(bp)
    assert not test.core.is_used()


def test_one_cpu(kunit):
    kunit.fill_slots(0, None)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, None)


def test_many_cpus(kunit):
    for cpu in range(kunit.core.ncpus):  # CPUs are independent
        kunit.fill_slots(cpu, None)
        kunit.expect_nospc(cpu, None)


def test_one_task_on_all_cpus(kunit):
    kunit.fill_slots(-1, CURRENT)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, None)
    kunit.unregister(0)  # removing one lets a CPU breakpoint in
    kunit.fill_one_slot(0, None)


def test_two_tasks_on_all_cpus(kunit):
    kunit.fill_slots(-1, CURRENT)
    kunit.fill_slots(-1, OTHER)  # tasks are independent
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(-1, OTHER)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, OTHER)
    kunit.expect_nospc(0, None)
    kunit.unregister(0)  # the other task still fills every CPU
    kunit.expect_nospc(0, None)


def test_one_task_on_one_cpu(kunit):
    kunit.fill_slots(0, CURRENT)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, None)
    kunit.unregister(0)  # CPU-dependent task constraints
    kunit.fill_one_slot(0, None)


def test_one_task_mixed(kunit):
    if kunit.nslots < 3:
        pytest.skip("needs 3 slots")
    kunit.fill_one_slot(0, CURRENT)
    kunit.fill_slots(-1, CURRENT, skip=1)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, None)
    # From CPU-dependent pinned count to CPU-independent.
    kunit.unregister(0)
    kunit.unregister(1)
    kunit.fill_one_slot(0, None)
    kunit.fill_one_slot(0, None)
    kunit.expect_nospc(0, None)


def test_two_tasks_on_one_cpu(kunit):
    kunit.fill_slots(0, CURRENT)
    kunit.fill_slots(0, OTHER)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(-1, OTHER)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, OTHER)
    kunit.expect_nospc(0, None)
    kunit.fill_slots(1, None)  # another CPU is still free


def test_two_tasks_on_one_all_cpus(kunit):
    kunit.fill_slots(0, CURRENT)
    kunit.fill_slots(-1, OTHER)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(-1, OTHER)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, OTHER)
    kunit.expect_nospc(0, None)
    kunit.expect_nospc(1, None)  # the all-CPU task fills CPU 1 too


def test_task_on_all_and_one_cpu(kunit):
    if kunit.nslots < 3:
        pytest.skip("needs 3 slots")
    kunit.fill_slots(-1, CURRENT, skip=2)
    tsk_on_cpu_idx = len(kunit.bps)  # from only all-CPU breakpoints to mixed
    kunit.fill_one_slot(0, CURRENT)
    kunit.fill_one_slot(-1, CURRENT)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, None)

    cpu_idx = len(kunit.bps)  # another CPU's last slot is still usable
    kunit.fill_one_slot(1, None)
    kunit.expect_nospc(1, None)

    kunit.unregister(tsk_on_cpu_idx)  # back to task-on-all-CPUs only
    kunit.expect_nospc(-1, CURRENT)  # the CPU 1 breakpoint is still there
    kunit.unregister(cpu_idx)
    kunit.fill_one_slot(-1, CURRENT)
    kunit.expect_nospc(-1, CURRENT)
    kunit.expect_nospc(0, CURRENT)
    kunit.expect_nospc(0, None)
    kunit.expect_nospc(1, None)


# --- errors and their order ---------------------------------------------------------------


@pytest.fixture
def core():
    return BreakpointCore(arch=X86DebugArch(), ncpus=2)


def fill_cpu(core: BreakpointCore, cpu: int, n: int = 4) -> list[Breakpoint]:
    return [core.register(watch(USER_VAR + 4 * i), cpu) for i in range(n)]


def test_enospc_message_names_the_cpu(core):
    fill_cpu(core, 1)
    err = expect_errno(ENOSPC, core.register, watch(), 1)
    assert "no free debug-register slot on cpu 1" in str(err)
    core.register(watch(), 0)  # cpu 0 is unaffected


def test_empty_and_invalid_types_are_einval_before_enospc(core):
    fill_cpu(core, 0)
    for bp_type in (HW_BREAKPOINT_EMPTY, HW_BREAKPOINT_INVALID):
        expect_errno(EINVAL, core.register, watch(bp_type=bp_type), 0)


def test_enospc_is_decided_before_the_arch_parse(core):
    fill_cpu(core, 0)
    expect_errno(ENOSPC, core.register, watch(bp_type=HW_BREAKPOINT_R), 0)
    expect_errno(ENOSPC, core.register, watch(addr=USER_VAR + 1), 0)
    expect_errno(EINVAL, core.register, watch(bp_type=HW_BREAKPOINT_R), 1)


def test_failed_parse_releases_the_reservation(core):
    for _ in range(10):
        expect_errno(EINVAL, core.register, watch(addr=USER_VAR + 2), 0)
    assert not core.is_used()
    fill_cpu(core, 0)  # all four slots are still free


def test_cpu_rules(core):
    expect_errno(EINVAL, core.register, watch(), -1, None)
    expect_errno(EINVAL, core.register, watch(), 2)
    expect_errno(EINVAL, core.register, watch(), -2, "task")
    expect_errno(EINVAL, core.register_user, watch(), None)
    assert not core.is_used()


def test_kernel_space_rules(core):
    kernel = watch(addr=KERNEL_VAR)
    expect_errno(EINVAL, core.register, watch(addr=KERNEL_VAR, exclude_kernel=True), 0)
    expect_errno(EPERM, core.register, kernel, 0, privileged=False)
    assert not core.is_used()
    core.register(kernel, 0)
    core.register(watch(addr=TASK_SIZE_MAX - 4), 0, privileged=False)


def test_release_on_unregister_and_is_used(core):
    bps = fill_cpu(core, 0)
    assert core.is_used()
    core.unregister(bps[2])
    assert core.slot_of(bps[2], 0) is None
    core.register(watch(), 0)
    core.unregister(bps[2])  # twice: a no-op
    core.unregister(None)
    for bp in core.breakpoints():
        core.unregister(bp)
    assert not core.is_used()
    assert core.breakpoints() == []
    assert core.registers(0).dr7 == 0x600  # GE stays once set


def test_disabled_breakpoints_keep_their_reservation(core):
    bps = [core.register(watch(USER_VAR + 4 * i, disabled=True), 0) for i in range(4)]
    expect_errno(ENOSPC, core.register, watch(), 0)
    assert core.enforced_slots(0) == []
    bps[1].enable()
    assert [s.addr for s in core.enforced_slots(0)] == [USER_VAR + 4]
    bps[1].disable()
    assert core.enforced_slots(0) == []
    expect_errno(ENOSPC, core.register, watch(), 0)


def test_owner_is_kept(core):
    bp = core.register(watch(), 0, owner="gdb")
    assert bp.owner == "gdb"
    assert core.register_user(watch(), "t").owner == "kernel"
    assert all(b.owner == "ksym" for b in core.register_wide(watch(), owner="ksym"))


# --- register_wide ---------------------------------------------------------------------------


def test_register_wide_one_per_cpu():
    core = BreakpointCore(X86DebugArch(), ncpus=3)
    bps = core.register_wide(watch())
    assert [(bp.cpu, bp.task) for bp in bps] == [(0, None), (1, None), (2, None)]
    assert all(core.slot_of(bp, bp.cpu) == 0 for bp in bps)
    core.unregister_wide(bps)
    assert not core.is_used()


def test_register_wide_is_all_or_nothing():
    core = BreakpointCore(X86DebugArch(), ncpus=3)
    full = fill_cpu(core, 2)
    before = [core.enforced_slots(cpu) for cpu in range(3)]
    expect_errno(ENOSPC, core.register_wide, watch())
    assert core.breakpoints() == full
    assert [core.enforced_slots(cpu) for cpu in range(3)] == before
    # cpus 0 and 1 held the breakpoint for a moment: only GE remains (Linux keeps it).
    assert [core.registers(cpu).dr7 for cpu in (0, 1)] == [0x600, 0x600]
    core.register(watch(), 0)
    core.register(watch(), 1)  # nothing leaked on cpus 0 and 1: 3 slots each still free
    assert len(fill_cpu(core, 0, 3)) == 3


def test_register_wide_parse_failure_unwinds():
    core = BreakpointCore(X86DebugArch(), ncpus=2)
    expect_errno(EINVAL, core.register_wide, watch(bp_type=HW_BREAKPOINT_R))
    assert not core.is_used()


# --- modify ----------------------------------------------------------------------------------


def test_modify_moves_the_watch(core):
    bp = core.register(watch(), 0)
    core.modify(bp, watch(addr=0x404040, length=8, bp_type=HW_BREAKPOINT_RW))
    assert (bp.attr.bp_addr, bp.attr.bp_len, bp.attr.bp_type) == (0x404040, 8, HW_BREAKPOINT_RW)
    regs = core.registers(0)
    assert regs.dr[0] == 0x404040
    assert regs.dr7 == 0x000B0602  # slot 0, RW, 8 bytes, fixed bit


def test_modify_failure_keeps_old_attr_and_stays_armed(core):
    bp = core.register(watch(), 0)
    before = (bp.attr, core.registers(0).dr7, core.enforced_slots(0))
    expect_errno(EINVAL, core.modify, bp, watch(addr=USER_VAR + 1))
    expect_errno(EINVAL, core.modify, bp, watch(bp_type=HW_BREAKPOINT_R))
    expect_errno(EINVAL, core.modify, bp, watch(bp_type=HW_BREAKPOINT_EMPTY))
    assert (bp.attr, core.registers(0).dr7, core.enforced_slots(0)) == before
    assert bp.enabled


def test_modify_type_change_on_shared_pool(core):
    bps = fill_cpu(core, 0)
    core.modify(bps[0], watch(addr=0x401000, length=8, bp_type=HW_BREAKPOINT_X))
    assert core.enforced_slots(0)[0].access == HW_BREAKPOINT_X
    expect_errno(ENOSPC, core.register, watch(), 0)


def test_modify_type_change_rolls_back_on_enospc():
    # Separate instruction and data pools make a type change need a new slot.
    core = BreakpointCore(VirtDebugArch(slots=2, inst_slots=1), ncpus=1)
    core.register(watch(addr=0x401000, bp_type=HW_BREAKPOINT_X), 0)
    data = core.register(watch(), 0)
    old_attr = data.attr
    expect_errno(ENOSPC, core.modify, data, watch(addr=0x401010, bp_type=HW_BREAKPOINT_X))
    assert data.attr == old_attr and data.enabled
    assert core.slot_of(data, 0) == 0
    core.register(watch(addr=USER_VAR + 8), 0)  # the data pool still counts `data`
    expect_errno(ENOSPC, core.register, watch(addr=USER_VAR + 16), 0)


def test_modify_disabled_keeps_reservation(core):
    bps = fill_cpu(core, 0)
    core.modify(bps[3], watch(addr=bps[3].attr.bp_addr, disabled=True))
    assert not bps[3].enabled and len(core.enforced_slots(0)) == 3
    expect_errno(ENOSPC, core.register, watch(), 0)
    core.modify(bps[3], watch(addr=0x404100))
    assert bps[3].enabled and core.slot_of(bps[3], 0) == 3


def test_modify_takes_only_addr_len_type_disabled(core):
    bp = core.register(watch(sample_period=3), 0)
    core.modify(bp, watch(sample_period=1, exclude_user=True))
    assert bp.attr.sample_period == 3 and not bp.attr.exclude_user


def test_modify_unregistered_is_enoent(core):
    bp = core.register(watch(), 0)
    core.unregister(bp)
    expect_errno(ENOENT, core.modify, bp, watch())
    expect_errno(ENOENT, bp.enable)


# --- deliver ---------------------------------------------------------------------------------


def test_deliver_counts_and_asks_handlers(core):
    calls = []
    stopper = core.register(watch(), 0, handler=lambda bp, h: calls.append(("stop", h.slots)) or True)
    runner = core.register(watch(addr=0x404100), 0, handler=lambda bp, h: calls.append(("run", h.slots)))
    silent = core.register(watch(addr=0x404200), 0)
    assert core.deliver(hit(0, 1)) is False
    assert core.deliver(hit(0, 0, 1, 2)) is True
    assert calls == [("run", (1,)), ("stop", (0, 1, 2)), ("run", (0, 1, 2))]
    assert (stopper.count, runner.count, silent.count) == (1, 2, 1)


def test_deliver_skips_disabled_excluded_and_stale(core):
    disabled = core.register(watch(), 0)
    user_only = core.register(watch(addr=0x404100, exclude_kernel=True), 0)
    kernel_only = core.register(watch(addr=0x404200, exclude_user=True), 0)
    slot = core.slot_of(disabled, 0)
    disabled.disable()
    assert core.deliver(hit(0, slot, 1, 2, 3)) is False  # slot 3 has no owner
    assert (disabled.count, user_only.count, kernel_only.count) == (0, 1, 0)
    core.deliver(hit(0, 2, ip=KERNEL_VAR))
    assert (user_only.count, kernel_only.count) == (1, 1)


def test_deliver_honours_sample_period(core):
    calls = []
    bp = core.register(watch(sample_period=3), 0, handler=lambda b, h: calls.append(b.count) or True)
    results = [core.deliver(hit(0, 0)) for _ in range(7)]
    assert results == [False, False, True, False, False, True, False]
    assert calls == [3, 6] and bp.count == 7


def test_deliver_sets_sticky_dr6(core):
    core.register(watch(), 0)
    core.deliver(hit(0, 0))
    core.deliver(hit(0, 2))
    assert core.registers(0).dr6 == 0xFFFF0FF5
    assert core.registers(1).dr6 == 0xFFFF0FF0
    core.clear_dr6(0)
    assert core.registers(0).dr6 == 0xFFFF0FF0


def test_handlers_run_without_the_lock(core):
    seen = []

    def handler(bp, h):
        # Another thread must be able to use the core while a handler runs.
        worker = threading.Thread(target=lambda: seen.append(core.register(watch(), 1)))
        worker.start()
        worker.join(timeout=5)
        return not worker.is_alive()

    core.register(watch(), 0, handler=handler)
    assert core.deliver(hit(0, 0)) is True
    assert len(seen) == 1


# --- scheduling: set_current_task, listeners, release_task ------------------------------------


def test_task_breakpoints_follow_their_task(core):
    everywhere = core.register_user(watch(), "A")
    pinned = core.register(watch(addr=0x404100), 1, "A")
    assert core.enforced_slots(0) == core.enforced_slots(1) == []
    core.set_current_task(0, "A")
    assert core.slot_of(everywhere, 0) == 0 and core.slot_of(pinned, 0) is None
    core.set_current_task(1, "A")
    assert [s.addr for s in core.enforced_slots(1)] == [USER_VAR, 0x404100]
    core.set_current_task(0, "B")
    assert core.enforced_slots(0) == []
    core.set_current_task(1, None)
    assert core.enforced_slots(1) == []


def test_cpu_breakpoints_stay_across_context_switches(core):
    cpu_bp = core.register(watch(addr=0x404100), 0)
    task_bp = core.register_user(watch(), "A")
    core.set_current_task(0, "A")
    assert (core.slot_of(cpu_bp, 0), core.slot_of(task_bp, 0)) == (0, 1)
    core.set_current_task(0, "B")
    assert core.slot_of(cpu_bp, 0) == 0 and core.slot_of(task_bp, 0) is None
    assert core.registers(0).dr7 == 0x000D0602


def test_listeners_hear_every_image_change(core):
    heard = []
    core.add_listener(lambda cpu: heard.append((cpu, len(core.enforced_slots(cpu)))))
    bp = core.register_user(watch(), "A")
    assert heard == []  # nothing installed yet: "A" is not running
    core.set_current_task(1, "A")
    assert heard == [(1, 1)]
    core.set_current_task(0, "B")
    assert heard == [(1, 1)]  # B has no breakpoints: the image did not change
    bp.disable()
    core.register_wide(watch(addr=0x404100))
    core.unregister(bp)
    assert heard == [(1, 1), (1, 0), (0, 1), (1, 1)]


def test_release_task_unregisters_only_that_task(core):
    core.register_user(watch(), "A")
    core.register(watch(), 1, "A")
    keep = [core.register_user(watch(), "B"), core.register(watch(), 0)]
    core.set_current_task(1, "A")
    core.release_task("A")
    assert core.breakpoints() == keep
    assert core.enforced_slots(1) == []


def test_x86_reports_four_slots_for_every_type(core):
    assert [core.slots(t) for t in (HW_BREAKPOINT_R, HW_BREAKPOINT_W, HW_BREAKPOINT_RW, HW_BREAKPOINT_X)] == [4] * 4


def test_execute_and_data_share_the_pool(core):
    core.register(watch(addr=0x401001, length=HW_BREAKPOINT_LEN_8, bp_type=HW_BREAKPOINT_X), 0)
    fill_cpu(core, 0, 3)
    expect_errno(ENOSPC, core.register, watch(addr=0x401000, length=8, bp_type=HW_BREAKPOINT_X), 0)


def test_deliver_and_register_from_two_threads():
    """The CPU thread delivers while the debugger thread registers: no lost counts, no errors."""
    core = BreakpointCore(X86DebugArch(), ncpus=1)
    hits = []
    steady = core.register(watch(), 0, handler=lambda bp, h: hits.append(1))
    stop = threading.Event()
    errors: list[BaseException] = []

    def cpu_thread():
        try:
            while not stop.is_set():
                core.deliver(hit(0, core.slot_of(steady, 0)))
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    worker = threading.Thread(target=cpu_thread)
    worker.start()
    try:
        for i in range(300):
            bp = core.register(watch(addr=0x405000 + 8 * (i % 3)), 0)
            core.unregister(bp)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive() and errors == []
    assert steady.count == len(hits) > 0
