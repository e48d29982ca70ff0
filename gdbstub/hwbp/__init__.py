"""The core hardware-breakpoint API, modelled on Linux's hw_breakpoint layer.

Imports neither trio nor unicorn. Consumers (gdb's Z packets, ksym, perf,
ptrace) call BreakpointCore; only the emulated CPU reads the arch's register
image. The arches live in gdbstub.hwbp.x86 and gdbstub.hwbp.virt.
"""

from __future__ import annotations

from .arch import TYPE_DATA, TYPE_INST, DebugArch
from .attr import (
    HW_BREAKPOINT_EMPTY,
    HW_BREAKPOINT_INVALID,
    HW_BREAKPOINT_LEN_1,
    HW_BREAKPOINT_LEN_2,
    HW_BREAKPOINT_LEN_3,
    HW_BREAKPOINT_LEN_4,
    HW_BREAKPOINT_LEN_5,
    HW_BREAKPOINT_LEN_6,
    HW_BREAKPOINT_LEN_7,
    HW_BREAKPOINT_LEN_8,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    Hit,
    WatchSlot,
)
from .core import Breakpoint, BreakpointCore
from .errors import HwBreakpointError

__all__ = [
    "HW_BREAKPOINT_EMPTY",
    "HW_BREAKPOINT_INVALID",
    "HW_BREAKPOINT_LEN_1",
    "HW_BREAKPOINT_LEN_2",
    "HW_BREAKPOINT_LEN_3",
    "HW_BREAKPOINT_LEN_4",
    "HW_BREAKPOINT_LEN_5",
    "HW_BREAKPOINT_LEN_6",
    "HW_BREAKPOINT_LEN_7",
    "HW_BREAKPOINT_LEN_8",
    "HW_BREAKPOINT_R",
    "HW_BREAKPOINT_RW",
    "HW_BREAKPOINT_W",
    "HW_BREAKPOINT_X",
    "TYPE_DATA",
    "TYPE_INST",
    "Breakpoint",
    "BreakpointAttr",
    "BreakpointCore",
    "DebugArch",
    "Hit",
    "HwBreakpointError",
    "WatchSlot",
]
