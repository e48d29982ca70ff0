"""`monitor ...` commands (gdb's qRcmd), one small function each.

Each takes the Machine and the rest of the command line and returns the text
to show; gdb prints it verbatim.
"""

from __future__ import annotations

from typing import Callable

from .hwbp.attr import TYPE_NAMES


def _help(machine, args: str) -> str:
    lines = ["monitor commands:"]
    for name, (_, usage) in sorted(COMMANDS.items()):
        lines.append(f"  {usage}")
    return "\n".join(lines) + "\n"


_DISAS_MAX = 1000   # the monitor runs on the server's event loop: keep one command short


def _address(machine, word: str) -> int:
    """A number, `$pc`, or a symbol of the program (gdb passes monitor text through unexpanded)."""
    if word in ("$pc", "pc"):
        return machine.cpu.pc
    try:
        return int(word, 0)
    except ValueError:
        return machine.process.elf.symbols[word].addr


def _disas(machine, args: str) -> str:
    from .target.disasm import disassemble

    words = args.split()
    try:
        addr = _address(machine, words[0]) if words else machine.cpu.pc
        count = min(int(words[1], 0), _DISAS_MAX) if len(words) > 1 else 10
    except (ValueError, KeyError):
        return "usage: monitor disas [ADDR|SYMBOL|$pc] [COUNT]\n"
    lines = disassemble(machine.read_memory, addr, count, symbolize=machine.symbolize)
    return "\n".join(lines) + "\n"


def _hwbp(machine, args: str) -> str:
    """The debug-register slots of the emulated CPU and who holds them."""
    core = machine.core
    cpu = machine.CPU
    lines = [f"{'cpu':<4}{'slot':<8}{'address':<20}{'len':<5}{'type':<6}{'owner':<8}{'hits':>8}"]
    # Each slot looked up once: installed ones in slot order, then the rest.
    placed = [(core.slot_of(bp, cpu), bp) for bp in core.breakpoints()]
    for slot, bp in sorted(placed, key=lambda pair: (pair[0] is None, pair[0] or 0)):
        where = core.arch.slot_name(slot) if slot is not None else "-"
        attr = bp.attr
        lines.append(f"{cpu:<4}{where:<8}{attr.bp_addr:#018x}  {attr.bp_len:<5}"
                     f"{TYPE_NAMES.get(attr.bp_type, '?'):<6}{bp.owner:<8}{bp.count:>8}")
    if len(lines) == 1:
        lines.append("(no hardware breakpoints)")
    lines.append(core.arch.describe_registers(core.registers(cpu)))
    return "\n".join(lines) + "\n"


def _ksym(machine, args: str) -> str:
    """Show the ksym filter, or write one entry to it (like echo ... > ksym_trace_filter)."""
    tracer = machine.tracer()
    if not args:
        return tracer.read_filter() or "(the filter is empty)\n"
    try:
        tracer.write_filter(args)
    except OSError as exc:
        return f"ksym: {args}: {exc.strerror}\n"
    return tracer.read_filter() or "(the filter is empty)\n"


def _ksym_profile(machine, args: str) -> str:
    return machine.tracer().profile()


def _trace(machine, args: str) -> str:
    return machine.tracer().trace()


def _perf(machine, args: str) -> str:
    """`perf EVENT...` starts counting (per task, never stopping); `perf` shows counts; `perf off` stops."""
    from .perf import PerfSession

    if args == "off":
        for session in machine.perf_sessions:
            session.close()
        machine.perf_sessions.clear()
        return "perf: all counters released\n"
    if args:
        try:
            session = PerfSession(machine.core, args.split(), task=machine.process,
                                  symbols=machine.process.elf.symbols)
        except ValueError as exc:
            return f"perf: {exc}\n"
        session.open()
        machine.perf_sessions.append(session)
    if not machine.perf_sessions:
        return "perf: no counters (monitor perf mem:ADDR[/LEN][:rwx] ...)\n"
    return "".join(session.format_stat(machine.exec_path) for session in machine.perf_sessions)


COMMANDS: dict[str, tuple[Callable[..., str], str]] = {
    "help": (_help, "help                      this list"),
    "hwbp": (_hwbp, "hwbp                      debug-register slots: owner, address, hits; raw DR6/DR7"),
    "ksym": (_ksym, "ksym [SYMBOL:rw-|-w-|---]  show or change the ksym tracer's filter"),
    "ksym_profile": (_ksym_profile, "ksym_profile              hits per traced symbol"),
    "trace": (_trace, "trace                     the ksym tracer's recorded accesses"),
    "perf": (_perf, "perf [EVENT...|off]       count mem:ADDR[/LEN][:rwx] events; show counts"),
    "disas": (_disas, "disas [ADDR] [COUNT]      disassemble COUNT instructions (ADDR: number, symbol, $pc)"),
}


def run_monitor_command(machine, line: str) -> str:
    name, _, args = line.strip().partition(" ")
    entry = COMMANDS.get(name)
    if entry is None:
        return f"unknown monitor command {name!r}; try 'monitor help'\n"
    return entry[0](machine, args.strip())
