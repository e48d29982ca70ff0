"""`monitor ...` commands (gdb's qRcmd), one small function each.

Each takes the Machine and the rest of the command line and returns the text
to show; gdb prints it verbatim.
"""

from __future__ import annotations

from typing import Callable


def _help(machine, args: str) -> str:
    lines = ["monitor commands:"]
    for name, (_, usage) in sorted(COMMANDS.items()):
        lines.append(f"  {usage}")
    return "\n".join(lines) + "\n"


def _disas(machine, args: str) -> str:
    from .target.disasm import disassemble

    words = args.split()
    try:
        addr = int(words[0], 0) if words else machine.cpu.pc
        count = int(words[1], 0) if len(words) > 1 else 10
    except ValueError:
        return "usage: monitor disas [ADDR] [COUNT]\n"
    lines = disassemble(machine.read_memory, addr, count, symbolize=machine.symbolize)
    return "\n".join(lines) + "\n"


COMMANDS: dict[str, tuple[Callable[..., str], str]] = {
    "help": (_help, "help                      this list"),
    "disas": (_disas, "disas [ADDR] [COUNT]      disassemble COUNT instructions (default: 10 at pc)"),
}


def run_monitor_command(machine, line: str) -> str:
    name, _, args = line.strip().partition(" ")
    entry = COMMANDS.get(name)
    if entry is None:
        return f"unknown monitor command {name!r}; try 'monitor help'\n"
    return entry[0](machine, args.strip())
