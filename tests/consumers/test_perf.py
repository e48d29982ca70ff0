"""perf `mem:` events: the parser (perf's own parse-events cases), counting, and the stat output."""

from __future__ import annotations

from errno import EINVAL, ENOSPC

import pytest

from gdbstub.hwbp import (
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
)
from gdbstub.perf import PerfSession, parse_event

from . import access, core_running

COUNTER = 0x404028
SYMBOLS = {"counter": COUNTER, "flag": 0x404030}
TASK = "demo"


# --- parse_event ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, addr, length, bp_type",
    [
        # tools/perf/tests/parse-events.c
        ("mem:0", 0, 4, HW_BREAKPOINT_RW),
        ("mem:0:x", 0, 8, HW_BREAKPOINT_X),
        ("mem:0:r", 0, 4, HW_BREAKPOINT_R),
        ("mem:0:w", 0, 4, HW_BREAKPOINT_W),
        ("mem:0:rw", 0, 4, HW_BREAKPOINT_RW),
        ("mem:0/1", 0, 1, HW_BREAKPOINT_RW),
        ("mem:0/2:w", 0, 2, HW_BREAKPOINT_W),
        # perf-record.txt's examples and the brief's
        ("mem:0x1000:rw", 0x1000, 4, HW_BREAKPOINT_RW),
        ("mem:0x1000/8:w", 0x1000, 8, HW_BREAKPOINT_W),
        ("mem:0x404028/8:w", 0x404028, 8, HW_BREAKPOINT_W),
        ("mem:4210728:wr", 0x404028, 4, HW_BREAKPOINT_RW),
        ("mem:0x401000/0x8:x", 0x401000, 8, HW_BREAKPOINT_X),
        ("mem:0:rx", 0, 4, HW_BREAKPOINT_R | HW_BREAKPOINT_X),   # parses; the arch refuses it later
    ],
)
def test_parse_event_table(text, addr, length, bp_type):
    attr = parse_event(text)
    assert (attr.bp_addr, attr.bp_len, attr.bp_type) == (addr, length, bp_type)
    assert not attr.exclude_user and not attr.exclude_kernel


@pytest.mark.parametrize(
    "text, exclude_user, exclude_kernel",
    [("mem:0:u", False, True), ("mem:0:x:k", True, False), ("mem:0/4:rw:u", False, True), ("mem:0:w:uk", False, False)],
)
def test_parse_event_modifiers(text, exclude_user, exclude_kernel):
    attr = parse_event(text)
    assert (attr.exclude_user, attr.exclude_kernel) == (exclude_user, exclude_kernel)


@pytest.mark.parametrize(
    "text",
    [
        "cycles", "mem", "mem:", "mem:0:", "mem:0/", "mem:0/0", "mem:0/abc", "mem:0x", "mem:zz",
        "mem:0:rr", "mem:0:rwr", "mem:0:xx", "mem:0:q", "mem:0:rwq", "mem:0:r:w", "mem:0:u:r",
        "mem:0:w:up", "mem:0:w:uu", "mem:0:w:u:k", "mem:counter:rw", "mem:-1",
    ],
)
def test_bad_syntax_is_value_error(text):
    with pytest.raises(ValueError):
        parse_event(text)


def test_symbol_may_stand_for_the_address():
    assert parse_event("mem:counter:rw", SYMBOLS) == BreakpointAttr(COUNTER, 4, HW_BREAKPOINT_RW)
    assert parse_event("mem:counter/8:w", SYMBOLS) == BreakpointAttr(COUNTER, 8, HW_BREAKPOINT_W)
    assert parse_event("mem:0x10:w", SYMBOLS).bp_addr == 0x10    # numbers stay numbers
    with pytest.raises(ValueError, match="no symbol"):
        parse_event("mem:nosuch:rw", SYMBOLS)


# --- counting sessions -----------------------------------------------------------------------


class FakeClock:
    """A clock the test advances by hand (elapsed time becomes exact)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counts_exact_hits_and_never_stops():
    core = core_running(TASK)
    session = PerfSession(core, ["mem:0x404028:w", "mem:counter:rw"], task=TASK, symbols=SYMBOLS)
    with session:
        assert [c.bps[0].owner for c in session.counters] == ["perf", "perf"]
        for _ in range(3):
            slots, stop = access(core, COUNTER, kind=HW_BREAKPOINT_W)
            assert len(slots) == 2 and stop is False
        access(core, COUNTER, kind=HW_BREAKPOINT_R)
        access(core, COUNTER + 4, kind=HW_BREAKPOINT_W)        # next to it: not counted
    write_count, rw_count = (c.count for c in session.counters)
    assert (write_count, rw_count) == (3, 4)
    assert not core.is_used()                                  # close() gave the slots back


def test_counts_agree_with_the_core():
    core = core_running(TASK)
    with PerfSession(core, ["mem:0x404028/8:w"], task=TASK) as session:
        access(core, COUNTER + 6, size=2)                      # overlaps the 8-byte range
        access(core, COUNTER + 8, size=8)                      # adjacent: no hit
        [bp] = session.counters[0].bps
        assert bp.count == session.counters[0].count == 1


def test_refused_event_is_not_supported_and_others_count():
    core = core_running(TASK)
    clock = FakeClock()
    session = PerfSession(core, ["mem:0x404028:w", "mem:0x404028:r", "mem:counter:rw"],
                          task=TASK, symbols=SYMBOLS, clock=clock)
    session.open()
    [read_only] = [c for c in session.counters if c.name == "mem:0x404028:r"]
    assert not read_only.supported and read_only.error.errno == EINVAL and read_only.bps == []
    access(core, COUNTER)
    access(core, COUNTER)
    clock.now += 0.25
    session.close()
    assert session.format_stat("./demo") == (
        "\n"
        " Performance counter stats for './demo':\n"
        "\n"
        "                 2      mem:0x404028:w\n"
        "   <not supported>      mem:0x404028:r   (EINVAL: x86 has no read-only watchpoints)\n"
        "                 2      mem:counter:rw\n"
        "\n"
        "       0.250000000 seconds time elapsed\n"
        "\n"
    )


def test_no_free_slot_is_not_supported_with_enospc():
    core = core_running(TASK)
    events = [f"mem:{0x404000 + 8 * n:#x}:w" for n in range(5)]
    with PerfSession(core, events, task=TASK) as session:
        assert [c.supported for c in session.counters] == [True, True, True, True, False]
        assert session.counters[4].error.errno == ENOSPC
        assert "<not supported>" in session.format_stat().splitlines()[-4]


def test_opening_an_open_session_is_refused_and_registers_nothing_more():
    core = core_running(TASK)
    with PerfSession(core, ["mem:0x404028:w"], task=TASK) as session:
        [bp] = session.counters[0].bps
        with pytest.raises(RuntimeError, match="already open"):
            session.open()
        assert session.counters[0].bps == [bp]
        access(core, COUNTER)
    assert not core.is_used() and session.counters[0].count == 1


def test_a_reopened_session_is_a_new_measurement():
    core = core_running(TASK)
    others = PerfSession(core, [f"mem:{0x404000 + 8 * n:#x}:w" for n in range(4)], task=TASK)
    session = PerfSession(core, ["mem:0x404028:w", "mem:0x404030:w"], task=TASK)
    with session:
        access(core, 0x404028)
    with others, session:                                            # the others hold all four slots
        assert session.counters[0].error.errno == ENOSPC
    with session:
        access(core, 0x404030)
        assert [c.supported for c in session.counters] == [True, True]
        assert [c.count for c in session.counters] == [0, 1]
    assert not core.is_used()


def test_syntax_error_registers_nothing():
    core = core_running(TASK)
    with pytest.raises(ValueError):
        PerfSession(core, ["mem:0x404028:w", "mem:0x404028:ww"], task=TASK)
    assert not core.is_used()


def test_system_wide_counts_on_every_cpu():
    core = core_running(TASK, ncpus=2)
    with PerfSession(core, ["mem:0x404028:w"]) as session:
        assert [bp.cpu for bp in session.counters[0].bps] == [0, 1]
        access(core, COUNTER, cpu=0)
        access(core, COUNTER, cpu=1, task="other")             # any task counts system-wide
    assert session.counters[0].count == 2
    assert "'system wide'" in session.format_stat()


def test_task_counter_follows_its_task():
    core = core_running(TASK, ncpus=1)
    with PerfSession(core, ["mem:0x404028:w"], task=TASK) as session:
        core.set_current_task(0, "other")                      # context switch: not installed
        assert access(core, COUNTER) == ((), False)
        core.set_current_task(0, TASK)
        access(core, COUNTER)
    assert session.counters[0].count == 1


def test_user_only_modifier_skips_kernel_hits():
    core = core_running(TASK)
    with PerfSession(core, ["mem:0x404028:w:u"], task=TASK) as session:
        access(core, COUNTER, ip=0x401000)
        access(core, COUNTER, ip=0xFFFF_FFFF_8100_0000)         # a kernel-mode ip
    assert session.counters[0].count == 1


# --- on the emulated CPU ------------------------------------------------------------------------


def test_cpu_perf_stat_on_the_counter_program():
    """tests/programs/counter.c calls bump() N times; at -O0 `counter++` is a load and a
    store, and printf's argument one more load: W = N, RW = 2N + 1, X on bump = N."""
    import io

    from gdbstub.target.events import StopKind
    from gdbstub.target.machine import Machine
    from tests.programs.build import build, have_compiler

    if not have_compiler():
        pytest.skip("gcc is needed to build the test program")
    path = build("counter")
    n = 7
    machine = Machine(str(path), [str(path), str(n)], stdout=io.BytesIO())
    events = ["mem:counter:w", "mem:counter:rw", "mem:counter:r", "mem:bump:x"]
    session = PerfSession(machine.core, events, task=machine.process, symbols=machine.process.elf.symbols)
    with session:
        event = machine.run(step=False)
    assert (event.kind, event.status) == (StopKind.EXITED, 0)       # counting never stopped it
    assert machine.process.stdout.getvalue() == f"counter={n}\n".encode()
    counts = {c.name: (c.count if c.supported else None) for c in session.counters}
    assert counts == {"mem:counter:w": n, "mem:counter:rw": 2 * n + 1, "mem:counter:r": None, "mem:bump:x": n}
    assert not machine.core.is_used()
