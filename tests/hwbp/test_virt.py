"""VirtDebugArch: configurable slots, any length up to a page, read-only watches, ENOSYS."""

from __future__ import annotations

import ast
import inspect
from errno import EINVAL, ENOSPC, ENOSYS, EPERM

import pytest

import gdbstub.hwbp.core
from gdbstub.hwbp import (
    HW_BREAKPOINT_EMPTY,
    HW_BREAKPOINT_INVALID,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    BreakpointCore,
    Hit,
    HwBreakpointError,
    WatchSlot,
)
from gdbstub.hwbp.arch import TASK_SIZE_MAX
from gdbstub.hwbp.virt import PAGE_SIZE, VirtDebugArch

R, W, RW, X = HW_BREAKPOINT_R, HW_BREAKPOINT_W, HW_BREAKPOINT_RW, HW_BREAKPOINT_X


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(HwBreakpointError) as info:
        fn(*args, **kw)
    return info.value.errno


def test_slot_count_is_configurable():
    for nslots in (1, 5, 16):
        core = BreakpointCore(VirtDebugArch(slots=nslots), ncpus=2)
        assert [core.slots(t) for t in (R, W, RW, X)] == [nslots] * 4
        for i in range(nslots):
            core.register(BreakpointAttr(0x1000 + i, 3, R), 1)
        assert errno_of(core.register, BreakpointAttr(0x5000, 1, W), 1) == ENOSPC
        assert len(core.enforced_slots(1)) == nslots


def test_default_is_sixteen_slots():
    assert BreakpointCore(VirtDebugArch(), 1).slots(W) == 16


@pytest.mark.parametrize(
    ("addr", "length", "bp_type", "errno"),
    [
        (0x1001, 1, R, None),
        (0x1003, 3, W, None),  # no alignment rule, odd lengths fine
        (0x1001, PAGE_SIZE, RW, None),
        (0x1000, PAGE_SIZE + 1, W, EINVAL),
        (0x1000, 0, W, EINVAL),
        (0x1001, 1, X, None),
        (0x1001, 3 * PAGE_SIZE, X, None),
        (0x1000, 0, X, EINVAL),
        ((1 << 64) - 2, 4, W, EINVAL),  # wraps
        ((1 << 64) - 4, 4, W, None),
        (0x1000, 4, X | W, EINVAL),
        (0x1000, 4, HW_BREAKPOINT_EMPTY, EINVAL),
        (0x1000, 4, HW_BREAKPOINT_INVALID, EINVAL),
    ],
)
def test_parse_table(addr, length, bp_type, errno):
    core = BreakpointCore(VirtDebugArch(), ncpus=1)
    attr = BreakpointAttr(bp_addr=addr, bp_len=length, bp_type=bp_type)
    if errno is None:
        core.register(attr, 0)
        assert core.enforced_slots(0) == [WatchSlot(0, addr, length, bp_type)]
    else:
        assert errno_of(core.register, attr, 0) == errno
        assert not core.is_used()


def test_read_only_watch_is_enforced_and_delivered():
    core = BreakpointCore(VirtDebugArch(slots=4), ncpus=1)
    bp = core.register(BreakpointAttr(0x2000, 16, R), 0, handler=lambda b, h: True)
    assert core.enforced_slots(0) == [WatchSlot(0, 0x2000, 16, R)]
    assert core.deliver(Hit(0, None, 0x401000, 0x2004, 4, R, slots=(0,))) is True
    assert bp.count == 1
    assert core.registers(0).status == 0b1
    core.clear_dr6(0)
    assert core.registers(0).status == 0


def test_slots_zero_means_unsupported():
    core = BreakpointCore(VirtDebugArch(slots=0), ncpus=2)
    attr = BreakpointAttr(0x1000, 4, W)
    assert errno_of(core.register, attr, 0) == ENOSYS
    assert errno_of(core.register_user, attr, "t") == ENOSYS
    assert errno_of(core.register_wide, attr) == ENOSYS
    assert errno_of(core.register, BreakpointAttr(0x1000, 4, HW_BREAKPOINT_EMPTY), 0) == ENOSYS
    assert not core.is_used()
    assert core.slots(W) == 0


def test_split_pools_are_independent():
    core = BreakpointCore(VirtDebugArch(slots=2, inst_slots=1), ncpus=1)
    assert (core.slots(W), core.slots(X)) == (2, 1)
    exe = core.register(BreakpointAttr(0x401000, 1, X), 0)
    assert errno_of(core.register, BreakpointAttr(0x401010, 1, X), 0) == ENOSPC
    core.register(BreakpointAttr(0x2000, 4, W), 0)
    core.register(BreakpointAttr(0x3000, 4, RW), 0)
    assert errno_of(core.register, BreakpointAttr(0x4000, 4, W), 0) == ENOSPC
    assert core.slot_of(exe, 0) == 2  # the instruction pool follows the data pool
    assert [s.index for s in core.enforced_slots(0)] == [0, 1, 2]


def test_kernel_space_range_straddling_the_boundary():
    core = BreakpointCore(VirtDebugArch(), ncpus=1)
    attr = BreakpointAttr(TASK_SIZE_MAX - 4, 8, W)
    assert errno_of(core.register, attr, 0, privileged=False) == EPERM
    core.register(attr, 0)


def test_core_needs_no_arch_specific_code():
    """Selecting an arch is passing it in: the core imports neither arch module."""
    tree = ast.parse(inspect.getsource(gdbstub.hwbp.core))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and ("x86" in name or "virt" in name)}
    assert "arch" in imported  # only the DebugArch base
