"""The oracle: one gdb script run against native gdbserver (the real CPU, real DR0-DR7) and against our
stub, and the two transcripts compared after normalising only what legitimately differs between a real
process and an emulated one (pids, stack/environment addresses, gdb's file-transfer chatter)."""

from __future__ import annotations

import difflib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gdbstub.target.process import DEFAULT_ENV

from .stub import GDB_TIMEOUT, ServerProcess, StubProcess, run_gdb

GDBSERVER = shutil.which("gdbserver")


class GdbserverProcess(ServerProcess):
    """`gdbserver 127.0.0.1:0 PROG ARGS` in a subprocess, the same shape as StubProcess.

    The program gets the stub's default environment and no shell in between (--no-startup-with-shell),
    so both runs start from the same argv and envp; gdbserver's own messages go to stderr and the
    program's stdout stays on stdout."""

    name = "gdbserver"
    port_line = re.compile(r"Listening on port (\d+)")

    def __init__(self, program: str | Path, *args: str):
        if GDBSERVER is None:
            raise RuntimeError("gdbserver is not installed")
        env = dict(entry.split("=", 1) for entry in DEFAULT_ENV)
        super().__init__(
            [GDBSERVER, "--no-startup-with-shell", "127.0.0.1:0", str(program), *args], env=env,
            start_new_session=True,      # a Ctrl-C meant for the test run must not reach it
        )

    def program_output(self) -> str:
        """What the program wrote to stdout (gdbserver itself writes to stderr)."""
        return "".join(self.stdout_lines)

    def stop(self) -> None:
        """gdbserver ends by itself once gdb killed or finished its program; otherwise kill it. Its
        program goes with it: gdbserver traces it with PTRACE_O_EXITKILL."""
        self._wait_or_kill()
        self._join_output()


# ----------------------------------------------------------------------------- normalising
# Stack and environment live just under 0x7ffffffff000 on both sides, but where exactly depends on the
# environment, auxv and padding the kernel (or our loader) chose.
STACK_LOW, STACK_HIGH = 0x7FF000000000, 0x800000000000
_HEX = re.compile(r"0x[0-9a-f]+")
_DECIMAL = re.compile(r"(?<![\w.])\d{15}(?![\w.])")
_DROPPED_LINES = re.compile(r"^Reading .* from remote target\.\.\.$")
_REPLACEMENTS = [
    # gdbserver reports the real pid (multiprocess+); our stub's one process shows as "Remote target".
    (re.compile(r"\[Inferior 1 \((?:process \d+|Remote target)\) "), "[Inferior 1 (<process>) "),
    (re.compile(r"\bThread \d+(?:\.\d+)?\b"), "Thread <tid>"),
    (re.compile(r"\bLWP \d+\b"), "LWP <tid>"),
    (re.compile(r"\bprocess \d+\b"), "process <pid>"),
]


def _stack_hex(match: re.Match[str]) -> str:
    return "0x<stack>" if STACK_LOW <= int(match.group(0), 16) < STACK_HIGH else match.group(0)


def _stack_decimal(match: re.Match[str]) -> str:
    return "<stack>" if STACK_LOW <= int(match.group(0)) < STACK_HIGH else match.group(0)


def normalise(text: str) -> str:
    """The transcript with only the legitimately different parts replaced by placeholders."""
    lines = []
    for line in text.splitlines():
        if _DROPPED_LINES.match(line):
            continue
        for pattern, replacement in _REPLACEMENTS:
            line = pattern.sub(replacement, line)
        line = _HEX.sub(_stack_hex, line)
        line = _DECIMAL.sub(_stack_decimal, line)
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running both
@dataclass(frozen=True)
class Transcript:
    """One side of a comparison: gdb's normalised output and what the program printed."""

    server: str
    gdb: str
    program_output: str
    raw_gdb: str


def run_gdbserver_session(program: Path, args: Sequence[str], commands: list[str], *,
                          timeout: float = GDB_TIMEOUT) -> Transcript:
    with GdbserverProcess(program, *args) as server:
        raw = run_gdb(server.port, commands, timeout=timeout)
        server.stop()
        return Transcript("gdbserver", normalise(raw), server.program_output(), raw)


def run_stub_session(program: Path, args: Sequence[str], commands: list[str], *,
                     timeout: float = GDB_TIMEOUT) -> Transcript:
    with StubProcess(str(program), *args, once=True) as stub:
        raw = run_gdb(stub.port, commands, timeout=timeout)
        stub.wait_exit()
        return Transcript("our stub", normalise(raw), stub.program_output(), raw)


def run_both(program: Path, args: Sequence[str], commands: list[str], *,
             timeout: float = GDB_TIMEOUT) -> tuple[Transcript, Transcript]:
    """The same gdb commands against gdbserver and against our stub, one after the other."""
    native = run_gdbserver_session(program, args, commands, timeout=timeout)
    ours = run_stub_session(program, args, commands, timeout=timeout)
    return native, ours


def unified_diff(native: str, ours: str, what: str) -> str:
    return "".join(difflib.unified_diff(
        native.splitlines(keepends=True), ours.splitlines(keepends=True),
        fromfile=f"gdbserver ({what})", tofile=f"our stub ({what})",
    ))


def assert_same(native: Transcript, ours: Transcript) -> None:
    """Identical gdb transcripts (and program stdout), else a readable unified diff."""
    problems = []
    if native.gdb != ours.gdb:
        problems.append(unified_diff(native.gdb, ours.gdb, "gdb output, normalised"))
    if native.program_output != ours.program_output:
        problems.append(unified_diff(native.program_output, ours.program_output, "program stdout"))
    if problems:
        raise AssertionError("gdbserver and our stub differ:\n" + "\n".join(problems))


def write_script(directory: Path, name: str, lines: Sequence[str]) -> Path:
    """A gdb command file, for what -ex cannot express (while loops)."""
    path = directory / f"{name}.gdb"
    path.write_text("\n".join(lines) + "\n")
    return path


def function_ranges(program: Path, names: Sequence[str]) -> dict[str, range]:
    """[start, end) of each named function, from the ELF symbol table (sizes included)."""
    from elftools.elf.elffile import ELFFile

    ranges: dict[str, range] = {}
    with open(program, "rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        for name in names:
            (symbol,) = symtab.get_symbol_by_name(name)
            ranges[name] = range(symbol["st_value"], symbol["st_value"] + symbol["st_size"])
    return ranges


def code_bytes(program: Path, address: int, length: int) -> bytes:
    """Bytes of the program's file image at a virtual address (for disassembling stepped pcs)."""
    from elftools.elf.elffile import ELFFile

    with open(program, "rb") as stream:
        for segment in ELFFile(stream).iter_segments("PT_LOAD"):
            offset = address - segment["p_vaddr"]
            if 0 <= offset < segment["p_filesz"]:
                stream.seek(segment["p_offset"] + offset)
                return stream.read(min(length, segment["p_filesz"] - offset))
    raise ValueError(f"{address:#x} is not in a file-backed segment of {program.name}")
