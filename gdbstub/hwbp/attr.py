"""Generic breakpoint attributes, as in include/uapi/linux/hw_breakpoint.h.

These are arch-neutral: the arch layer (x86.py, virt.py) decides which
combinations it can encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

HW_BREAKPOINT_EMPTY = 0
HW_BREAKPOINT_R = 1
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_RW = HW_BREAKPOINT_R | HW_BREAKPOINT_W
HW_BREAKPOINT_X = 4
HW_BREAKPOINT_INVALID = HW_BREAKPOINT_RW | HW_BREAKPOINT_X

HW_BREAKPOINT_LEN_1 = 1
HW_BREAKPOINT_LEN_2 = 2
HW_BREAKPOINT_LEN_3 = 3
HW_BREAKPOINT_LEN_4 = 4
HW_BREAKPOINT_LEN_5 = 5
HW_BREAKPOINT_LEN_6 = 6
HW_BREAKPOINT_LEN_7 = 7
HW_BREAKPOINT_LEN_8 = 8

# How people write each access type (perf, the ksym tracer, `monitor hwbp`).
TYPE_NAMES = {HW_BREAKPOINT_R: "R", HW_BREAKPOINT_W: "W", HW_BREAKPOINT_RW: "RW", HW_BREAKPOINT_X: "X"}

# x86-64 is LP64: sizeof(long), the only length Linux takes for an execute breakpoint.
SIZEOF_LONG = 8


@dataclass(frozen=True)
class BreakpointAttr:
    """perf_event_attr, reduced to the fields a breakpoint uses."""

    bp_addr: int
    bp_len: int = HW_BREAKPOINT_LEN_4
    bp_type: int = HW_BREAKPOINT_W
    pinned: bool = True
    disabled: bool = False
    sample_period: int = 1
    exclude_kernel: bool = False
    exclude_user: bool = False


@dataclass(frozen=True)
class WatchSlot:
    """One debug-register slot as the hardware enforces it.

    The arch layer decodes its register image (x86: DR0-3 + DR7) into these;
    the emulated CPU (gdbstub/target/debugregs.py) enforces exactly this list.
    `access` is a generic HW_BREAKPOINT_* type: X, W, RW, or R (virt arch only).
    """

    index: int
    addr: int
    length: int
    access: int


@dataclass(frozen=True)
class Hit:
    """What the CPU reports for one debug exception (one instruction).

    `slots` are the slot indexes whose condition matched (DR6 Bn bits);
    `addr`/`size`/`access` describe the first matching access (for data
    breakpoints) or the instruction (for execute breakpoints).
    """

    cpu: int
    task: Hashable | None
    ip: int
    addr: int
    size: int
    access: int
    slots: tuple[int, ...] = ()
    extra: Any = None
