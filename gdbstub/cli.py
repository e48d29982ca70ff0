"""The command line: `gdbstub serve`, `gdbstub trace`, `gdbstub perf stat`.

Errors are one line and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from importlib import resources

import trio

log = logging.getLogger("gdbstub")

DEBUG_ARCHES = ("x86", "virt")     # the names target.machine.make_debug_arch takes


def demo_program() -> str:
    """The bundled demo ELF, shipped inside the package (no compiler needed)."""
    return str(resources.files("gdbstub.demo").joinpath("demo"))


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a program to gdb over the remote protocol")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=1234, help="TCP port (default 1234; 0 picks a free one)")
    p.add_argument("--stdio", action="store_true",
                   help="speak the protocol on stdin/stdout (gdb: target remote | gdbstub serve --stdio PROG)")
    p.add_argument("--once", action="store_true", help="exit after the first client leaves")
    p.add_argument("--log-packets", action="store_true", help="log every packet to stderr")
    p.add_argument("--debug-arch", choices=DEBUG_ARCHES, default="x86",
                   help="x86: the faithful 4-slot DR0-DR7 model; virt: 16 slots, any length, read watchpoints")
    p.add_argument("program", nargs="?", help="static x86-64 ELF to serve (default: the bundled demo)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the program")


def _build_machine(args, stdout):
    from .target.elf import ElfLoadError
    from .target.machine import Machine

    program = args.program or demo_program()
    try:
        return Machine(program, [program, *args.args], debug_arch=args.debug_arch, stdout=stdout)
    except (ElfLoadError, OSError) as exc:
        raise SystemExit(f"gdbstub: {exc}") from None


async def _serve_tcp(args, machine) -> None:
    from .rsp.server import Server

    try:
        listeners = await trio.open_tcp_listeners(args.port, host=args.host)
    except OSError as exc:
        raise SystemExit(f"gdbstub: cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = listeners[0].socket.getsockname()[:2]
    print(f"gdbstub: serving {machine.exec_path} on {host}:{port}", flush=True)
    print(f'gdbstub: connect with: gdb -ex "target remote {host}:{port}"', flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the remote protocol has no authentication", args.host)
    await Server(machine, once=args.once, log_packets=args.log_packets).serve_tcp(listeners)


async def _serve_stdio(args, machine) -> None:
    from .rsp.server import Connection

    stream = trio.StapledStream(trio.lowlevel.FdStream(os.dup(1)), trio.lowlevel.FdStream(os.dup(0)))
    await Connection(stream, machine, log_packets=args.log_packets).serve()


def serve(args) -> int:
    # With --stdio, stdout carries the protocol: the program's output goes to stderr.
    stdout = sys.stderr.buffer if args.stdio else None
    machine = _build_machine(args, stdout)
    try:
        trio.run(_serve_stdio if args.stdio else _serve_tcp, args, machine)
    except* KeyboardInterrupt:      # Ctrl-C: from inside the listeners' nursery it comes as a group
        pass
    return 0


def _run_to_end(machine, progress, every: float) -> str:
    """Run the program without a debugger until it ends; a fatal signal ends it as Linux would.
    Every `every` seconds a line on stderr says what `progress()` says."""
    from .target.events import StopKind

    ticker = threading.Event()

    def report() -> None:
        while not ticker.wait(every):
            print(f"gdbstub: still running: {progress()}", file=sys.stderr, flush=True)

    threading.Thread(target=report, daemon=True).start()
    try:
        while True:
            event = machine.run(step=False)
            if event.kind is StopKind.EXITED:
                return f"exited with status {event.status}"
            if event.kind is StopKind.KILLED:
                return f"killed by signal {event.signal}"
            if event.kind is StopKind.SIGNAL:
                log.info("the program got signal %d (%s)", event.signal, event.reason or "no detail")
                ended = machine.deliver_signal(event.signal)
                if ended is not None:
                    return f"killed by signal {ended.signal}"
    finally:
        ticker.set()


def trace(args) -> int:
    """`gdbstub trace PROGRAM --filter SYM:OP ...`: the ksym tracer over a whole run."""
    machine = _build_machine(args, None)
    tracer = machine.tracer()
    for entry in args.filter:
        try:
            tracer.write_filter(entry)
        except OSError as exc:
            raise SystemExit(f"gdbstub: trace filter {entry!r}: {exc.strerror}") from None
    ending = _run_to_end(machine, lambda: f"{len(tracer.records())} accesses recorded", args.progress)
    sys.stdout.flush()
    print(tracer.trace(), end="")
    print()
    print(tracer.profile(), end="")
    print(f"gdbstub: {os.path.basename(machine.exec_path)} {ending}", file=sys.stderr)
    return 0


def perf_stat(args) -> int:
    """`gdbstub perf stat -e EVENT ... PROGRAM`: exact breakpoint hit counts, like perf stat."""
    from .perf import PerfSession

    machine = _build_machine(args, None)
    try:
        session = PerfSession(machine.core, args.event, task=machine.process,
                              symbols=machine.process.elf.symbols)
    except ValueError as exc:
        raise SystemExit(f"gdbstub: {exc}") from None
    with session:
        ending = _run_to_end(machine, lambda: ", ".join(f"{c.name}={c.count}" for c in session.counters),
                             args.progress)
    sys.stdout.flush()
    command = " ".join([machine.exec_path, *args.args])
    print(session.format_stat(command), end="", file=sys.stderr)
    print(f"gdbstub: {os.path.basename(machine.exec_path)} {ending}", file=sys.stderr)
    return 0


def _program_arguments(parser) -> None:
    parser.add_argument("--debug-arch", choices=DEBUG_ARCHES, default="x86", help=argparse.SUPPRESS)
    parser.add_argument("--progress", type=_positive_seconds, default=5.0, metavar="SECONDS",
                        help="how often a progress line goes to stderr while the program runs (default 5)")
    parser.add_argument("program", help="static x86-64 ELF to run")
    parser.add_argument("args", nargs="*", help="arguments for the program (after -- if they start with -)")


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= threading.TIMEOUT_MAX:      # (inf, nan and 1e300 cannot be waited for)
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return seconds


def _trace_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdbstub trace",
                                description="run a program under the ksym tracer and print what it recorded")
    p.add_argument("--filter", action="append", default=[], metavar="SYMBOL:OP",
                   help="rw- (reads and writes) or -w- (writes) on a symbol; repeatable")
    _program_arguments(p)
    return p


def _perf_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdbstub perf stat",
                                description="count breakpoint events over a whole run, like perf stat")
    p.add_argument("-e", "--event", action="append", required=True, metavar="mem:ADDR[/LEN][:rwx]",
                   help="an event; ADDR may be a symbol of the program; repeatable")
    _program_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="gdbstub: %(message)s", stream=sys.stderr)
    argv = argv[1:] if verbose else argv
    # trace and perf take options after the program too, so they parse intermixed.
    if argv[:1] == ["trace"]:
        return trace(_trace_parser().parse_intermixed_args(argv[1:]))
    if argv[:2] == ["perf", "stat"]:
        return perf_stat(_perf_parser().parse_intermixed_args(argv[2:]))
    parser = argparse.ArgumentParser(prog="gdbstub", description=__doc__,
                                     epilog="also: gdbstub trace ..., gdbstub perf stat ... (see their --help)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("trace", help="run a program under the ksym tracer (gdbstub trace --help)")
    sub.add_parser("perf", help="perf stat -e mem:... PROGRAM (gdbstub perf stat --help)")
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.error(f"usage: see gdbstub {args.command} --help")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
