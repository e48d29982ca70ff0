"""The foundation, judged by the real gdb: connect with no local file, then debug as with gdbserver."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

from bench.bench_gdb import memory_pattern
from tests.programs.build import build

from .stub import GDB, StubProcess, repo_root, run_gdb, run_gdb_interrupting


def test_no_local_file_finds_symbols_through_exec_file_and_vfile(serve):
    stub = serve("counter", "3", once=True)
    out = run_gdb(stub.port, ["info symbol main", "info line bump", "kill"])
    assert "from remote target..." in out
    assert "main in section .text" in out
    assert re.search(r'Line \d+ of "[^"]*counter.c" starts at address', out)


def test_break_continue_next_step_finish_bt(serve):
    stub = serve("counter", "3", once=True)
    out = run_gdb(stub.port, [
        "break main", "continue", "next", "next", "step", "bt", "finish", "kill",
    ])
    assert re.search(r"Breakpoint 1, main \(argc=\d+, argv=0x[0-9a-f]+\) at .*counter.c:\d+", out)
    assert re.search(r"bump \(\) at .*counter.c:\d+", out)          # `step` entered bump
    assert re.search(r"#0\s+bump \(\) at .*\n#1\s+0x[0-9a-f]+ in main", out)
    after_finish = out.split("#1 ")[1]
    assert re.search(r"\nmain \(argc=\d+, argv=0x[0-9a-f]+\) at .*counter.c:16\n", after_finish)  # finish returned


def test_info_registers_print_and_set_var_change_the_program(serve):
    stub = serve("counter", "10", once=True)
    out = run_gdb(stub.port, [
        "break bump", "continue", "info registers rip rsp eflags", "print counter",
        "set var counter = 41", "print counter", "print $fs_base != 0", "delete", "continue",
    ])
    assert re.search(r"rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <bump\+\d+>", out)
    assert re.search(r"eflags\s+0x[0-9a-f]+\s+\[", out)
    assert "$1 = 0" in out and "$2 = 41" in out
    assert "$3 = 1" in out                                              # glibc set up TLS
    assert "exited normally" in out
    assert "counter=51" in stub.program_output()                        # 41 + the 10 bumps


def test_x_i_disassembles_at_pc(serve):
    stub = serve("counter", once=True)
    out = run_gdb(stub.port, ["break bump", "continue", "x/8i $pc", "kill"])
    lines = [line for line in out.splitlines() if re.match(r"(=> |   )0x[0-9a-f]+ <\w+(\+\d+)?>:", line)]
    assert len(lines) == 8 and lines[0].startswith("=> 0x") and "<bump+" in lines[0]


def test_a_static_pie_is_debugged_where_it_was_loaded(serve):
    stub = serve("pie", once=True)
    out = run_gdb(stub.port, ["set debug remote 1", "info sharedlibrary", "set debug remote 0",
                              "break main", "continue", "print table_ptr[2]",
                              r'printf "main at %p\n", main', "continue"])
    # gdb takes the library list from the stub (none: the process cannot load one)
    assert re.search(r"Sending packet: \$qXfer:libraries-svr4:read::0,[0-9a-f]+#[0-9a-f]{2}\n"
                     r".*Packet received: l<library-list-svr4 version=\"1.0\"/>\n"
                     r"No shared libraries loaded at this time.", out)
    assert re.search(r"Breakpoint 1, main \(\) at .*pie.c:\d+", out)
    assert "$1 = 3" in out                                          # through the relocated pointer
    gdb_main = re.search(r"^main at (0x[0-9a-f]+)$", out, re.MULTILINE).group(1)
    stub.wait_exit()
    assert f"pie sum 10, main at {gdb_main}," in stub.program_output()


def test_a_large_dump_is_exact_and_a_write_between_two_reads_is_seen(need_gdb, tmp_path):
    """gdb reads 1 MiB as a run of `m` packets; the stub answers each next one made ahead. The
    program is the benchmark's (bench/programs/memory.c): byte i = (i * 131) ^ (i >> 8).
    gdb asks for 0x8000 bytes at a time and gets 0x7ff0 (a packet's worth), so reading 0x8ff0
    bytes ends with `m +0x7ff0,1000`, after which the stub makes the reply to `m +0x8ff0,1000`:
    exactly the next dump's first request, which must still see the write made in between."""
    memory = build("memory", directory=repo_root() / "bench" / "programs")
    whole, head, tail = tmp_path / "whole", tmp_path / "head", tmp_path / "tail"
    with StubProcess("--log-packets", str(memory), once=True) as stub:
        out = run_gdb(stub.port, ["break ready", "continue",
                                  f"dump binary memory {whole} &buffer[0] &buffer[1048576]",
                                  f"dump binary memory {head} &buffer[0] &buffer[0x8ff0]",
                                  "set var buffer[0x8ff5] = 0x5a",
                                  f"dump binary memory {tail} &buffer[0x8ff0] &buffer[0x9ff0]", "kill"])
        stub.wait_exit()
    pattern = memory_pattern()
    assert whole.read_bytes() == pattern, out
    assert "(read ahead)" in stub.stderr_text()
    assert head.read_bytes() == pattern[:0x8ff0], out
    assert tail.read_bytes() == pattern[0x8ff0:0x8ff5] + b"\x5a" + pattern[0x8ff6:0x9ff0], out


def test_exit_code_is_reported(serve):
    stub = serve("exitcode", once=True)
    out = run_gdb(stub.port, ["continue"])
    assert re.search(r"\[Inferior 1 \(.*\) exited with code 052\]", out)


def test_segfault_is_sigsegv_at_the_faulting_store(serve):
    stub = serve("segv", once=True)
    out = run_gdb(stub.port, ["continue", "x/i $pc", "kill"])
    assert "Program received signal SIGSEGV, Segmentation fault." in out
    assert re.search(r"=> 0x[0-9a-f]+ <main\+\d+>:\s+mov", out)        # stopped on the store itself


def test_abort_stops_with_sigabrt_then_kills_with_it(serve):
    stub = serve("abort", once=True)
    out = run_gdb(stub.port, ["continue", "continue"])
    assert "Program received signal SIGABRT, Aborted." in out
    assert "Program terminated with signal SIGABRT, Aborted." in out


def test_ctrl_c_stops_a_spinning_loop(serve):
    stub = serve("spin", once=True)
    out = run_gdb_interrupting(stub.port, ["continue", "print spins > 0", "kill"], after=1.5)
    assert "Program received signal SIGINT, Interrupt." in out
    assert "$1 = 1" in out


def test_detach_and_reconnect_keep_the_program_state(serve):
    stub = serve("counter", "10")
    first = run_gdb(stub.port, ["break bump", "continue", "continue", "continue", "print counter",
                                "print/x $pc", "detach"])
    assert "$1 = 2" in first
    pc = re.search(r"\$2 = (0x[0-9a-f]+)", first).group(1)
    second = run_gdb(stub.port, ["print counter", "print/x $pc", "info breakpoints", "continue"])
    assert "$1 = 2" in second and f"$2 = {pc}" in second
    assert "No breakpoints or watchpoints." in second                   # the first gdb's are gone
    assert "exited normally" in second
    assert "counter=10" in stub.program_output()


def test_the_bundled_demo_gives_the_readme_session(serve):
    stub = serve(None, once=True)                         # `gdbstub serve` with no program
    out = run_gdb(stub.port, ["watch counter", "continue", "continue", "kill"])
    assert "Hardware watchpoint 1: counter" in out
    assert re.search(r"Old value = 0\nNew value = 1\nmain \(\) at .*demo.c:\d+", out), out
    assert re.search(r"Old value = 1\nNew value = 2\n", out), out


def test_gdb_as_a_second_client_is_told_why(serve):
    stub = serve("counter", once=True)
    with socket.create_connection(("127.0.0.1", stub.port)) as first:
        first.settimeout(10)
        first.sendall(b"$qC#b4")                          # the first client, answered and connected
        answer = b""
        while b"#" not in answer:
            chunk = first.recv(64)
            assert chunk, f"the server closed the first connection: {answer!r}"
            answer += chunk
        assert answer.startswith(b"+$QC")
        out = run_gdb(stub.port, [])
    assert "Remote failure reply: E.another debugger is already connected" in out, out


def test_stdio_transport(need_gdb):
    program = build("counter")
    command = f"{sys.executable} -m gdbstub serve --stdio {program} 4"
    result = subprocess.run(
        [GDB, "-batch", "-nx", "-ex", f"target remote | {command}", "-ex", "break bump",
         "-ex", "continue", "-ex", "print counter", "-ex", "delete", "-ex", "continue"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = result.stdout + result.stderr
    assert "Breakpoint 1, bump ()" in out and "$1 = 0" in out
    assert "exited normally" in out
    assert "counter=4" in out        # the program's stdout went to stderr, which gdb passes through


def test_monitor_help_and_disas(serve):
    stub = serve("counter", once=True)
    out = run_gdb(stub.port, ["break bump", "continue", "monitor help", "monitor disas $pc 3",
                              "monitor disas main 2", "monitor disas nosuchsymbol", "monitor frobnicate", "kill"])
    for command in ("disas", "help", "hwbp", "ksym", "ksym_profile", "perf", "trace"):
        assert re.search(rf"^  {command} ", out, re.MULTILINE)
    lines = re.findall(r"^0x[0-9a-f]+ <(\w+)(?:\+(\d+))?>:\t(\S+)", out, re.MULTILINE)
    assert [(fn, op) for fn, _, op in lines] == [("bump", "mov"), ("bump", "add"), ("bump", "mov"),
                                                  ("main", "push"), ("main", "mov")]
    assert "usage: monitor disas" in out
    assert "unknown monitor command 'frobnicate'" in out


def test_a_program_served_through_a_symlink_is_found_by_gdb(need_gdb, tmp_path):
    link = tmp_path / "linked-counter"
    link.symlink_to(build("counter"))
    with StubProcess(str(link), "2", once=True) as stub:
        out = run_gdb(stub.port, ["info symbol bump", "continue"])
    assert "bump in section .text" in out and "exited normally" in out
    assert "counter=2" in stub.program_output()
