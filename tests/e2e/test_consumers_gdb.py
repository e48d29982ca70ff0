"""The other consumers of the core API, used for real: the CLI tools and gdb's `monitor` beside watchpoints."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.programs.build import build, have_compiler

from .stub import run_gdb

TIMEOUT = 60


def gdbstub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdbstub", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.fixture
def counter_program():
    if not have_compiler():
        pytest.skip("gcc is not installed (.ci/run installs it)")
    return str(build("counter"))


def test_trace_cli_records_every_access_and_profiles_them(counter_program):
    result = gdbstub("trace", counter_program, "3", "--filter", "counter:rw-")
    assert result.returncode == 0, result.stderr
    assert "counter=3" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "counter+0x0/0x4" in line]
    # bump() loads and stores counter once per call (3 calls), then main reads it for printf.
    assert len(lines) == 7
    assert sum("bump+" in line for line in lines) == 6 and "main+" in lines[-1]
    assert re.search(r"^\s+RW\s+counter\s+7$", result.stdout, re.MULTILINE)
    assert "exited with status 0" in result.stderr


def test_trace_cli_refuses_a_read_only_filter(counter_program):
    result = gdbstub("trace", counter_program, "--filter", "counter:r--")
    assert result.returncode == 1
    assert "counter:r--" in result.stderr and "read-only" in result.stderr


def test_perf_stat_counts_exactly_and_shows_refused_events(counter_program):
    result = gdbstub("perf", "stat", "-e", "mem:counter:w", "-e", "mem:counter", "-e", "mem:counter:r",
                     counter_program, "5")
    assert result.returncode == 0, result.stderr
    assert "counter=5" in result.stdout
    assert re.search(r"^\s+5\s+mem:counter:w$", result.stderr, re.MULTILINE)
    assert re.search(r"^\s+11\s+mem:counter$", result.stderr, re.MULTILINE)      # 5 loads + 5 stores + printf's read
    assert re.search(r"<not supported>\s+mem:counter:r\s+\(EINVAL", result.stderr)
    assert "seconds time elapsed" in result.stderr


@pytest.mark.parametrize("tool", [["trace", "--filter", "counter:-w-"], ["perf", "stat", "-e", "mem:counter:w"]])
def test_a_long_run_reports_progress_on_stderr(counter_program, tool):
    result = gdbstub(*tool, "--progress", "0.05", counter_program, "20000")
    assert result.returncode == 0, result.stderr
    progress = re.findall(r"^gdbstub: still running: (.*)$", result.stderr, re.MULTILINE)
    assert progress, result.stderr
    counts = [int(re.search(r"(\d+)", line)[1]) for line in progress]
    assert counts == sorted(counts) and counts[-1] <= 20000         # what is counted so far, growing
    assert "counter=20000" in result.stdout


@pytest.mark.parametrize("interval", ["0", "inf", "nan", "1e300"])
def test_progress_needs_a_positive_interval(counter_program, interval):
    result = gdbstub("perf", "stat", "-e", "mem:counter:w", "--progress", interval, counter_program)
    assert result.returncode == 2 and "not a positive number of seconds" in result.stderr


def test_a_tracer_holding_two_slots_leaves_gdb_exactly_two(serve):
    stub = serve("shared_slots", "4", once=True)
    out = run_gdb(stub.port, [
        "set breakpoint always-inserted on",   # insert at `watch` time, so the refusal shows there
        "monitor ksym counter:rw-",
        "monitor ksym total:-w-",
        "monitor ksym",
        "watch spare",
        "watch last",
        "watch counter",
        "delete 3",
        "continue",
        "continue",
        "delete",
        "break printf",                        # stop before the end: gdb's `monitor` needs the target
        "continue",
        "monitor trace",
        "monitor ksym_profile",
        "continue",
    ])
    assert "total:-w-\ncounter:rw-\n" in out                          # newest first
    assert "Could not insert hardware watchpoint 3." in out
    assert "Could not insert hardware watchpoint 1." not in out
    assert "Could not insert hardware watchpoint 2." not in out
    assert "Old value = 0\nNew value = 1" in out and "Old value = 1\nNew value = 2" in out   # `last`
    assert "exited normally" in out
    # 4 loads + 4 stores in bump, then main reads it for spare and for printf's argument.
    assert re.search(r"^\s+RW\s+counter\s+10$", out, re.MULTILINE)
    assert re.search(r"^\s+W\s+total\s+4$", out, re.MULTILINE)
    assert len(re.findall(r"counter\+0x0/0x4\s+RW\s+bump\+", out)) == 8
    assert "counter=4 total=10 last=4 spare=14" in stub.program_output()   # nothing ran twice


def test_a_perf_counter_counts_beside_gdb_watchpoints(serve):
    stub = serve("shared_slots", "4", once=True)
    out = run_gdb(stub.port, [
        "monitor perf mem:last:w mem:counter:r",
        "watch total",
        "continue",
        "continue",
        "delete",
        "break printf",
        "continue",
        "monitor perf",
        "continue",
    ])
    assert "Old value = 0\nNew value = 1" in out and "Old value = 1\nNew value = 3" in out
    assert "exited normally" in out
    assert re.search(r"^\s+4\s+mem:last:w$", out, re.MULTILINE)
    assert re.search(r"<not supported>\s+mem:counter:r\s+\(EINVAL", out)
    assert "counter=4 total=10 last=4 spare=14" in stub.program_output()
