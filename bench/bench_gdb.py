"""Through-gdb benchmarks: trio-gdbstub next to gdbserver and qemu-x86_64 -g.

Every workload drives the real gdb (or, for b, a raw RSP client) against each server and
prints the median of K runs, with ours divided by each peer on the same line, in the same
workloads as the peers' table in /work/shared/README.md:

  a  stepi/s            break at work(), then N `stepi` in a gdb while loop
  b  m round trips/s    raw RspClient, no-ack mode, N requests `m<addr>,1`
  c  MiB/s              `dump binary memory` of a 1 MiB static array
  d  ms                 wall time of `gdb -batch -ex "target remote :PORT"`, no local file
  e  hits/s             `watch counter` + N `continue`
  f0 s                  the long loop with no watchpoint
  f  ratio              the same loop with 1 armed, never-firing watchpoint / unarmed
  g  ratio              the same with 4 armed watchpoints / unarmed

    python bench/bench_gdb.py [--quick] [--runs K] [--only a,b] [--servers ours,gdbserver]
                              [--taskset] [--loop-iterations N]

Times come from gdb itself (its Python `time.perf_counter()` around the measured commands),
so gdb's start-up and the connection are never inside a figure except in d, where they are
the figure. Every subprocess has a timeout; a failed workload prints its error and the
script goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
GDB = shutil.which("gdb")
HOST = "127.0.0.1"
MIB = 1 << 20
BUFFER_SIZE = MIB                  # bench/programs/memory.c: BUFFER_SIZE
SERVER_START_TIMEOUT = 30.0        # ours imports unicorn + trio: slow on a loaded machine
SERVER_EXIT_GRACE = 2.0
GDB_ENV = {**os.environ, "DEBUGINFOD_URLS": "", "PYTHONUNBUFFERED": "1"}
NOT_AVAILABLE = "not available"


class BenchError(Exception):
    """A workload run failed; the message is printed in place of the figure."""


class Cannot(BenchError):
    """The server lacks the feature the workload needs (e.g. hardware watchpoints)."""


# ---------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class Config:
    runs: int = 3
    steps: int = 2000              # a
    reads: int = 2000              # b
    connect_runs: int = 11         # d: one connect varies by a fifth here; 11 each, servers in turn
    hits: int = 1000               # e
    loop_iterations: int = 50_000_000   # f, g: as in the peers' table
    gdb_timeout: float = 120.0
    loop_timeout: float = 300.0    # one f/g run; our emulated 50M loop takes seconds
    software_watch_fallback: bool = True   # e on a stub without Z2: time gdb's software watchpoints

    @classmethod
    def quick(cls, loop_iterations: int | None) -> Config:
        return cls(runs=1, steps=300, reads=500, connect_runs=3, hits=100,
                   loop_iterations=loop_iterations or 5_000_000, gdb_timeout=60.0, loop_timeout=60.0)


# ---------------------------------------------------------------- test programs


def build_programs(cache_dir: Path) -> dict[str, Path]:
    """gcc -static -g -O0 each bench/programs/*.c; cached by a hash of the source."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    built = {}
    for source in sorted(PROGRAMS_DIR.glob("*.c")):
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
        target = cache_dir / f"{source.stem}-{digest}"
        if not target.exists():
            partial = target.with_suffix(".tmp")
            result = subprocess.run(["gcc", "-static", "-g", "-O0", "-o", str(partial), str(source)],
                                    capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise SystemExit(f"bench: cannot build {source.name}:\n{result.stderr}")
            partial.rename(target)   # atomic: a concurrent run never sees half a binary
        built[source.stem] = target
    return built


def elf_symbol_and_byte(path: Path, name: str) -> tuple[int, int]:
    """The address of symbol `name` and the byte the ELF file holds there."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        symbols = elf.get_section_by_name(".symtab").get_symbol_by_name(name) or []
        if not symbols:
            raise BenchError(f"{path.name} has no symbol {name!r}")
        address = symbols[0]["st_value"]
        for segment in elf.iter_segments("PT_LOAD"):
            offset = address - segment["p_vaddr"]
            if 0 <= offset < segment["p_filesz"]:
                stream.seek(segment["p_offset"] + offset)
                return address, stream.read(1)[0]
    raise BenchError(f"{name} at {address:#x} is not in a file-backed segment of {path.name}")


def memory_pattern() -> bytes:
    """What memory.c writes into buffer[]: byte i = (i * 131) ^ (i >> 8)."""
    return bytes(((i * 131) ^ (i >> 8)) & 0xFF for i in range(BUFFER_SIZE))


# ---------------------------------------------------------------- servers


class ServerKind:
    """How to start one kind of stub; subclasses know their command line and readiness sign."""

    key = ""
    label = ""
    executable = ""

    def missing(self) -> str | None:
        if shutil.which(self.executable) is None:
            return f"{self.executable} is not installed"
        return None

    def command(self, program: Path, args: list[str], port: int) -> list[str]:
        raise NotImplementedError

    def requested_port(self) -> int:
        return 0

    def ready_port(self, log_text: str, requested: int) -> int | None:
        """The port the server listens on, once it does; None while it is still starting."""
        raise NotImplementedError


class OurStub(ServerKind):
    key, label, executable = "ours", "ours", sys.executable
    _serving = re.compile(r"serving .* on \S+:(\d+)")

    def command(self, program, args, port):
        return [sys.executable, "-m", "gdbstub", "serve", "--port", str(port), "--once", str(program), *args]

    def ready_port(self, log_text, requested):
        match = self._serving.search(log_text)
        return int(match.group(1)) if match else None


class GdbServer(ServerKind):
    key, label, executable = "gdbserver", "gdbserver", "gdbserver"
    _listening = re.compile(r"Listening on port (\d+)")

    def command(self, program, args, port):
        return ["gdbserver", f"{HOST}:{port}", str(program), *args]

    def ready_port(self, log_text, requested):
        match = self._listening.search(log_text)
        return int(match.group(1)) if match else None


class Qemu(ServerKind):
    key, label, executable = "qemu", "qemu-x86_64", "qemu-x86_64"

    def command(self, program, args, port):
        return ["qemu-x86_64", "-g", str(port), str(program), *args]

    def requested_port(self) -> int:
        # qemu-user cannot pick a port itself; a probe connection would be taken for gdb's
        # (it accepts one client), so readiness is read from /proc/net/tcp instead.
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            return probe.getsockname()[1]

    def ready_port(self, log_text, requested):
        return requested if is_listening(requested) else None


SERVER_KINDS: dict[str, ServerKind] = {kind.key: kind for kind in (OurStub(), GdbServer(), Qemu())}


def is_listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":   # 0A = TCP_LISTEN
                return True
    return False


@contextmanager
def serving(kind: ServerKind, program: Path, args: list[str], run_dir: Path) -> Iterator[int]:
    """Start one server for one run; yield its port; make sure it and its program are gone after."""
    log_path = run_dir / f"{kind.key}-{time.monotonic_ns()}.log"
    requested = kind.requested_port()
    with open(log_path, "wb") as log:
        # A session of its own, so the server and the program it spawned end together.
        proc = subprocess.Popen(kind.command(program, args, requested), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while (port := kind.ready_port(log_path.read_text(errors="replace"), requested)) is None:
            if proc.poll() is not None:
                raise BenchError(f"{kind.label} exited with status {proc.returncode}: "
                                 f"{last_lines(log_path.read_text(errors='replace'))}")
            if time.monotonic() > deadline:
                raise BenchError(f"{kind.label} did not listen within {SERVER_START_TIMEOUT:.0f} s")
            time.sleep(0.01)
        try:
            yield port
        except BenchError as exc:
            # "Remote connection closed" says little: the server's last words say why.
            finish(proc)
            log_text = log_path.read_text(errors="replace")
            raise type(exc)(f"{exc}; {kind.label} said: {last_lines(log_text, 5)}") from None
    finally:
        finish(proc)


def finish(proc: subprocess.Popen) -> None:
    """Let the server exit by itself (gdb killed its program), else end its session."""
    try:
        proc.wait(SERVER_EXIT_GRACE)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(SERVER_EXIT_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------- gdb


def last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("BENCH ")]
    return " | ".join(lines[-count:]) or "(no output)"


def run_gdb(commands: list[str], run_dir: Path, timeout: float) -> str:
    """Run gdb -batch on a script file (an error stops the script, so later markers go missing)."""
    script = run_dir / "bench.gdb"
    script.write_text("\n".join(["set pagination off", "set confirm off", "set width 0", *commands]) + "\n")
    try:
        result = subprocess.run([GDB, "-batch", "-nx", "-x", str(script)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", timeout=timeout, env=GDB_ENV)
    except subprocess.TimeoutExpired:
        raise BenchError(f"gdb did not finish within {timeout:g} s") from None
    return result.stdout


def connect(program: Path, port: int) -> list[str]:
    # The local file gives gdb its symbols without a vFile transfer (qemu-user has none).
    return [f"file {program}", f"target remote {HOST}:{port}"]


def markers(output: str, *required: str) -> dict[str, str]:
    """The `BENCH key value` lines the script printed; a missing one means a command failed."""
    found = dict(re.findall(r"^BENCH (\S+) (.*)$", output, re.MULTILINE))
    absent = [key for key in required if key not in found]
    if absent:
        refused = re.search(r"Could not insert hardware (?:watchpoint|breakpoint)s?[^\n]*", output)
        if refused:
            raise Cannot(f"no hardware watchpoints ({refused.group(0).strip()})")
        raise BenchError(f"gdb stopped before {absent[0]}: {last_lines(output)}")
    return found


START_CLOCK = "python import time; bench_t0 = time.perf_counter()"
STOP_CLOCK = 'python print("BENCH elapsed %.9f" % (time.perf_counter() - bench_t0))'


def gdb_loop(count: int, body: str) -> list[str]:
    return ["set $bench_i = 0", f"while $bench_i < {count}", body, "set $bench_i = $bench_i + 1", "end"]


def gdb_against(kind: ServerKind, program: Path, args: list[str], commands: list[str], run_dir: Path,
                timeout: float, *required: str) -> tuple[str, dict[str, str]]:
    """Serve `program`, run gdb's `commands` after connecting; return its output and markers.

    The markers are checked while the server is still up, so a failure carries its last words.
    """
    with serving(kind, program, args, run_dir) as port:
        output = run_gdb([*connect(program, port), *commands], run_dir, timeout)
        return output, markers(output, *required)


# ---------------------------------------------------------------- workloads
# Each takes (server kind, config, programs, run dir), runs once and returns one figure.


@dataclasses.dataclass
class Figure:
    value: float
    detail: str = ""        # e.g. the pc after stepping, compared across servers
    flag: str = ""          # shown next to the value, e.g. "sw" for software watchpoints


def bench_stepi(kind, config, programs, run_dir) -> Figure:
    _, found = gdb_against(kind, programs["step"], [], [
        "break work", "continue", START_CLOCK, *gdb_loop(config.steps, "stepi"), STOP_CLOCK,
        r'printf "BENCH pc %#lx\n", $pc',
        'python print("BENCH function " + str(gdb.selected_frame().name()))',
    ], run_dir, config.gdb_timeout, "elapsed", "pc", "function")
    if found["function"] != "work":
        raise BenchError(f"stepping left work(): now in {found['function']}")
    return Figure(config.steps / float(found["elapsed"]), detail=found["pc"])


def bench_m_reads(kind, config, programs, run_dir) -> Figure:
    import trio

    from gdbstub.rsp.client import RspClient
    from gdbstub.rsp.errors import Unsupported

    program = programs["step"]
    address, expected_byte = elf_symbol_and_byte(program, "work")
    expected = b"%02x" % expected_byte

    async def round_trips(port: int) -> float:
        with trio.fail_after(config.gdb_timeout):
            async with await RspClient.connect(HOST, port) as client:
                await client.request(b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")
                try:
                    await client.no_ack()     # as gdb does: no '+' per packet
                    acked = False
                except Unsupported:           # qemu 7.2: gdb, too, then acks every packet
                    acked = True
                await client.request(b"?")
                request = b"m%x,1" % address
                start = time.perf_counter()
                for _ in range(config.reads):
                    reply = await client.request(request)
                    if reply != expected:
                        raise BenchError(f"m{address:x},1 answered {reply!r}, the ELF holds {expected!r}")
                elapsed = time.perf_counter() - start
                await client.send_packet(b"k")    # the server ends the program (no reply to k)
                return elapsed, acked

    with serving(kind, program, [], run_dir) as port:
        try:
            elapsed, acked = trio.run(round_trips, port)
        except trio.TooSlowError:
            raise BenchError(f"no answer within {config.gdb_timeout:g} s") from None
    return Figure(config.reads / elapsed, flag="acks" if acked else "")


def bench_memory_read(kind, config, programs, run_dir) -> Figure:
    dump = run_dir / "buffer.bin"
    dump.unlink(missing_ok=True)
    _, found = gdb_against(kind, programs["memory"], [], [
        "break ready", "continue", START_CLOCK,
        # dump splits its arguments at spaces: no space inside the expressions
        f"dump binary memory {dump} &buffer[0] &buffer[{BUFFER_SIZE}]", STOP_CLOCK,
    ], run_dir, config.gdb_timeout, "elapsed")
    if not dump.exists() or dump.read_bytes() != memory_pattern():
        raise BenchError("the dumped bytes differ from what memory.c wrote")
    return Figure(BUFFER_SIZE / MIB / float(found["elapsed"]))


def bench_connect(kind, config, programs, run_dir) -> Figure:
    """Wall time of one whole gdb run that only connects, with no local file (a fresh server)."""
    program = programs["step"]
    with serving(kind, program, [], run_dir) as port:
        start = time.perf_counter()
        try:
            result = subprocess.run([GDB, "-batch", "-nx", "-ex", f"target remote {HOST}:{port}"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace",
                                    timeout=config.gdb_timeout, env=GDB_ENV)
        except subprocess.TimeoutExpired:
            raise BenchError(f"gdb did not finish within {config.gdb_timeout:g} s") from None
        elapsed = time.perf_counter() - start
    # gdb shows the first stop as "0x... in _start ()" (or "... in ?? ()" without symbols).
    if not re.search(r"^0x[0-9a-f]+ in ", result.stdout, re.MULTILINE):
        raise BenchError(f"gdb showed no stop after connecting: {last_lines(result.stdout)}")
    return Figure(elapsed * 1000)


def bench_watch_hits(kind, config, programs, run_dir) -> Figure:
    try:
        return _watch_hits(kind, config, programs, run_dir, hardware=True)
    except Cannot:
        if not config.software_watch_fallback:
            raise
    figure = _watch_hits(kind, config, programs, run_dir, hardware=False)
    figure.flag = "sw"
    return figure


def _watch_hits(kind, config, programs, run_dir, *, hardware: bool) -> Figure:
    kind_of_watch = [] if hardware else ["set can-use-hw-watchpoints 0"]
    _, found = gdb_against(kind, programs["counter"], [], [
        "break main", "continue", "delete", *kind_of_watch, "watch counter", START_CLOCK,
        *gdb_loop(config.hits, "continue"), STOP_CLOCK, r'printf "BENCH counter %d\n", counter',
    ], run_dir, config.gdb_timeout, "elapsed", "counter")
    # Each round writes counter once, so N stops must leave it at exactly N.
    if int(found["counter"]) != config.hits:
        raise BenchError(f"counter is {found['counter']} after {config.hits} watchpoint stops")
    return Figure(config.hits / float(found["elapsed"]))


def loop_run(kind, config, programs, run_dir, watchpoints: int) -> float:
    """Seconds for the loop to run to exit with `watchpoints` armed write watchpoints."""
    arm = [f"watch never_page[{slot}]" for slot in range(watchpoints)]
    # One stepi inserts the watchpoints: a stub without Z2 fails here, before the long run
    # (gdb would otherwise fall back to single-stepping 50M iterations).
    probe = ["stepi"] if watchpoints else []
    output, found = gdb_against(kind, programs["loop"], [str(config.loop_iterations)], [
        "break main", "continue", "delete", *arm, *probe, START_CLOCK, "continue", STOP_CLOCK,
    ], run_dir, config.loop_timeout, "elapsed")
    if watchpoints and output.count("Hardware watchpoint") < watchpoints:
        raise Cannot("gdb set software watchpoints, not hardware ones")
    if "Old value = " in output:     # gdb prints it only when a watchpoint triggers
        raise BenchError("a watchpoint on never_page fired, but the loop never writes it")
    if "exited normally" not in output:
        raise BenchError(f"the loop did not run to its exit: {last_lines(output)}")
    return float(found["elapsed"])


# ---------------------------------------------------------------- running and printing


@dataclasses.dataclass
class Row:
    key: str
    title: str
    unit: str
    digits: int
    cells: dict[str, Figure | str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


class Table:
    def __init__(self, servers: list[ServerKind]) -> None:
        self.servers = servers
        self.peers = [kind for kind in servers if kind.key != "ours"]
        self.has_ours = any(kind.key == "ours" for kind in servers)

    def header(self) -> str:
        cells = [f"{'workload':<50}", f"{'unit':<9}", *(f"{kind.label:>15}" for kind in self.servers)]
        if self.has_ours:
            cells += [f"{'ours/' + kind.label:>22}" for kind in self.peers]
        return " ".join(cells)

    def line(self, row: Row) -> str:
        def cell(kind: ServerKind) -> str:
            value = row.cells.get(kind.key, "-")
            if isinstance(value, Figure):
                return fmt(value.value, row.digits) + (f" ({value.flag})" if value.flag else "")
            return value

        cells = [f"{row.key + '  ' + row.title:<50}", f"{row.unit:<9}",
                 *(f"{cell(kind):>15}" for kind in self.servers)]
        if self.has_ours:
            ours = row.cells.get("ours")
            for peer in self.peers:
                theirs = row.cells.get(peer.key)
                if isinstance(ours, Figure) and isinstance(theirs, Figure) and theirs.value:
                    cells.append(f"{ours.value / theirs.value:>21.2f}x")
                else:
                    cells.append(f"{'-':>22}")
        return " ".join(cells)


class Samples:
    """The runs of one figure on one server: values, and the errors of the runs that failed."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.errors: list[str] = []
        self.cannot = ""

    def take(self, once: Callable[[], Figure]) -> None:
        if self.cannot:
            return
        try:
            self.figures.append(once())
        except Cannot as exc:
            self.cannot = str(exc)
        except BenchError as exc:
            self.errors.append(str(exc))
        except Exception as exc:   # a bug in one run must not end the whole benchmark
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def median(self) -> float:
        return statistics.median(figure.value for figure in self.figures)

    def put(self, row: Row, kind: ServerKind, value: Callable[[], float] | None = None) -> None:
        """Write the cell (the median, or `value()` if given) and the notes for this server."""
        if self.cannot:
            row.cells[kind.key] = "cannot"
            row.notes.append(f"{kind.label}: cannot: {self.cannot}")
            return
        for error in dict.fromkeys(self.errors):
            row.notes.append(f"{kind.label}: failed: {error}")
        if not self.figures:
            row.cells[kind.key] = "failed"
            return
        flags = [flag for flag in dict.fromkeys(figure.flag for figure in self.figures) if flag]
        if self.errors:
            # A partial median is shown, but marked: a flaky server must not look clean.
            flags.append(f"{len(self.errors)} failed")
        details = sorted({figure.detail for figure in self.figures if figure.detail})
        row.cells[kind.key] = Figure(value() if value else self.median(), ",".join(details), ", ".join(flags))


SIMPLE_WORKLOADS = {
    # key: (title, unit, digits, function)
    "a": ("stepi in a gdb while loop", "steps/s", 0, bench_stepi),
    "b": ("1-byte m reads, raw client, no-ack", "reads/s", 0, bench_m_reads),
    "c": ("1 MiB memory read (dump binary memory)", "MiB/s", 1, bench_memory_read),
    "d": ("gdb start to exit, target remote, no file", "ms", 0, bench_connect),
    "e": ("watch counter + continues", "hits/s", 0, bench_watch_hits),
}
ALL_WORKLOADS = "abcdefg"


def run_simple(key: str, servers, unavailable, config, programs, run_dir) -> list[Row]:
    title, unit, digits, function = SIMPLE_WORKLOADS[key]
    count = {"a": config.steps, "b": config.reads, "e": config.hits}.get(key)
    row = Row(key, title + (f" (N={count:,})" if count else ""), unit, digits)
    samples = {kind.key: Samples() for kind in servers if kind.key not in unavailable}
    # Each round runs every server in turn, so that the machine's drift spreads over all of them.
    for _ in range(config.connect_runs if key == "d" else config.runs):
        for kind in servers:
            if kind.key in samples:
                samples[kind.key].take(lambda kind=kind: function(kind, config, programs, run_dir))
    for kind in servers:
        if kind.key in samples:
            samples[kind.key].put(row, kind)
        else:
            row.cells[kind.key] = NOT_AVAILABLE
    if key == "a":
        ends = {k: f.detail for k, f in row.cells.items() if isinstance(f, Figure)}
        if len(set(ends.values())) > 1:
            row.notes.append(f"different pc after {config.steps} steps: {ends}")
    return [row]


def run_loop(keys: str, servers, unavailable, config, programs, run_dir) -> list[Row]:
    """f0, f and g share the unarmed baseline; each round runs the cases in turn to spread drift."""
    base = Row("f0", f"{config.loop_iterations:,}-iteration loop, no watchpoint", "s", 3)
    cases = {0: base}
    if "f" in keys:
        cases[1] = Row("f", "same loop, 1 armed watchpoint / unarmed", "ratio", 2)
    if "g" in keys:
        cases[4] = Row("g", "same loop, 4 armed watchpoints / unarmed", "ratio", 2)
    for kind in servers:
        if kind.key in unavailable:
            for row in cases.values():
                row.cells[kind.key] = NOT_AVAILABLE
            continue
        samples = {count: Samples() for count in cases}
        for _ in range(config.runs):
            for count, sample in samples.items():
                fewer = [samples[c].cannot for c in samples if 0 < c < count and samples[c].cannot]
                if fewer:
                    sample.cannot = fewer[0]   # more slots cannot work where fewer did not
                sample.take(lambda: Figure(loop_run(kind, config, programs, run_dir, count)))
        unarmed = samples[0]
        unarmed.put(base, kind)
        for count, row in cases.items():
            if count == 0:
                continue
            if unarmed.figures or samples[count].cannot:
                samples[count].put(row, kind, lambda: samples[count].median() / unarmed.median())
            else:
                row.cells[kind.key] = "failed"
                row.notes.append(f"{kind.label}: failed: no unarmed run to divide by")
    return list(cases.values())


def preflight_ours(config: Config, programs, run_dir) -> str | None:
    """None if our server answers gdb; otherwise why our column says 'not available'."""
    try:
        gdb_against(SERVER_KINDS["ours"], programs["step"], [], ["stepi", r'printf "BENCH pc %#lx\n", $pc'],
                    run_dir, min(config.gdb_timeout, 60.0), "pc")
    except BenchError as exc:
        return str(exc)
    return None


def machine_lines(config: Config, servers: list[ServerKind], pinned: bool) -> list[str]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return out.splitlines()[0].strip() if out else "?"

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines = [
        f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine:  nproc {os.cpu_count()}, {model}, {platform.system()} {platform.release()}, "
        f"load average {load}",
        f"tools:    {version([GDB, '--version'])}; python {platform.python_version()}",
    ]
    for kind in servers:
        if kind.key == "gdbserver":
            lines.append(f"          {version(['gdbserver', '--version'])}")
        elif kind.key == "qemu":
            lines.append(f"          {version(['qemu-x86_64', '--version'])}")
    lines.append(f"runs:     median of {config.runs} (d: median of {config.connect_runs} connects); "
                 + ("gdb, servers and client pinned to CPU 0 (taskset -c 0)" if pinned else "not pinned"))
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced smoke run: fewer iterations, one run each (under a minute)")
    parser.add_argument("--runs", type=int, help="runs per figure, reported as the median (default 3)")
    parser.add_argument("--only", default=ALL_WORKLOADS, help="workloads to run, e.g. a,b (default all: a-g)")
    parser.add_argument("--servers", default=",".join(SERVER_KINDS),
                        help="servers to compare (default ours,gdbserver,qemu)")
    parser.add_argument("--taskset", action="store_true",
                        help="pin gdb, the servers and the raw client to CPU 0, as taskset -c 0 would")
    parser.add_argument("--loop-iterations", type=int, help="f/g loop length (default 50M; --quick 5M)")
    parser.add_argument("--build-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "trio-gdbstub-bench", help="where the programs are built (cached by source hash)")
    args = parser.parse_args(argv)
    args.only = args.only.replace(",", "").strip()
    unknown = set(args.only) - set(ALL_WORKLOADS)
    if unknown or not args.only:
        parser.error(f"--only takes letters from {ALL_WORKLOADS}, got {args.only!r}")
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    if set(args.servers) - set(SERVER_KINDS) or not args.servers:
        parser.error(f"--servers takes names from {','.join(SERVER_KINDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if GDB is None:
        raise SystemExit("bench: gdb is not installed")
    config = Config.quick(args.loop_iterations) if args.quick else Config()
    if args.runs:
        config = dataclasses.replace(config, runs=args.runs)
    if args.loop_iterations:
        config = dataclasses.replace(config, loop_iterations=args.loop_iterations)
    if args.taskset:
        os.sched_setaffinity(0, {0})   # inherited by every gdb and server started from here

    servers = [SERVER_KINDS[key] for key in SERVER_KINDS if key in args.servers]
    print("\n".join(machine_lines(config, servers, args.taskset)), flush=True)
    programs = build_programs(args.build_dir)

    unavailable: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gdb-") as tmp:
        run_dir = Path(tmp)
        for kind in servers:
            reason = kind.missing() or (preflight_ours(config, programs, run_dir) if kind.key == "ours" else None)
            if reason:
                unavailable[kind.key] = reason
                print(f"note:     {kind.label} {NOT_AVAILABLE}: {reason}", flush=True)
        table = Table(servers)
        print("\n" + table.header(), flush=True)
        if table.has_ours and table.peers:
            print("      ours/peer is ours divided by the peer's figure: above 1 is better for rates (/s),"
                  " worse for times (s, ms) and ratios", flush=True)
        for key in args.only:
            if key in "fg" and key != min(set(args.only) & set("fg")):
                continue   # f and g run together, in one pass over the loop
            started = time.monotonic()
            if key in SIMPLE_WORKLOADS:
                rows = run_simple(key, servers, unavailable, config, programs, run_dir)
            else:
                rows = run_loop(args.only, servers, unavailable, config, programs, run_dir)
            for row in rows:
                print(table.line(row), flush=True)
                for note in row.notes:
                    print(f"      {note}", flush=True)
            print(f"      ({key if key in SIMPLE_WORKLOADS else 'f0/f/g'} took "
                  f"{time.monotonic() - started:.1f} s)", flush=True)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end: {load}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
