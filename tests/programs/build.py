"""Compile the test programs in this directory on demand, once, into tests/programs/build/ (git-ignored),
and run them natively (the oracle) or on the emulated CPU.

`build("hello")` compiles hello.c (or hello.S) and returns the executable's path. The default flags are
`-static -g -O0`; a source overrides them with a `build-flags:` line in its first comment, e.g.
`/* build-flags: -static-pie -fPIE -g -O0 */`. Outputs are keyed by a hash of the source, the flags and
the compiler version, so an edited program is rebuilt and concurrent test runs never see a half file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["PROGRAMS_DIR", "BUILD_DIR", "DEFAULT_FLAGS", "BuildError", "RunResult", "build", "have_compiler",
           "run_emulated", "run_native", "source_of"]

PROGRAMS_DIR = Path(__file__).resolve().parent
BUILD_DIR = PROGRAMS_DIR / "build"
DEFAULT_FLAGS = ("-static", "-g", "-O0")
COMPILER = "gcc"
COMPILE_TIMEOUT_S = 120
_FLAGS_LINE = re.compile(r"build-flags:\s*(.*?)\s*(\*/)?$", re.MULTILINE)


class BuildError(RuntimeError):
    pass


def have_compiler() -> bool:
    return shutil.which(COMPILER) is not None


def source_of(name: str, directory: Path = PROGRAMS_DIR) -> Path:
    for suffix in (".c", ".S"):
        path = directory / f"{name}{suffix}"
        if path.exists():
            return path
    raise BuildError(f"no test program {name!r} in {directory}")


def flags_of(source: bytes) -> tuple[str, ...]:
    head = source[:500].decode("utf-8", "replace")
    match = _FLAGS_LINE.search(head)
    return tuple(match.group(1).split()) if match else DEFAULT_FLAGS


@cache
def _compiler_version() -> str:
    result = subprocess.run([COMPILER, "--version"], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()[0]


def build(name: str, flags: Sequence[str] | None = None, *, directory: Path = PROGRAMS_DIR) -> Path:
    """Path of the compiled program `name` (a source in `directory`); `flags` replaces the source's
    own (e.g. to make a dynamically linked variant)."""
    source = source_of(name, directory)
    text = source.read_bytes()
    chosen = tuple(flags) if flags is not None else flags_of(text)
    key = hashlib.sha256(
        b"\0".join([text, " ".join(chosen).encode(), _compiler_version().encode()])
    ).hexdigest()[:16]
    output = BUILD_DIR / f"{name}-{key}"
    if output.exists():
        return output
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=BUILD_DIR)
    os.close(fd)
    try:
        result = subprocess.run(
            [COMPILER, str(source), "-o", tmp, *chosen],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise BuildError(f"compiling {source.name} with {' '.join(chosen)} failed:\n{result.stderr}")
        os.replace(tmp, output)          # atomic: a parallel run sees the whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


# ----------------------------------------------------------------------------- running them
@dataclass(frozen=True)
class RunResult:
    """How a run ended: `status` (exit code) or `signal` (killed by it), plus what it printed.
    For an emulated run that faulted, `fault` holds the UcError and `pc` where it happened."""

    stdout: bytes
    stderr: bytes
    status: int | None = None
    signal: int | None = None
    fault: Exception | None = None
    pc: int | None = None


def run_native(path: Path, args: Sequence[str] = (), *, argv0: str | None = None,
               env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 10) -> RunResult:
    """The oracle: the same program run by the real kernel, output piped."""
    result = subprocess.run([argv0 or str(path), *args], executable=str(path), env=env or {},
                            input=stdin, capture_output=True, timeout=timeout)
    if result.returncode < 0:
        return RunResult(result.stdout, result.stderr, signal=-result.returncode)
    return RunResult(result.stdout, result.stderr, status=result.returncode)


def run_emulated(path: Path, args: Sequence[str] = (), *, argv0: str | None = None,
                 env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 10,
                 **spawn_options: object) -> RunResult:
    """Run on the emulated CPU with the plainest loop: emu_start until the process reports an exit,
    a fault (UcError) or a signal; a signal stop is then delivered with its default action, as gdb
    does when it passes the signal on. `timeout` bounds the whole run."""
    from unicorn import UcError
    from unicorn.x86_const import UC_X86_REG_RIP

    from gdbstub.target.process import LinuxProcess, ProcessExit

    out, err = io.BytesIO(), io.BytesIO()
    envp = [f"{k}={v}" for k, v in (env or {}).items()]
    proc = LinuxProcess.spawn(path, [argv0 or str(path), *args], envp, out, err, stdin=stdin,
                              **spawn_options)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pc = proc.uc.reg_read(UC_X86_REG_RIP)
        try:
            proc.uc.emu_start(pc, 0, timeout=int((deadline - time.monotonic()) * 1e6) + 1)
        except UcError as exc:
            return RunResult(out.getvalue(), err.getvalue(), fault=exc, pc=proc.uc.reg_read(UC_X86_REG_RIP))
        event = proc.take_event()
        if event is None:
            continue                      # emu_start's own timeout: the deadline check ends the loop
        if isinstance(event, ProcessExit):
            return RunResult(out.getvalue(), err.getvalue(), status=event.status)
        if not event.killed:
            event = proc.deliver_signal(event.signo)
            if event is None:
                continue
        return RunResult(out.getvalue(), err.getvalue(), signal=event.signo)
    raise TimeoutError(f"{path} did not finish within {timeout} s on the emulated CPU")
