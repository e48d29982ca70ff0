"""Helpers that drive the real server and the real gdb, each bounded in time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GDB = shutil.which("gdb")
GDB_TIMEOUT = 60
SERVER_START_TIMEOUT = 20
SERVER_EXIT_GRACE = 5


class ServerProcess:
    """A debug server in a subprocess: its stdout and stderr are collected line by line in threads,
    and it is up once one of its lines matches `port_line` (group 1: the port it listens on)."""

    name = "server"
    port_line: re.Pattern[str]

    def __init__(self, argv: list[str], **popen) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, **popen)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.port = 0
        self._ready_or_gone = threading.Event()
        self._pumps = [threading.Thread(target=self._pump, args=(pipe, lines), daemon=True)
                       for pipe, lines in ((self.proc.stdout, self.stdout_lines),
                                           (self.proc.stderr, self.stderr_lines))]
        for pump in self._pumps:
            pump.start()
        # Set by the port line, or by either pipe's end: a server that exits is seen at once.
        self._ready_or_gone.wait(SERVER_START_TIMEOUT)
        if not self.port:
            self.stop()
            self._join_output()
            raise RuntimeError(f"{self.name} did not start: {self.stderr_text()}")

    def _pump(self, pipe, lines: list[str]) -> None:
        for raw in pipe:
            line = raw.decode(errors="replace")
            lines.append(line)
            if match := self.port_line.search(line):
                self.port = int(match.group(1))
                self._ready_or_gone.set()
        self._ready_or_gone.set()

    def _join_output(self) -> None:
        """Wait until both pipes reached end of file, so the program's last lines are in."""
        for pump in self._pumps:
            pump.join(SERVER_EXIT_GRACE)

    def _wait_or_kill(self) -> None:
        """Give the server SERVER_EXIT_GRACE seconds to end by itself, then kill it."""
        try:
            self.proc.wait(SERVER_EXIT_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(SERVER_EXIT_GRACE)

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class StubProcess(ServerProcess):
    """`gdbstub serve --port 0 ...` in a subprocess."""

    name = "gdbstub"
    port_line = re.compile(r"serving .* on [\d.]+:(\d+)")

    def __init__(self, *args: str, once: bool = False):
        cmd = [sys.executable, "-m", "gdbstub", "serve", "--port", "0"]
        if once:
            cmd.append("--once")
        super().__init__([*cmd, *args], env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def program_output(self) -> str:
        """What the program printed (the server's own lines removed)."""
        return "".join(line for line in self.stdout_lines if not line.startswith("gdbstub: "))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self._wait_or_kill()

    def wait_exit(self) -> None:
        """--once: the stub leaves after gdb does (stop() interrupts it if it did not); then all it
        printed is read, so that the program's last lines are in before they are compared."""
        try:
            self.proc.wait(SERVER_EXIT_GRACE)
        except subprocess.TimeoutExpired:
            self.stop()
        self._join_output()


def gdb_args(port: int, commands: list[str], *, file: str | None = None) -> list[str]:
    args = [GDB, "-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off"]
    if file:
        args += ["-ex", f"file {file}"]
    args += ["-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    return args


def run_gdb(port: int, commands: list[str], *, file: str | None = None, timeout: float = GDB_TIMEOUT) -> str:
    """Run gdb in batch mode against the stub; its stdout and stderr merged in the order gdb wrote them
    (it flushes stdout before it writes to stderr), so an error shows where it happened."""
    result = subprocess.run(gdb_args(port, commands, file=file), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return result.stdout


def run_gdb_interrupting(port: int, commands: list[str], *, after: float, timeout: float = GDB_TIMEOUT) -> str:
    """Like run_gdb, but send gdb a SIGINT (a user's Ctrl-C) `after` seconds in."""
    proc = subprocess.Popen(gdb_args(port, commands), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    timer = threading.Timer(after, proc.send_signal, (signal.SIGINT,))
    timer.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"gdb hung; output so far:\n{out}")
    finally:
        timer.cancel()
    return out


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
