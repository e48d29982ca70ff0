"""The oracle: the same gdb commands against native gdbserver (real CPU, real DR0-DR7) and against our
stub must print the same thing. Only pids, stack/environment addresses and gdb's file-transfer lines are
normalised (tests/e2e/oracle.py); program values, pcs, counts and Old/New values are compared as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from tests.programs.build import build

from .oracle import GDBSERVER, Transcript, assert_same, code_bytes, function_ranges, run_both, write_script

pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(GDBSERVER is None, reason="gdbserver is not installed (.ci/run installs it)"),
]


@pytest.fixture
def oracle(need_gdb):
    """oracle("prog", args, commands) -> (gdbserver's transcript, our stub's transcript)."""

    def compare(name: str, args: list[str], commands: list[str], timeout: float = 60):
        return run_both(build(name), args, commands, timeout=timeout)

    return compare


# ----------------------------------------------------------------------------- 1. stepping
STEPS = 1000
CHECKPOINT_EVERY = 250
# Every general register except rsp and rbp, whose values are stack addresses.
CHECKPOINT_REGISTERS = "rax rbx rcx rdx rsi rdi r8 r9 r10 r11 r12 r13 r14 r15 rip eflags cs ss mxcsr"
COMPUTE_FUNCTIONS = ("main", "clear_scratch_registers", "stack_shuffle", "copy_bytes", "mix", "classify",
                     "smooth")


def stepped_pcs(transcript: Transcript) -> list[int]:
    return [int(pc, 16) for pc in re.findall(r"^pc (0x[0-9a-f]+)$", transcript.gdb, re.MULTILINE)]


def assert_covers_what_it_claims(program: Path, pcs: list[int]) -> None:
    """The stepped stretch stays in the program's own code and holds the instruction kinds it is for."""
    own = function_ranges(program, COMPUTE_FUNCTIONS)
    strays = [hex(pc) for pc in pcs if not any(pc in span for span in own.values())]
    assert not strays, f"stepping left the program's own functions at {strays[:5]}"
    disassembler = Cs(CS_ARCH_X86, CS_MODE_64)
    mnemonics = set()
    for pc in set(pcs):
        instruction = next(disassembler.disasm(code_bytes(program, pc, 16), pc, 1))
        mnemonics.add(instruction.mnemonic + " " + instruction.op_str)
    text = "\n".join(mnemonics)
    for kind in (r"^push ", r"^pop ", r"^call ", r"^ret", r"^jmp r",            # jmp r..: the jump table
                 r"xmm", r"^rep stosq", r"^imul ", r"^rol "):
        assert re.search(kind, text, re.MULTILINE), f"no {kind!r} among the stepped instructions"


def test_stepi_1000_from_main_visits_the_same_pcs_with_the_same_registers(oracle, tmp_path):
    program = build("oracle_compute")
    script = write_script(tmp_path, "step", [
        "break main",
        "continue",
        "set $steps = 0",
        f"while $steps < {STEPS}",
        "  stepi",
        '  printf "pc %#lx\\n", $pc',
        "  set $steps = $steps + 1",
        f"  if $steps % {CHECKPOINT_EVERY} == 0",
        f"    info registers {CHECKPOINT_REGISTERS}",
        "    p $xmm0.v2_int64",
        "    p $xmm1.v2_int64",
        "    p $xmm2.v2_int64",
        "  end",
        "end",
    ])
    native, ours = oracle("oracle_compute", [], [f"source {script}", "delete", "continue"], timeout=90)

    pcs = stepped_pcs(native)
    assert len(pcs) == STEPS, native.raw_gdb[-2000:]
    assert_covers_what_it_claims(program, pcs)
    assert native.program_output.startswith("acc=")
    assert_same(native, ours)


def test_a_stepped_pushf_sees_the_trap_flag(oracle):
    native, ours = oracle("oracle_trapflag", [], [
        "break read_flags", "continue", "stepi", "stepi", "p ($rax >> 8) & 1", "delete", "continue",
    ])
    assert "stepped TF=1 continued TF=0" in native.program_output
    assert_same(native, ours)


# ----------------------------------------------------------------------------- 2. watchpoints
def test_watch_counter_old_new_values_and_stop_locations(oracle):
    native, ours = oracle("oracle_watch", ["4"], ["watch counter"] + ["continue"] * 5)
    assert native.gdb.count("Old value =") == 4 and "exited normally" in native.gdb
    assert_same(native, ours)


def test_rwatch_falls_back_to_an_access_watch_filtered_by_value(oracle):
    # x86 has no read-only debug register type: gdbserver refuses Z3, gdb inserts Z4 and shows a hit
    # only when the value did not change. Our stub must lead gdb to exactly the same visible stops.
    native, ours = oracle("oracle_watch", ["3"],
                          ["break touch_shared", "continue", "rwatch shared"] + ["continue"] * 15)
    # 5 accesses a round, the value-changing writes of rounds 1 and 2 filtered out, + main's final read.
    assert native.gdb.count("Hardware read watchpoint 2: shared\n\nValue =") == 5 + 4 + 4 + 1
    assert "exited normally" in native.gdb
    assert_same(native, ours)


def test_awatch_reports_reads_and_changes(oracle):
    native, ours = oracle("oracle_watch", ["3"],
                          ["break touch_shared", "continue", "awatch shared"] + ["continue"] * 17)
    # 5 accesses a round + main's final read: a change shows Old/New (the last write of rounds 1 and
    # 2), every other access "Value =".
    assert native.gdb.count("Value =") == 14 and native.gdb.count("Old value =") == 2
    assert "exited normally" in native.gdb
    assert_same(native, ours)


def test_hbreak_on_a_function_in_a_loop(oracle):
    native, ours = oracle("oracle_watch", ["6"],
                          ["hbreak tick"] + ["continue"] * 5 + ["info breakpoints", "delete", "continue"])
    assert native.gdb.count("Breakpoint 1, tick (i=") == 5
    assert "breakpoint already hit 5 times" in native.gdb
    assert_same(native, ours)


def test_watch_on_a_16_byte_struct_takes_two_slots(oracle):
    native, ours = oracle("oracle_watch", ["2"], ["watch wide"] + ["continue"] * 5)
    assert native.gdb.count("Old value = {lo =") == 4
    assert_same(native, ours)


def test_watch_on_3_bytes_at_an_odd_address(oracle):
    # buf sits at offset 1: the server splits it into aligned 1- and 2-byte pieces; stores to the bytes
    # just below and above it must not stop.
    native, ours = oracle("oracle_watch", ["2"], ["print &odd.buf", "watch odd.buf"] + ["continue"] * 5)
    assert re.search(r"\$1 = \(char \(\*\)\[3\]\) 0x[0-9a-f]*[13579bdf] <odd\+1>", native.gdb)
    assert native.gdb.count("Old value =") == 4
    assert_same(native, ours)


def test_watch_on_a_lock_add_counter(oracle):
    native, ours = oracle("oracle_watch", ["4"], ["watch locked"] + ["continue"] * 5)
    assert native.gdb.count("Old value =") == 4 and "locked=12" in native.program_output
    assert_same(native, ours)


@pytest.mark.parametrize("command,continues", [
    ("watch ld", 4), ("watch pair", 4), ("watch state.image[20]", 4),
    ("awatch ld", 8),            # each round's fldt read and fstpt write, then printf's read
])
def test_watch_on_stores_unicorn_makes_in_a_c_helper(oracle, command, continues):
    # fstpt, lock cmpxchg16b and fxsave64 store from inside a C helper, where a store to a
    # write-protected page is dropped: the stub must stop before each and step it under the watch.
    native, ours = oracle("watch_helper_stores", ["3"], [command] + ["continue"] * continues)
    assert native.gdb.count("Old value =") == 3 and "neighbour=9" in native.program_output
    assert_same(native, ours)


def test_watch_sees_a_helper_store_in_code_the_program_mapped_while_running(oracle):
    # mmap, copy the code in, mprotect it executable, call it: one run, scanned at the mprotect
    native, ours = oracle("watch_mapped_code", [], ["watch target", "continue", "continue"])
    assert native.gdb.count("Old value = 0") == 1 and "target=1.0" in native.program_output
    assert_same(native, ours)


def test_watch_on_a_long_double_on_the_stack(oracle):
    # fstpt through rbp: where it stores is known only when it runs ("next" first: from 0, not from
    # whatever the stack held)
    native, ours = oracle("watch_helper_stores", ["3"],
                          ["break accumulate", "continue", "next", "watch local"] + ["continue"] * 5)
    assert native.gdb.count("Old value =") == 3 and "left the block" in native.gdb
    assert "sum=0.75" in native.program_output
    assert_same(native, ours)


def test_too_many_watchpoints_fail_at_resume_like_the_four_debug_registers(oracle):
    # counter, locked (1 slot each) + wide (2) fill DR0-DR3; odd.buf needs 2 more.
    native, ours = oracle("oracle_watch", ["2"], [
        "watch counter", "watch locked", "watch wide", "watch odd.buf", "continue",
        "delete 4", "continue", "continue", "delete", "continue",
    ])
    assert "Could not insert hardware watchpoint 4." in native.gdb
    assert native.gdb.count("Hardware watchpoint 1: counter\n\nOld value") == 2
    assert_same(native, ours)


# ----------------------------------------------------------------------------- 3. signals
@pytest.mark.parametrize(("program", "stop_line"), [
    ("segv", "Program received signal SIGSEGV, Segmentation fault."),
    ("abort", "Program received signal SIGABRT, Aborted."),
    ("oracle_divzero", "Program received signal SIGFPE, Arithmetic exception."),
])
def test_fatal_signal_stops_at_the_same_instruction(oracle, program, stop_line):
    native, ours = oracle(program, [], ["continue", "x/i $pc", "info registers rip", "continue"])
    assert stop_line in native.gdb and "Program terminated with signal" in native.gdb
    assert_same(native, ours)


def test_siginfo_of_a_segfault(oracle):
    native, ours = oracle("segv", [], [
        "continue", "p $_siginfo.si_signo", "p $_siginfo.si_code", "p $_siginfo._sifields._sigfault.si_addr",
        "kill",
    ])
    assert "$1 = 11" in native.gdb and "$2 = 1" in native.gdb and "$3 = (void *) 0x0" in native.gdb
    assert_same(native, ours)


@pytest.mark.parametrize("program", ["oracle_divzero", "abort"])
def test_siginfo_of_other_signals(oracle, program):
    # SIGFPE: FPE_INTDIV at the faulting pc; SIGABRT from abort(): SI_TKILL by the program itself.
    native, ours = oracle(program, [], [
        "continue", "p $_siginfo.si_signo", "p $_siginfo.si_code",
        "p $_siginfo._sifields._sigfault.si_addr == $pc", "kill",
    ])
    assert "$1 = " in native.gdb and "$2 = " in native.gdb
    assert_same(native, ours)
