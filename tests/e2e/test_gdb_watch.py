"""gdb's hardware watchpoints and hbreak, end to end: the real gdb in batch mode against `gdbstub serve`.

Every transcript is gdb's own stdout and stderr merged in order (gdb flushes stdout before it writes to
stderr), so "Could not insert ..." and `monitor hwbp` output can be placed between stops. Expected
values come from the test programs (tests/programs/watch_*.c) and from x86 facts: DR7 RW bits
(1 = write, 3 = read/write, 0 = execute), LEN bits (1 -> 0, 2 -> 1, 4 -> 3, 8 -> 2), DR6's reset value
0xffff0ff0 and its B0-B3 hit bits; gdb's transcript for the scope case is checked against gdbserver.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.programs.build import build

from .oracle import GDBSERVER, run_both
from .stub import gdb_args, run_gdb, run_gdb_interrupting, wait_for

DR6_RESET = 0xFFFF0FF0                    # Intel SDM: DR6's reserved bits read as 1
DR7_RW = {"X": 0, "W": 1, "RW": 3}
DR7_LEN = {1: 0, 2: 1, 4: 3, 8: 2}


# ----------------------------------------------------------------------------- the program
def program_output(stub) -> str:
    """The program's stdout, once the server has collected its last line."""
    wait_for(lambda: stub.program_output().endswith("\n"), timeout=5)
    return stub.program_output()


# ----------------------------------------------------------------------------- reading gdb's output
def write_reports(out: str, expr: str) -> list[tuple[str, str]]:
    """(old, new) of every `watch` stop on `expr`, in order."""
    pattern = rf"Hardware watchpoint \d+: {re.escape(expr)}\n\nOld value = (.*)\nNew value = (.*)\n"
    return re.findall(pattern, out)


def int_steps(reports: list[tuple[str, str]]) -> list[tuple[int, int]]:
    return [(int(old), int(new)) for old, new in reports]


def printed(out: str) -> dict[int, str]:
    """gdb's value history: $N -> text."""
    return {int(n): value for n, value in re.findall(r"^\$(\d+) = (.*)$", out, re.MULTILINE)}


def address_of(out: str, history: int) -> int:
    """The address in `$N = (type *) 0x... <sym>`."""
    return int(re.search(r"0x[0-9a-f]+", printed(out)[history]).group(0), 16)


@dataclass(frozen=True)
class Slot:
    name: str
    address: int
    length: int
    kind: str
    owner: str
    hits: int


@dataclass(frozen=True)
class HwbpReport:
    slots: list[Slot]
    dr: list[int]        # DR0-DR3
    dr6: int
    dr7: int


_HWBP_HEADER = re.compile(r"^cpu\s+slot\s+address\s+len\s+type\s+owner\s+hits$")
_HWBP_ROW = re.compile(r"^(\d+)\s+(DR[0-3])\s+0x([0-9a-f]{16})\s+(\d+)\s+(RW|R|W|X)\s+(\S+)\s+(\d+)$")
_HWBP_REGS = re.compile(r"^DR0=0x([0-9a-f]+) DR1=0x([0-9a-f]+) DR2=0x([0-9a-f]+) DR3=0x([0-9a-f]+) "
                        r"DR6=0x([0-9a-f]{8}) DR7=0x([0-9a-f]{8})$")


def hwbp_reports(out: str) -> list[HwbpReport]:
    """Every `monitor hwbp` answer in the transcript, strictly parsed: header, then one row per slot
    or "(no hardware breakpoints)", then the DR line."""
    reports = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if not _HWBP_HEADER.match(line):
            continue
        slots = []
        j = i + 1
        if lines[j] == "(no hardware breakpoints)":
            j += 1
        else:
            while (row := _HWBP_ROW.match(lines[j])) is not None:
                _cpu, name, addr, length, kind, owner, hits = row.groups()
                slots.append(Slot(name, int(addr, 16), int(length), kind, owner, int(hits)))
                j += 1
        regs = _HWBP_REGS.match(lines[j])
        assert regs is not None, f"no DR line after the slots: {lines[j]!r}"
        values = [int(v, 16) for v in regs.groups()]
        reports.append(HwbpReport(slots, values[:4], values[4], values[5]))
    return reports


def assert_dr7_encodes(report: HwbpReport) -> None:
    """Each held slot is enabled in DR7 with its RW and LEN bits (execute: LEN 0), and DRn holds
    its address; free slots are disabled."""
    held = {int(slot.name[2:]): slot for slot in report.slots}
    for n in range(4):
        enabled = (report.dr7 >> (2 * n)) & 0b11
        if n not in held:
            assert enabled == 0, f"DR{n} is free but enabled in DR7={report.dr7:#x}"
            continue
        slot = held[n]
        assert enabled != 0, f"DR{n} is held but disabled in DR7={report.dr7:#x}"
        length_bits = 0 if slot.kind == "X" else DR7_LEN[slot.length]
        assert (report.dr7 >> (16 + 4 * n)) & 0xF == DR7_RW[slot.kind] | length_bits << 2
        assert report.dr[n] == slot.address


def events(out: str) -> list[str]:
    """The stops in order: "B:<func>" for a breakpoint, "W:<expr>" for a watchpoint."""
    found = re.finditer(r"^Breakpoint \d+, (\w+) \(|^Hardware (?:[\w()/]+ )*watchpoint \d+: (.*)\n\n(?:Old )?[Vv]alue",
                        out, re.MULTILINE)
    return [f"B:{m.group(1)}" if m.group(1) else f"W:{m.group(2)}" for m in found]


# ----------------------------------------------------------------------------- watch: one step per hit
@pytest.mark.parametrize("mode, store", [
    ("plain", r"mov\s+%rax,0x[0-9a-f]+\(%rip\)\s+# 0x[0-9a-f]+ <counter>"),
    ("lock", r"lock addq?\s+\$0x1,0x[0-9a-f]+\(%rip\)\s+# 0x[0-9a-f]+ <counter>"),
], ids=["counter++", "lock-add"])
def test_watch_counter_steps_by_exactly_one(serve, mode, store):
    increments = 5
    stub = serve("watch_counter", mode, str(increments), once=True)
    out = run_gdb(stub.port, ["watch counter", *["continue"] * increments, "disassemble",
                                      "continue"])
    assert int_steps(write_reports(out, "counter")) == [(k, k + 1) for k in range(increments)]
    # trap semantics: the stop comes after the store, so the instruction before pc is the store
    listing = out.split("Dump of assembler code")[1].splitlines()
    at_pc = next(i for i, line in enumerate(listing) if line.startswith("=> "))
    assert re.search(store, listing[at_pc - 1]), listing[at_pc - 1]
    assert "exited normally" in out
    assert program_output(stub) == f"counter={increments}\n"            # no increment ran twice


# ----------------------------------------------------------------------------- rwatch / awatch
def test_rwatch_fires_on_reads_not_on_writes(serve):
    stub = serve("watch_access", once=True, options=("--log-packets",))
    out = run_gdb(stub.port, ["print &shared", "rwatch shared", *["continue"] * 4])
    shared = address_of(out, 1)
    # watch_access.c reads shared after each of its writes 1, 2, 3 (the last read is printf's argument)
    assert re.findall(r"Hardware read watchpoint 1: shared\n\nValue = (\d+)\n", out) == ["1", "2", "3"]
    assert "Old value" not in out
    assert "exited normally" in out
    assert program_output(stub) == "sink=2 shared=3\n"
    # x86 has no read-only slot: the stub answers Z3 with an empty reply and gdb falls back to Z4
    log = stub.stderr_text()
    assert re.search(rf"<- b'Z3,{shared:x},4'\n.*-> b''\n.*<- b'Z4,{shared:x},4'\n.*-> b'OK'", log)


def test_rwatch_with_the_virt_arch_is_a_true_read_watchpoint(serve):
    # virt has read-only slots: Z3 is taken (no Z4 fallback) and every read stops, also a read the
    # CPU meets again in a block it translated before.
    stub = serve("watch_read_call", once=True, options=("--debug-arch", "virt", "--log-packets"))
    out = run_gdb(stub.port, ["break main", "continue", "rwatch shared", *["continue"] * 4])
    assert re.findall(r"Hardware read watchpoint 2: shared\n\nValue = (\d+)\n", out) == ["5", "5", "5"]
    assert "exited normally" in out
    assert program_output(stub) == "sink=15\n"
    assert "<- b'Z4," not in stub.stderr_text()


def test_awatch_fires_on_reads_and_writes(serve):
    stub = serve("watch_access", once=True)
    out = run_gdb(stub.port, ["awatch shared", *["continue"] * 7])
    reports = re.findall(r"Hardware access \(read/write\) watchpoint 1: shared\n\n"
                         r"(?:Value = (\d+)|Old value = (\d+)\nNew value = (\d+))\n", out)
    seen = [f"read {value}" if value else f"write {old}->{new}" for value, old, new in reports]
    assert seen == ["write 0->1", "read 1", "write 1->2", "read 2", "write 2->3", "read 3"]
    assert "exited normally" in out


# ----------------------------------------------------------------------------- hbreak
def test_hbreak_stops_before_the_instruction_and_continue_moves_on(serve):
    loops = 3
    stub = serve("watch_counter", "plain", str(loops), once=True, options=("--log-packets",))
    arrival = ["print/x $pc", "print counter", "continue"]
    out = run_gdb(stub.port, ["hbreak bump_plain", "continue", *arrival * loops])
    where = int(re.search(r"Hardware assisted breakpoint 1 at (0x[0-9a-f]+): file .*watch_counter.c",
                          out).group(1), 16)
    assert len(re.findall(r"^Breakpoint 1, bump_plain \(\) at .*watch_counter.c:\d+$", out, re.MULTILINE)) == loops
    values = printed(out)
    pcs = [int(values[n], 16) for n in range(1, 2 * loops, 2)]
    counters = [int(values[n]) for n in range(2, 2 * loops + 1, 2)]
    assert pcs == [where] * loops                   # gdb's post-prologue address, every time
    assert counters == list(range(loops))           # stopped before `counter++` ran
    assert "exited normally" in out
    assert program_output(stub) == f"counter={loops}\n"
    log = stub.stderr_text()
    assert f"<- b'Z1,{where:x},1'" in log and f"Z0,{where:x}" not in log   # a debug register, not int3
    assert re.search(r"-> b'T05hwbreak:", log)


# ----------------------------------------------------------------------------- regions and the slot limit
def test_watch_struct_and_unaligned_bytes_split_into_slots(serve):
    stub = serve("watch_regions", once=True)
    out = run_gdb(stub.port, [
        "set breakpoint always-inserted on", "print &pair", "print &bytes[1]",
        "watch pair", "watch *(char(*)[3])&bytes[1]", "monitor hwbp",
        *["continue"] * 4, "break printf", "continue", "monitor hwbp", "kill",
    ])
    pair, region = address_of(out, 1), address_of(out, 2)
    armed, at_printf = hwbp_reports(out)
    expected = {(pair, 8), (pair + 8, 8), (region, 1), (region + 1, 2)}     # 16 = 8+8; 3 at +1 = 1+2
    assert {(s.address, s.length) for s in armed.slots} == expected
    assert all(s.kind == "W" and s.owner == "gdb" and s.hits == 0 for s in armed.slots)
    assert armed.dr6 == DR6_RESET
    assert_dr7_encodes(armed)
    assert write_reports(out, "pair") == [("{first = 0, second = 0}", "{first = 1, second = 0}"),
                                          ("{first = 1, second = 0}", "{first = 1, second = 2}")]
    assert write_reports(out, "*(char(*)[3])&bytes[1]") == [('"\\000\\000"', '"\\v\\000"'),
                                                            ('"\\v\\000"', '"\\v\\000\\r"')]
    assert "Breakpoint 3, " in out and "printf" in out.split("Breakpoint 3, ")[1].splitlines()[0]
    # each piece saw exactly its own write: bytes[0] and bytes[4] next to the region hit nothing
    assert sorted((s.address, s.hits) for s in at_printf.slots) == sorted((a, 1) for a, _ in expected)


def test_fifth_watchpoint_does_not_fit_until_one_is_deleted(serve):
    stub = serve("watch_regions", once=True)
    out = run_gdb(stub.port, [
        *[f"watch quad[{i}]" for i in range(4)], "watch extra", "continue",
        "print quad[0]", "delete 2", *["continue"] * 5,
    ])
    assert "Could not insert hardware watchpoint 5." in out
    assert "You may have requested too many hardware breakpoints/watchpoints." in out
    before, _, rest = out.partition("Could not insert hardware watchpoint 5.")
    assert "Old value" not in before and printed(rest)[1] == "0"           # the resume was aborted
    assert events(rest) == ["W:quad[0]", "W:quad[2]", "W:quad[3]", "W:extra"]
    assert int_steps(write_reports(rest, "extra")) == [(0, 5)]
    assert "exited normally" in rest
    assert program_output(stub) == "pair=1,2 bytes=11,13,14 quad=103 extra=5\n"


# ----------------------------------------------------------------------------- scope, -location, break
SCOPE_COMMANDS = ["break sum_to", "continue", "next", "watch local", *["continue"] * 5]


def test_watch_on_a_local_is_deleted_when_its_frame_returns(serve):
    stub = serve("watch_scope", once=True)
    out = run_gdb(stub.port, SCOPE_COMMANDS)
    assert int_steps(write_reports(out, "local")) == [(0, 1), (1, 3), (3, 6)]
    left = out.split("Watchpoint 2 deleted because the program has left the block in\n"
                     "which its expression is valid.\n")
    assert len(left) == 2
    assert re.match(r"(0x[0-9a-f]+ in )?main \(\) at .*watch_scope.c:\d+\n", left[1])
    assert "exited normally" in left[1]
    assert program_output(stub) == "total=6\n"


def _normalized(out: str) -> list[str]:
    """A transcript without what differs between targets by design: file-transfer notes, how the
    inferior is named, and gdbserver's own messages."""
    skip = ("Reading ", "warning: File transfers", "Process ", "Listening on port", "Remote debugging from",
            "Child exited", "total=")
    lines = [line for line in out.splitlines() if not line.startswith(skip)]
    return [re.sub(r"\[Inferior 1 \(.*?\)", "[Inferior 1", line) for line in lines]


def test_watch_on_a_local_matches_gdbserver(need_gdb):
    if GDBSERVER is None:
        pytest.skip("gdbserver is not installed")
    reference, ours = (side.raw_gdb for side in run_both(build("watch_scope"), [], SCOPE_COMMANDS))
    assert "Watchpoint 2 deleted" in reference
    assert _normalized(ours) == _normalized(reference)


def test_watch_location_stays_on_the_address(serve):
    stub = serve("watch_pointer", once=True)
    out = run_gdb(stub.port, ["set breakpoint always-inserted on", "print &a", "watch -l *p",
                                      "continue", "continue", "monitor hwbp", "continue"])
    a = address_of(out, 1)
    assert "Hardware watchpoint 1: -location *p" in out
    assert int_steps(write_reports(out, "-location *p")) == [(0, 1), (1, 3)]    # not b's write
    (report,) = hwbp_reports(out)
    (slot,) = report.slots
    assert (slot.address, slot.length, slot.kind, slot.hits) == (a, 4, "W", 2)
    assert report.dr6 & 0xF == 1 << int(slot.name[2:])                         # B<n> of the hit slot
    assert "exited normally" in out
    assert program_output(stub) == "a=3 b=2\n"


def test_watch_and_break_stop_in_program_order(serve):
    loops = 3
    stub = serve("watch_counter", "plain", str(loops), once=True)
    out = run_gdb(stub.port, ["watch counter", "break bump_plain", *["continue"] * (2 * loops + 1)])
    assert events(out) == ["B:bump_plain", "W:counter"] * loops
    assert int_steps(write_reports(out, "counter")) == [(k, k + 1) for k in range(loops)]
    assert "exited normally" in out
    assert program_output(stub) == f"counter={loops}\n"


# ----------------------------------------------------------------------------- Ctrl-C, delete, detach
def test_ctrl_c_with_a_watchpoint_armed_then_it_still_fires(serve):
    stub = serve("watch_spin", once=True)
    out = run_gdb_interrupting(stub.port, ["watch watched", "continue", "print spins > 0",
                                           "set var release = 1", "continue", "continue"], after=1.5)
    interrupted, _, after = out.partition("Program received signal SIGINT, Interrupt.")
    assert after, out
    assert "Old value" not in interrupted                       # the spin loop never touched it
    assert printed(after)[1] == "1"
    assert int_steps(write_reports(after, "watched")) == [(0, 42)]
    assert "exited normally" in after
    assert program_output(stub) == "watched=42\n"


def test_delete_and_re_add_a_watchpoint(serve):
    increments = 4
    stub = serve("watch_counter", "plain", str(increments), once=True)
    out = run_gdb(stub.port, [
        "set breakpoint always-inserted on", "watch counter", "continue", "delete 1", "monitor hwbp",
        "break bump_plain", "continue", "print counter", "continue", "print counter", "delete 2",
        "watch counter", "monitor hwbp", "continue", "continue", "continue",
    ])
    deleted, re_added = hwbp_reports(out)
    assert deleted.slots == [] and deleted.dr7 & 0xFF == 0
    assert [(s.kind, s.length, s.hits) for s in re_added.slots] == [("W", 8, 0)]
    assert_dr7_encodes(re_added)
    assert int_steps(write_reports(out, "counter")) == [(0, 1), (2, 3), (3, 4)]   # 1->2 ran unwatched
    assert [printed(out)[n] for n in (1, 2)] == ["1", "2"]
    assert "Hardware watchpoint 3: counter" in out
    assert "exited normally" in out
    assert program_output(stub) == f"counter={increments}\n"


def test_detach_releases_every_slot_for_the_next_gdb(serve):
    stub = serve("watch_regions")
    first = run_gdb(stub.port, ["set breakpoint always-inserted on", "watch pair",
                                        "watch *(char(*)[3])&bytes[1]", "monitor hwbp", "detach"])
    (held,) = hwbp_reports(first)
    assert len(held.slots) == 4 and {s.owner for s in held.slots} == {"gdb"}
    assert "detached" in first
    second = run_gdb(stub.port, ["monitor hwbp", "info breakpoints",
                                         *[f"watch quad[{i}]" for i in range(4)], *["continue"] * 5])
    free = hwbp_reports(second)[0]
    assert free.slots == [] and free.dr7 & 0xFF == 0
    assert "No breakpoints or watchpoints." in second
    assert events(second) == [f"W:quad[{i}]" for i in range(4)]
    assert [new for _, new in write_reports(second, "quad[3]")] == ["103"]
    assert "exited normally" in second


def test_a_vanished_gdb_leaves_no_slot_held(serve):
    """gdb killed mid-continue (no z packets, no detach): the server alone must give the slots back."""
    stub = serve("watch_spin", options=("--log-packets",))
    gdb = subprocess.Popen(gdb_args(stub.port, ["watch watched", "continue"]), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        resumed = wait_for(lambda: any("<- b'vCont;c" in line for line in stub.stderr_lines), timeout=30)
        time.sleep(0.5)
        still_running = gdb.poll() is None
    finally:
        gdb.kill()
        first = gdb.communicate(timeout=10)[0]
    assert resumed and still_running, first
    assert re.search(r"<- b'Z2,[0-9a-f]+,8'\n.*-> b'OK'", stub.stderr_text())       # armed when gdb vanished
    assert wait_for(lambda: any("client disconnected" in line for line in stub.stderr_lines), timeout=10)
    second = run_gdb(stub.port, ["monitor hwbp", "set var release = 1", "watch watched", "continue",
                                         "continue"])
    free = hwbp_reports(second)[0]
    assert free.slots == [] and free.dr7 & 0xFF == 0
    assert int_steps(write_reports(second, "watched")) == [(0, 42)]
    assert "exited normally" in second


def test_monitor_hwbp_lists_slots_and_debug_registers(serve):
    stub = serve("watch_regions", once=True)
    out = run_gdb(stub.port, ["set breakpoint always-inserted on", "monitor hwbp",
                                      "print &quad[0]", "print &quad[1]", "watch quad[0]", "awatch quad[1]",
                                      "hbreak main", "monitor hwbp", "kill"])
    empty, armed = hwbp_reports(out)
    assert empty.slots == [] and empty.dr6 == DR6_RESET and empty.dr7 & 0xFF == 0
    main = int(re.search(r"Hardware assisted breakpoint 3 at (0x[0-9a-f]+)", out).group(1), 16)
    rows = {(s.address, s.length, s.kind) for s in armed.slots}
    assert rows == {(address_of(out, 1), 8, "W"), (address_of(out, 2), 8, "RW"), (main, 8, "X")}
    assert sorted(s.name for s in armed.slots) == ["DR0", "DR1", "DR2"]
    assert {s.owner for s in armed.slots} == {"gdb"} and {s.hits for s in armed.slots} == {0}
    assert_dr7_encodes(armed)
