"""The ksym tracer: the filter protocol (each of Linux's six fixes by name), profile, trace ring."""

from __future__ import annotations

from errno import EINVAL, ENOSPC, EOPNOTSUPP

import pytest

from gdbstub.hwbp import (
    HW_BREAKPOINT_LEN_4,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    BreakpointAttr,
    BreakpointCore,
    HwBreakpointError,
)
from gdbstub.hwbp.x86 import DR7_FIXED_1, X86DebugArch
from gdbstub.ksym import KsymFilterError, KsymTracer, TraceRecord, parse_filter

from . import IP, access, core_running

SYMBOLS = {"counter": 0x404028, "flag": 0x40402C, "total": 0x404030, "limit": 0x404038, "spare": 0x404040}
FUNCTIONS = {0x401120: ("bump", 0x20), 0x401140: ("check", 0x30)}
TASK = "demo"


def symbolize(addr: int) -> tuple[str, int, int] | None:
    for name, sym_addr in SYMBOLS.items():
        if sym_addr <= addr < sym_addr + 4:
            return name, addr - sym_addr, 4
    for start, (name, size) in FUNCTIONS.items():
        if start <= addr < start + size:
            return name, addr - start, size
    return None


def make(ncpus: int = 2, **kw) -> tuple[BreakpointCore, KsymTracer]:
    core = core_running(TASK, ncpus)
    return core, KsymTracer(core, SYMBOLS, **kw)


def expect_errno(errno: int, fn, *args) -> KsymFilterError:
    with pytest.raises(KsymFilterError) as info:
        fn(*args)
    assert info.value.errno == errno, info.value
    return info.value


def ksym_bps(core: BreakpointCore) -> list:
    return [bp for bp in core.breakpoints() if bp.owner == "ksym"]


# --- the filter protocol -----------------------------------------------------------------


def test_add_registers_a_wide_four_byte_breakpoint():
    core, tracer = make(ncpus=2)
    assert tracer.write_filter("counter:rw-\n") == len("counter:rw-\n")
    bps = ksym_bps(core)
    assert [(bp.cpu, bp.task, bp.attr.bp_addr, bp.attr.bp_len, bp.attr.bp_type) for bp in bps] == [
        (0, None, SYMBOLS["counter"], HW_BREAKPOINT_LEN_4, HW_BREAKPOINT_RW),
        (1, None, SYMBOLS["counter"], HW_BREAKPOINT_LEN_4, HW_BREAKPOINT_RW),
    ]
    for cpu in (0, 1):
        [slot] = core.enforced_slots(cpu)
        assert (slot.addr, slot.length, slot.access) == (SYMBOLS["counter"], 4, HW_BREAKPOINT_RW)


def test_remove_present_symbol_returns_byte_count():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    assert tracer.write_filter("counter:---\n") == len("counter:---\n")
    assert tracer.read_filter() == ""
    assert not core.is_used()


def test_remove_absent_symbol_is_einval():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    expect_errno(EINVAL, tracer.write_filter, "flag:---")
    assert tracer.read_filter() == "counter:rw-\n"


def test_read_only_op_rejected_at_parse_touches_no_slot():
    core, tracer = make()
    error = expect_errno(EINVAL, tracer.write_filter, "counter:r--")
    assert "read-only" in str(error)
    assert not core.is_used()
    assert core.breakpoints() == []
    assert [core.registers(cpu).dr7 for cpu in range(core.ncpus)] == [DR7_FIXED_1] * core.ncpus


@pytest.mark.parametrize(
    "text",
    [
        "counter:--x", "counter:rwx", "counter:-wx", "counter:r-x",     # execute: not traceable
        "counter:ww-", "counter:qw-", "counter:rwz", "counter:RW-",     # unknown letters
        "counter", "counter rw-",                                        # no colon
        "counter:rw", "counter:rw--", "counter:",                        # op not 3 characters
        "mod:counter:rw-",                                               # module prefix
        "nosuch:rw-", ":rw-",                                            # unknown / empty symbol
        "counter:rw-\nflag:rw-",                                         # one request per write
    ],
)
def test_malformed_filters_are_einval(text):
    core, tracer = make()
    expect_errno(EINVAL, tracer.write_filter, text)
    assert not core.is_used()


def test_parse_filter_table():
    assert parse_filter("counter:rw-") == ("counter", HW_BREAKPOINT_RW)
    assert parse_filter("counter:-w-") == ("counter", HW_BREAKPOINT_W)
    assert parse_filter("counter:---") == ("counter", 0)


def test_duplicate_entry_is_einval():
    core, tracer = make()
    tracer.write_filter("counter:-w-")
    expect_errno(EINVAL, tracer.write_filter, "counter:-w-")
    assert len(ksym_bps(core)) == core.ncpus   # still exactly one entry


def test_access_change_reregisters():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    old = ksym_bps(core)
    assert tracer.write_filter("counter:-w-") == len("counter:-w-")
    new = ksym_bps(core)
    assert not any(bp.registered for bp in old)
    assert [bp.attr.bp_type for bp in new] == [HW_BREAKPOINT_W] * core.ncpus
    assert tracer.read_filter() == "counter:-w-\n"
    # A read no longer fires; a write does.
    assert access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_R)[0] == ()
    assert access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_W)[0] != ()


def test_failed_reregistration_raises_enospc_and_drops_entry():
    """Another consumer takes the slot the old breakpoint freed before ksym registers again."""
    core, tracer = make(ncpus=1)
    for name in ("flag", "total", "limit"):
        tracer.write_filter(f"{name}:rw-")
    tracer.write_filter("counter:rw-")
    stolen = []

    def greedy_consumer(cpu: int) -> None:
        if not stolen and core.enforced_slots(cpu) and len(core.breakpoints()) < 4:
            stolen.append(core.register(BreakpointAttr(0x404100, 4, HW_BREAKPOINT_W), cpu, owner="other"))

    core.add_listener(greedy_consumer)
    error = expect_errno(ENOSPC, tracer.write_filter, "counter:-w-")
    assert "4" in str(error)
    assert "counter" not in tracer.read_filter()            # the entry is gone, not half-there
    assert tracer.read_filter() == "limit:rw-\ntotal:rw-\nflag:rw-\n"
    assert stolen and stolen[0].registered


class WriteOnlyWatchArch(X86DebugArch):
    """A debug unit that can only watch writes (an arch refusal on re-registration)."""

    def hw_breakpoint_arch_parse(self, attr):
        if attr.bp_type == HW_BREAKPOINT_RW:
            raise HwBreakpointError(EOPNOTSUPP, "this arch watches writes only")
        return super().hw_breakpoint_arch_parse(attr)


def test_failed_reregistration_raises_the_arch_errno():
    core = BreakpointCore(WriteOnlyWatchArch(), ncpus=1)
    tracer = KsymTracer(core, SYMBOLS)
    tracer.write_filter("counter:-w-")
    expect_errno(EOPNOTSUPP, tracer.write_filter, "counter:rw-")
    assert tracer.read_filter() == ""
    assert not core.is_used()


@pytest.mark.parametrize("text", ["", "\n", "0", "0\n", "*:---", "  *:---  \n"])
def test_clear_all_inputs(text):
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    tracer.write_filter("flag:-w-")
    assert tracer.write_filter(text) == len(text)
    assert tracer.read_filter() == ""
    assert not core.is_used()


def test_input_is_exactly_count_bytes():
    core, tracer = make()
    buffer = b"counter:rw-GARBAGE"
    assert tracer.write_filter(buffer, 11) == 11
    assert tracer.read_filter() == "counter:rw-\n"
    # The same buffer taken whole is an op of 10 characters: refused.
    expect_errno(EINVAL, tracer.write_filter, b"flag:-w-XYZ")
    expect_errno(EINVAL, tracer.write_filter, buffer, len(buffer) + 1)


def test_surrounding_whitespace_is_stripped():
    core, tracer = make()
    assert tracer.write_filter(b"  \tflag:-w-  \n") == 14
    assert tracer.read_filter() == "flag:-w-\n"


def test_empty_filter_reads_empty_string():
    core, tracer = make()
    assert tracer.read_filter() == ""
    tracer.write_filter("counter:rw-")
    tracer.write_filter("counter:---")
    assert tracer.read_filter() == ""


def test_read_filter_newest_first():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    tracer.write_filter("flag:-w-")
    tracer.write_filter("total:rw-")
    assert tracer.read_filter() == "total:rw-\nflag:-w-\ncounter:rw-\n"


def test_enospc_names_the_limit():
    core, tracer = make(ncpus=2)
    for name in ("counter", "flag", "total", "limit"):
        tracer.write_filter(f"{name}:rw-")
    error = expect_errno(ENOSPC, tracer.write_filter, "spare:rw-")
    assert "Maximum limit reached (4 debug-register slots per CPU)" in str(error)
    assert "spare" not in tracer.read_filter()
    assert len(ksym_bps(core)) == 4 * core.ncpus    # nothing half-registered on one CPU


# --- hits: the trace ring and the profile ---------------------------------------------------


def test_tracer_never_stops_the_program():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    slots, stop = access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_W)
    assert slots and stop is False


def test_one_hit_per_instruction_one_record():
    """`add [x],1` reads and writes in one instruction: one #DB, one record;
    `if (x == 0) x++;` is two instructions: two records."""
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_R, ip=0x401120)      # add [counter],1
    assert len(tracer.records()) == 1
    access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_R, ip=0x401140)      # cmp [counter],0
    access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_W, ip=0x401149)      # mov [counter],eax
    assert [r.ip for r in tracer.records()] == [0x401120, 0x401140, 0x401149]


def test_trace_record_holds_values_not_breakpoints():
    core, tracer = make(symbolize=symbolize)
    tracer.write_filter("counter:rw-")
    access(core, SYMBOLS["counter"], cpu=1, task="worker", ip=0x401124)
    tracer.write_filter("counter:---")     # the breakpoints are gone
    assert not core.is_used()
    [record] = tracer.records()
    assert record == TraceRecord(ip=0x401124, bp_type=HW_BREAKPOINT_RW, addr=SYMBOLS["counter"], task="worker", cpu=1)
    assert all(isinstance(getattr(record, f), (int, str)) for f in ("ip", "bp_type", "addr", "task", "cpu"))
    line = tracer.trace().splitlines()[-1]
    assert line.split() == ["worker", "[001]", "counter+0x0/0x4", "RW", "bump+0x4/0x20"]


def test_trace_line_shows_task_cpu_symbol_type_function_and_disassembly():
    core, tracer = make(symbolize=symbolize, disassemble=lambda ip: f"insn@{ip:#x}",
                        task_name=lambda task: f"{task}-42")
    tracer.write_filter("flag:-w-")
    access(core, SYMBOLS["flag"], size=1, ip=0x401144)
    text = tracer.trace()
    assert text.startswith("# tracer: ksym_tracer\n# entries-in-buffer/entries-written: 1/1   #lost: 0\n")
    assert text.splitlines()[-1] == "          demo-42  [000]  flag+0x0/0x4              W     check+0x4/0x30  insn@0x401144"


def test_write_watch_ignores_reads():
    core, tracer = make()
    tracer.write_filter("counter:-w-")
    assert access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_R) == ((), False)
    assert tracer.records() == []


def test_ring_overwrites_oldest_and_reports_lost():
    core, tracer = make(capacity=3)
    tracer.write_filter("counter:rw-")
    for n in range(5):
        access(core, SYMBOLS["counter"], ip=IP + n)
    assert [r.ip for r in tracer.records()] == [IP + 2, IP + 3, IP + 4]
    assert tracer.lost == 2
    assert "entries-in-buffer/entries-written: 3/5   #lost: 2" in tracer.trace()


def test_profile_counts_hits_per_entry():
    core, tracer = make()
    tracer.write_filter("counter:rw-")
    tracer.write_filter("flag:-w-")
    for _ in range(3):
        access(core, SYMBOLS["counter"], kind=HW_BREAKPOINT_R)
    access(core, SYMBOLS["flag"], cpu=1)
    assert tracer.profile().splitlines() == [
        "  Access Type   Symbol                                       Counter",
        "  -----------   ------                                       -------",
        "  W             flag                                               1",
        "  RW            counter                                            3",
    ]


def test_symbol_table_values_may_carry_addr():
    from gdbstub.target.elf import Symbol

    core = BreakpointCore(X86DebugArch(), ncpus=1)
    tracer = KsymTracer(core, {"counter": Symbol(0x404028, 4, "object")})
    tracer.write_filter("counter:rw-")
    assert ksym_bps(core)[0].attr.bp_addr == 0x404028


# --- on the emulated CPU (the trace_selftest_startup_ksym check) ---------------------------------


@pytest.fixture(scope="module")
def ksym_program():
    from . import build_program, have_compiler

    if not have_compiler():
        pytest.skip("gcc is needed to build the test program")
    return build_program("ksym_selftest")


def run_traced(path, *filters):
    import io

    from gdbstub.target.events import StopKind
    from gdbstub.target.machine import Machine

    machine = Machine(str(path), [str(path)], stdout=io.BytesIO())
    elf = machine.process.elf
    tracer = KsymTracer(machine.core, elf.symbols, symbolize=elf.symbol_at,
                        task_name=lambda task: f"ksym_selftest-{task.pid}")
    for text in filters:
        tracer.write_filter(text)
    event = machine.run(step=False)
    assert (event.kind, event.status) == (StopKind.EXITED, 0)       # a tracer never stops it
    return machine, tracer


def test_cpu_check_then_increment_gives_two_records(ksym_program):
    machine, tracer = run_traced(ksym_program, "ksym_selftest_dummy:rw-\n")
    records = tracer.records()
    assert len(records) == 2
    assert [machine.process.elf.symbol_at(r.ip).name for r in records] == ["check_and_bump"] * 2
    assert records[0].ip < records[1].ip                                 # the load, then the store
    assert machine.read_memory(machine.process.elf.symbols["ksym_selftest_dummy"].addr, 4) == (1).to_bytes(4, "little")


def test_cpu_read_modify_write_is_one_record(ksym_program):
    machine, tracer = run_traced(ksym_program, "rmw_target:rw-")
    [record] = tracer.records()
    assert machine.process.elf.symbol_at(record.ip)[:2] == ("add_one", 0)
    line = tracer.trace().splitlines()[-1]
    assert line.split()[1:] == ["[000]", "rmw_target+0x0/0x4", "RW", "add_one+0x0/0x8"]


def test_cpu_write_only_filter_sees_only_the_store(ksym_program):
    machine, tracer = run_traced(ksym_program, "ksym_selftest_dummy:-w-", "rmw_target:-w-")
    assert tracer.profile().splitlines()[2:] == [
        "  W             rmw_target                                         1",
        "  W             ksym_selftest_dummy                                1",
    ]
    tracer.write_filter("*:---")
    assert not machine.core.is_used() and machine.cpu.debug_slots == ()   # the CPU watches nothing now
