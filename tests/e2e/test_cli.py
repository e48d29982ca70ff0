"""The command line's one-line errors: a person sees what is wrong and the exit status is 1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.programs.build import build, have_compiler

from .stub import SERVER_EXIT_GRACE, SERVER_START_TIMEOUT, StubProcess, run_gdb


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gdbstub", "serve", "--once", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_program(tmp_path):
    line = one_error_line(serve(str(tmp_path / "nothing-here")))
    assert line.startswith("gdbstub: ") and "no such file" in line


def test_the_test_helper_reports_a_server_that_exited_without_waiting(tmp_path):
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not start: gdbstub: .*no such file"):
        StubProcess(str(tmp_path / "nothing-here"))
    assert time.monotonic() - started < SERVER_START_TIMEOUT / 2     # not the start timeout


def test_serve_says_where_it_listens_and_once_ends_with_its_client(need_gdb):
    stub = StubProcess(str(build("counter")), once=True)
    try:
        lines = "".join(stub.stdout_lines)
        assert f"on 127.0.0.1:{stub.port}" in lines                         # the default host
        assert f'gdbstub: connect with: gdb -ex "target remote 127.0.0.1:{stub.port}"' in lines
        run_gdb(stub.port, ["detach"])
        assert stub.proc.wait(SERVER_EXIT_GRACE) == 0                       # --once: gone, cleanly
    finally:
        stub.stop()


def test_not_an_elf(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert "not an ELF" in one_error_line(serve(str(text)))


def test_dynamically_linked_program_is_refused_with_the_reason():
    if not have_compiler():
        pytest.skip("gcc is not installed (.ci/run installs it)")
    dynamic = build("hello", flags=["-g", "-O0"])
    assert "dynamic loader" in one_error_line(serve(str(dynamic)))


def test_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(serve("--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


def test_port_out_of_range():
    result = serve("--port", "99999")
    assert result.returncode == 2 and "not a TCP port" in result.stderr
