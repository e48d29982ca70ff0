"""Per-task debug registers with PTRACE_POKEUSER semantics (arch/x86/kernel/ptrace.c).

DR7 values are built as tools/testing/selftests/breakpoints/breakpoint_test.c
builds them: `(xlen | xtype) << (16 + 4n)`, local `1 << 2n` + LE, global
`2 << 2n` + GE; every slot x enable combination x length x type is checked.
"""

from __future__ import annotations

from errno import EINVAL, EIO, ENOSPC

import pytest

from gdbstub.hwbp import (
    HW_BREAKPOINT_LEN_1,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    BreakpointCore,
    Hit,
    WatchSlot,
)
from gdbstub.hwbp.ptrace import PtraceDebugRegs
from gdbstub.hwbp.x86 import DR6_RESERVED

from tests.hwbp import expect_errno

from . import IP, access, core_running

TASK = "tracee"
VARS = 0x404040                 # 8-byte aligned: dummy_var[0..3], 8 bytes apart
FUNCS = 0x401120                # dummy_func, dummy_func1..3

# The selftest's encodings (its enable_flags / type / len switches).
XTYPE = {"x": 0x0, "w": 0x1, "rw": 0x3}
XLEN = {1: 0x0, 2: 0x4, 4: 0xC, 8: 0x8}
GENERIC_TYPE = {"x": HW_BREAKPOINT_X, "w": HW_BREAKPOINT_W, "rw": HW_BREAKPOINT_RW}
DR_LOCAL_SLOWDOWN = 1 << 8
DR_GLOBAL_SLOWDOWN = 1 << 9


def dr7_value(slot: int, kind: str, length: int, local: bool, global_: bool) -> int:
    xlen = 0 if kind == "x" else XLEN[length]
    value = (xlen | XTYPE[kind]) << (16 + 4 * slot)
    if local:
        value |= (1 << (2 * slot)) | DR_LOCAL_SLOWDOWN
    if global_:
        value |= (2 << (2 * slot)) | DR_GLOBAL_SLOWDOWN
    return value


def make() -> tuple[BreakpointCore, PtraceDebugRegs]:
    core = core_running(TASK)
    return core, PtraceDebugRegs(core, TASK)


def fetch(core: BreakpointCore, addr: int) -> tuple[tuple[int, ...], bool]:
    return access(core, addr, size=1, kind=HW_BREAKPOINT_X, ip=addr)


ENABLES = {"local": (True, False), "global": (False, True), "local+global": (True, True)}
DATA_CASES = [(kind, length) for kind in ("w", "rw") for length in (1, 2, 4, 8)]


@pytest.mark.parametrize("slot", range(4))
@pytest.mark.parametrize("enable", ENABLES)
@pytest.mark.parametrize("kind, length", DATA_CASES + [("x", 8)])
def test_selftest_matrix(slot, enable, kind, length):
    core, regs = make()
    addr = FUNCS + 0x10 * slot if kind == "x" else VARS + 8 * slot
    dr7 = dr7_value(slot, kind, length, *ENABLES[enable])
    regs.poke(slot, addr)
    regs.poke(7, dr7)

    bp = regs.breakpoint(slot)
    assert (bp.attr.bp_addr, bp.attr.bp_len, bp.attr.bp_type, bp.enabled) == (addr, length, GENERIC_TYPE[kind], True)
    assert (bp.task, bp.cpu, bp.owner) == (TASK, -1, "ptrace")
    [enforced] = core.enforced_slots(0)
    assert (enforced.addr, enforced.length if kind != "x" else 1, enforced.access) == (
        addr, length if kind != "x" else 1, GENERIC_TYPE[kind])
    assert (regs.peek(slot), regs.peek(7), regs.peek(6)) == (addr, dr7, DR6_RESERVED)

    if kind == "x":
        slots, stop = fetch(core, addr)
    else:
        # A write of `length` bytes traps; an RW watchpoint also traps on a pure read.
        slots, stop = access(core, addr, length, HW_BREAKPOINT_R if kind == "rw" else HW_BREAKPOINT_W)
    assert slots and stop is True                       # the tracer gets SIGTRAP
    assert regs.peek(6) == DR6_RESERVED | (1 << slot)   # DR6 names the ptrace slot

    regs.poke(7, 0)
    assert core.enforced_slots(0) == []
    assert regs.breakpoint(slot).registered            # a disabled breakpoint keeps its reservation


def test_write_watchpoint_ignores_reads_and_neighbours():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(7, dr7_value(0, "w", 4, True, False))
    assert access(core, VARS, 4, HW_BREAKPOINT_R) == ((), False)
    assert access(core, VARS + 4, 4, HW_BREAKPOINT_W) == ((), False)
    assert access(core, VARS - 4, 8, HW_BREAKPOINT_W)[1] is True      # straddles the start


def test_address_write_creates_a_disabled_placeholder():
    core, regs = make()
    regs.poke(2, VARS)
    bp = regs.breakpoint(2)
    assert (bp.attr.bp_addr, bp.attr.bp_len, bp.attr.bp_type, bp.enabled) == (VARS, HW_BREAKPOINT_LEN_1, HW_BREAKPOINT_W, False)
    assert core.is_used() and core.enforced_slots(0) == []
    assert regs.peek(7) == 0


def test_address_write_moves_an_armed_breakpoint():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(7, dr7_value(0, "w", 8, False, True))
    regs.poke(0, VARS + 16)
    assert core.enforced_slots(0) == [WatchSlot(0, VARS + 16, 8, HW_BREAKPOINT_W)]
    assert regs.peek(0) == VARS + 16


def test_misaligned_move_is_einval_and_keeps_the_old_address():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(7, dr7_value(0, "w", 4, True, False))
    expect_errno(EINVAL, regs.poke, 0, VARS + 2)
    assert regs.peek(0) == VARS
    assert core.enforced_slots(0) == [WatchSlot(0, VARS, 4, HW_BREAKPOINT_W)]


def test_kernel_address_is_einval():
    core, regs = make()
    expect_errno(EINVAL, regs.poke, 0, 0xFFFF_FFFF_8100_0000)
    assert regs.breakpoint(0) is None and not core.is_used()


def test_enable_without_address_watches_zero():
    core, regs = make()
    regs.poke(7, dr7_value(1, "w", 1, True, False))
    assert regs.peek(1) == 0
    assert core.enforced_slots(0) == [WatchSlot(0, 0, 1, HW_BREAKPOINT_W)]


def test_ptrace_slot_and_hardware_slot_may_differ():
    """Another consumer owns DR0: ptrace slot 2 lands in DR1, and DR6 still says slot 2."""
    core, regs = make()
    core.register(BreakpointAttr(0x404800, 4, HW_BREAKPOINT_W), 0, owner="ksym")
    regs.poke(2, VARS)
    regs.poke(7, dr7_value(2, "rw", 4, True, False))
    assert core.slot_of(regs.breakpoint(2), 0) == 1
    slots, stop = access(core, VARS, 4, HW_BREAKPOINT_W)
    assert slots == (1,) and stop
    assert regs.virtual_dr6 == 1 << 2
    assert regs.peek(6) == DR6_RESERVED | 0b100


def test_one_exception_two_slots_sets_both_bits():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(3, VARS + 8)
    regs.poke(7, dr7_value(0, "w", 8, True, False) | dr7_value(3, "w", 8, True, False))
    access(core, VARS + 4, 8, HW_BREAKPOINT_W)           # one 8-byte write across both
    assert regs.virtual_dr6 == 0b1001


def test_new_exception_restarts_virtual_dr6():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(1, VARS + 8)
    regs.poke(7, dr7_value(0, "w", 4, True, False) | dr7_value(1, "w", 4, True, False))
    access(core, VARS)
    access(core, VARS + 8)
    assert regs.peek(6) == DR6_RESERVED | 0b10


def test_dr6_write_and_read_flip_polarity():
    core, regs = make()
    regs.poke(6, DR6_RESERVED | 0b0101)
    assert regs.virtual_dr6 == 0b0101
    assert regs.peek(6) == DR6_RESERVED | 0b0101
    regs.poke(6, DR6_RESERVED)
    assert regs.virtual_dr6 == 0


def test_dr4_dr5_read_zero_and_refuse_writes():
    core, regs = make()
    assert (regs.peek(4), regs.peek(5)) == (0, 0)
    expect_errno(EIO, regs.poke, 4, 1)
    expect_errno(EIO, regs.poke, 5, 1)


@pytest.mark.parametrize("regno", [-1, 8, 64])
def test_out_of_range_is_eio(regno):
    core, regs = make()
    expect_errno(EIO, regs.peek, regno)
    expect_errno(EIO, regs.poke, regno, 0)


def test_dr7_reserved_bits_are_ignored_and_read_back():
    core, regs = make()
    regs.poke(0, VARS)
    value = dr7_value(0, "w", 4, True, False) | 0x400 | (0xDEAD << 32)
    regs.poke(7, value)
    assert regs.peek(7) == value
    assert core.enforced_slots(0) == [WatchSlot(0, VARS, 4, HW_BREAKPOINT_W)]


def test_dr7_failure_restores_previous_configuration():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(1, VARS + 8)
    before = dr7_value(0, "w", 4, True, False)
    regs.poke(7, before)
    snapshot = core.enforced_slots(0)
    # Slot 0 changes to RW/8 (fine), slot 1 asks for R/W=10 (I/O): refused.
    bad = dr7_value(0, "rw", 8, True, False) | (0x2 << (16 + 4)) | (1 << 2)
    expect_errno(EINVAL, regs.poke, 7, bad)
    assert regs.peek(7) == before
    assert core.enforced_slots(0) == snapshot
    assert (regs.breakpoint(0).attr.bp_len, regs.breakpoint(0).attr.bp_type) == (4, HW_BREAKPOINT_W)
    assert not regs.breakpoint(1).enabled


def test_dr7_enospc_releases_what_the_failed_write_made():
    core, regs = make()
    for n in range(3):
        core.register(BreakpointAttr(0x404800 + 8 * n, 4, HW_BREAKPOINT_W), 0, owner="other")
    # Slot 0 fits in the last free slot, slot 1 does not.
    expect_errno(ENOSPC, regs.poke, 7, dr7_value(0, "w", 4, True, False) | dr7_value(1, "w", 4, True, False))
    assert regs.breakpoint(0) is None and regs.breakpoint(1) is None
    assert [bp.owner for bp in core.breakpoints()] == ["other"] * 3
    assert regs.peek(7) == 0


def test_execute_with_a_length_is_einval():
    core, regs = make()
    regs.poke(0, FUNCS)
    expect_errno(EINVAL, regs.poke, 7, (0x4 | 0x0) << 16 | 1)      # X with LEN=01
    assert regs.peek(7) == 0 and not regs.breakpoint(0).enabled


def test_execute_breakpoint_stops_before_the_instruction():
    core, regs = make()
    regs.poke(3, FUNCS)
    regs.poke(7, dr7_value(3, "x", 0, True, True))
    assert fetch(core, FUNCS + 1) == ((), False)
    assert fetch(core, FUNCS)[1] is True
    assert regs.virtual_dr6 == 1 << 3


def test_breakpoints_follow_the_task():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(7, dr7_value(0, "w", 4, True, False))
    core.set_current_task(0, "another task")
    assert core.enforced_slots(0) == []
    core.set_current_task(0, TASK)
    assert core.enforced_slots(0) != []


def test_release_unregisters_everything():
    core, regs = make()
    for slot in range(4):
        regs.poke(slot, VARS + 8 * slot)
    regs.poke(7, dr7_value(0, "w", 4, True, False))
    access(core, VARS)
    regs.release()
    assert not core.is_used()
    assert [regs.peek(n) for n in (0, 1, 2, 3, 6, 7)] == [0, 0, 0, 0, DR6_RESERVED, 0]


def test_on_trap_reports_the_ptrace_slot():
    core = core_running(TASK)
    seen: list[tuple[int, int]] = []
    regs = PtraceDebugRegs(core, TASK, on_trap=lambda slot, hit: seen.append((slot, hit.ip)))
    regs.poke(1, VARS)
    regs.poke(7, dr7_value(1, "w", 2, True, False))
    access(core, VARS, 2)
    assert seen == [(1, IP)]


def test_a_hit_for_a_released_breakpoint_does_not_stop():
    core, regs = make()
    regs.poke(0, VARS)
    regs.poke(7, dr7_value(0, "w", 4, True, False))
    bp = regs.breakpoint(0)
    assert regs._triggered(bp, Hit(0, TASK, IP, VARS, 4, HW_BREAKPOINT_W, (0,))) is True
    regs.release()
    assert regs._triggered(bp, Hit(0, TASK, IP, VARS, 4, HW_BREAKPOINT_W, (0,))) is False


# --- on the emulated CPU: tools/testing/selftests/breakpoints/breakpoint_test.c ------------------

COMBOS = [(False, True), (True, False), (True, True)]   # the child's local/global loop order


@pytest.fixture(scope="module")
def selftest_program():
    from . import build_program, have_compiler

    if not have_compiler():
        pytest.skip("gcc is needed to build the test program")
    return build_program("breakpoints")


def start(path):
    import io

    from gdbstub.target.machine import Machine

    machine = Machine(str(path), [str(path)], stdout=io.BytesIO())
    return machine, PtraceDebugRegs(machine.core, machine.process)


def selftest_plan(symbols) -> list[tuple[str, int, int, bool, bool, int]]:
    """(kind, slot, length, local, global, address) of every access, in the child's order."""
    plan = [("x", i, 8, local, global_, symbols[f"dummy_func{i}"].addr)
            for local, global_ in COMBOS for i in range(4)]
    for kind in ("w", "rw"):       # writes, then read-write watchpoints exercised by reads
        plan += [(kind, i, length, local, global_, symbols["dummy_var"].addr + 8 * i)
                 for length in (1, 2, 4, 8) for local, global_ in COMBOS for i in range(4)]
    return plan


def test_cpu_selftest_each_access_stops_exactly_once(selftest_program):
    """108 breakpoints; the previous one stays armed while running to the next, so a
    trap that fired twice (or not at all) shows up as a wrong `done` count."""
    from gdbstub.target.events import SIGTRAP, StopKind

    machine, regs = start(selftest_program)
    symbols = machine.process.elf.symbols
    plan = selftest_plan(symbols)
    assert len(plan) == 12 + 48 + 48
    previous = 0
    for index, (kind, slot, length, local, global_, addr) in enumerate(plan):
        armed = dr7_value(slot, kind, length, local, global_)
        regs.poke(slot, addr)
        regs.poke(7, armed | previous)
        event = machine.run(step=False)
        done = int.from_bytes(machine.read_memory(symbols["done"].addr, 8), "little")
        where = (index, kind, slot, length, local, global_)
        if kind == "x":
            assert (event.kind, event.pc) == (StopKind.HWBREAK, addr), where    # a fault: before the call's body
        else:
            assert event.kind is StopKind.WATCH, where                           # a trap: after the access
            assert [(w.addr, w.access) for w in event.watches] == [(addr, GENERIC_TYPE[kind])], where
        assert done == index, where
        assert regs.peek(6) == DR6_RESERVED | (1 << slot), where
        previous = armed
        regs.poke(7, armed)            # disarm the one before; this one stays armed for the next run
    regs.poke(7, 0)

    event = machine.run(step=False)
    assert (event.kind, event.signal, event.reason) == (StopKind.SIGNAL, SIGTRAP, "icebp")
    assert int.from_bytes(machine.read_memory(symbols["done"].addr, 8), "little") == 108


def run_to_icebp(path):
    from gdbstub.target.events import StopKind

    machine, regs = start(path)
    event = machine.run(step=False)    # nothing armed: straight to the icebp
    assert event.kind is StopKind.SIGNAL and event.reason == "icebp"
    return machine, event


def test_cpu_int3_gives_sigtrap_after_the_instruction(selftest_program):
    from gdbstub.target.events import SIGTRAP, StopKind

    machine, _ = run_to_icebp(selftest_program)
    event = machine.run(step=False)    # the icebp trap left RIP after it: a resume goes on
    assert (event.kind, event.signal) == (StopKind.SIGNAL, SIGTRAP)
    assert machine.read_memory(event.pc - 1, 1) == b"\xcc" and machine.cpu.pc == event.pc
    event = machine.run(step=False)
    assert (event.kind, event.status) == (StopKind.EXITED, 0)


def test_cpu_icebp_is_a_trap_after_the_instruction(selftest_program):
    machine, icebp = run_to_icebp(selftest_program)
    assert machine.cpu.pc == icebp.pc
