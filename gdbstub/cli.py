"""`gdbstub serve ...`: the command line. Errors are one line and exit status 1."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources

import trio

log = logging.getLogger("gdbstub")


def demo_program() -> str:
    """The bundled demo ELF, shipped inside the package (no compiler needed)."""
    return str(resources.files("gdbstub.demo").joinpath("demo"))


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve a program to gdb over the remote protocol")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1234, help="TCP port (default 1234; 0 picks a free one)")
    p.add_argument("--stdio", action="store_true",
                   help="speak the protocol on stdin/stdout (gdb: target remote | gdbstub serve --stdio PROG)")
    p.add_argument("--once", action="store_true", help="exit after the first client leaves")
    p.add_argument("--log-packets", action="store_true", help="log every packet to stderr")
    p.add_argument("--debug-arch", choices=("x86", "virt"), default="x86",
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
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gdbstub", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="gdbstub: %(message)s", stream=sys.stderr)
    return {"serve": serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
