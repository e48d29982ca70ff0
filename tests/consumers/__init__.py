"""Tests of the core API's other consumers: ksym tracer, perf counting, ptrace debug registers.

`access()` plays the emulated CPU's part for unit tests: it decodes what the
register image of a CPU enforces (the DR0-DR3 + DR7 bits, through
core.enforced_slots) and, if the access overlaps a slot, delivers one Hit
for the instruction, as gdbstub/target/debugregs.py does.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from tests.programs.build import build, have_compiler  # noqa: F401  (have_compiler: for the tests)

from gdbstub.hwbp import HW_BREAKPOINT_W, HW_BREAKPOINT_X, BreakpointCore, Hit
from gdbstub.hwbp.x86 import X86DebugArch
from gdbstub.target.debugregs import slot_matches

IP = 0x401136


def core_running(task: Hashable, ncpus: int = 1) -> BreakpointCore:
    """An x86 core whose every CPU runs `task`, so the task's breakpoints are installed."""
    core = BreakpointCore(X86DebugArch(), ncpus=ncpus)
    for cpu in range(ncpus):
        core.set_current_task(cpu, task)
    return core


def matching_slots(core: BreakpointCore, cpu: int, addr: int, size: int, access: int) -> tuple[int, ...]:
    """DR indexes of `cpu` whose condition an access (or an instruction fetch) meets."""
    found = []
    for slot in core.enforced_slots(cpu):
        if access == HW_BREAKPOINT_X:
            if slot.access == HW_BREAKPOINT_X and slot.addr == addr:
                found.append(slot.index)
        elif slot_matches(slot, addr, size, access):   # the emulated CPU's own overlap rule
            found.append(slot.index)
    return tuple(found)


def access(
    core: BreakpointCore,
    addr: int,
    size: int = 4,
    kind: int = HW_BREAKPOINT_W,
    *,
    cpu: int = 0,
    task: Hashable | None = None,
    ip: int = IP,
) -> tuple[tuple[int, ...], bool]:
    """One instruction touches [addr, addr+size): (slots that fired, whether the CPU stops)."""
    slots = matching_slots(core, cpu, addr, size, kind)
    if not slots:
        return (), False
    hit = Hit(cpu=cpu, task=task if task is not None else core.current_task(cpu), ip=ip,
              addr=addr, size=size, access=kind, slots=slots)
    return slots, core.deliver(hit)


# --- programs on the emulated CPU ------------------------------------------------------------

PROGRAMS = Path(__file__).resolve().parent / "programs"


def build_program(name: str) -> Path:
    """Compile programs/<name>.c once, with tests/programs/build.py's scheme (flags from its
    `build-flags:` comment, keyed by content)."""
    return build(name, directory=PROGRAMS)
