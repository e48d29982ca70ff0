"""gdb's Z1-Z4 on the core API: gdbserver's region splitting and the all-or-nothing rule."""

from __future__ import annotations

import errno

import pytest

from gdbstub.hwbp import BreakpointCore
from gdbstub.hwbp.x86 import X86DebugArch
from gdbstub.kgdb import GdbDebugger, split_region
from gdbstub.rsp.errors import TargetError

BASE = 0x4A62D0   # 16-byte aligned


def make() -> tuple[BreakpointCore, GdbDebugger]:
    """A one-CPU x86 core and gdb's consumer on it, for the served process."""
    core = BreakpointCore(arch=X86DebugArch(), ncpus=1)
    return core, GdbDebugger(core, task="program")


@pytest.mark.parametrize(("offset", "length", "pieces"), [
    (1, 12, [(1, 1), (2, 2), (4, 4), (8, 4), (12, 1)]),      # gdb/nat/x86-dregs.c's worked example
    (1, 3, [(1, 1), (2, 2)]),
    (0, 16, [(0, 8), (8, 8)]),
    (6, 4, [(6, 2), (8, 2)]),
    (7, 1, [(7, 1)]),
])
def test_split_region_matches_gdbserver(offset, length, pieces):
    assert list(split_region(BASE + offset, length)) == [(BASE + o, n) for o, n in pieces]


def test_a_huge_region_is_refused_before_anything_is_registered():
    core, debugger = make()
    with pytest.raises(TargetError) as refused:
        debugger.insert(2, 0x400000, 1 << 40)            # would be 2**37 pieces
    assert refused.value.errno == errno.ENOSPC
    assert not core.is_used()


def test_a_request_that_does_not_fit_leaves_no_piece_behind():
    core, debugger = make()
    debugger.insert(2, BASE, 8)
    debugger.insert(2, BASE + 8, 8)
    with pytest.raises(TargetError):
        debugger.insert(4, BASE + 16, 24)                 # 3 pieces, 2 free slots
    assert len(core.breakpoints()) == 2
    debugger.release_all()
    assert not core.is_used()


def test_a_watchpoint_removed_at_a_stop_and_inserted_again_keeps_its_registration():
    # gdb removes every breakpoint at each stop and inserts the same ones before resuming.
    core, debugger = make()
    debugger.insert(2, BASE, 4)
    [bp] = core.breakpoints()
    debugger.remove(2, BASE, 4)
    debugger.insert(2, BASE, 4)
    assert core.breakpoints() == [bp]                     # the same one: no unregister, no register
    debugger.remove(2, BASE, 4)
    debugger.settle()                                     # the program resumes without it
    assert not core.is_used()


def test_slots_gdb_gave_back_are_free_for_a_new_request_and_after_release_all():
    core, debugger = make()
    for n in range(4):
        debugger.insert(2, BASE + 8 * n, 8)
    for n in range(4):
        debugger.remove(2, BASE + 8 * n, 8)
    debugger.insert(4, BASE + 64, 8)                      # a new one: the four given back make room
    assert [bp.attr.bp_addr for bp in core.breakpoints()] == [BASE + 64]
    debugger.remove(4, BASE + 64, 8)
    debugger.release_all()
    assert not core.is_used()
