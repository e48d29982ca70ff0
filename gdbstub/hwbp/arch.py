"""What the core needs from an architecture's debug registers.

The core (core.py) never touches a register bit: it asks the arch to validate
attributes (hw_breakpoint_arch_parse), to install/uninstall a breakpoint in a
per-CPU register image, and to record which slots fired. This mirrors the split
between kernel/events/hw_breakpoint.c and arch/x86/kernel/hw_breakpoint.c.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable
from errno import EBUSY
from typing import TYPE_CHECKING, Any, Protocol

from .attr import BreakpointAttr, WatchSlot
from .errors import HwBreakpointError

if TYPE_CHECKING:
    from .core import Breakpoint

log = logging.getLogger("gdbstub.hwbp")

# Slot pools (include/linux/hw_breakpoint.h). An arch with one shared pool
# (CONFIG_HAVE_MIXED_BREAKPOINTS_REGS, e.g. x86) only ever uses TYPE_DATA.
TYPE_INST = 0
TYPE_DATA = 1

# x86-64 with 4-level paging: the first address user space cannot map.
TASK_SIZE_MAX = (1 << 47) - 4096

ADDRESS_LIMIT = 1 << 64


class ArchInfo(Protocol):
    """The arch's translation of a BreakpointAttr (Linux: struct arch_hw_breakpoint)."""

    address: int

    @property
    def generic_len(self) -> int: ...


class DebugArch(abc.ABC):
    """The arch hooks the core calls; one instance serves every CPU."""

    name: str = "abstract"
    #: One pool for instruction and data breakpoints (x86's HAVE_MIXED_BREAKPOINTS_REGS).
    mixed_slots: bool = True
    #: Addresses at or above this are kernel space (arch_check_bp_in_kernelspace).
    task_size_max: int = TASK_SIZE_MAX

    @property
    def supported(self) -> bool:
        """False models !CONFIG_HAVE_HW_BREAKPOINT: every registration is ENOSYS."""
        return any(self.hw_breakpoint_slots(t) > 0 for t in (TYPE_INST, TYPE_DATA))

    @abc.abstractmethod
    def hw_breakpoint_slots(self, slot_type: int) -> int:
        """Slots per CPU in the pool `slot_type` (TYPE_INST or TYPE_DATA)."""

    def hw_breakpoint_weight(self, attr: BreakpointAttr) -> int:
        """Slots one breakpoint consumes (Linux's weak default: 1)."""
        return 1

    @abc.abstractmethod
    def hw_breakpoint_arch_parse(self, attr: BreakpointAttr) -> ArchInfo:
        """Validate `attr` and translate it; raise HwBreakpointError on refusal."""

    def arch_check_bp_in_kernelspace(self, info: ArchInfo) -> bool:
        """Whether any byte of the breakpoint lies in kernel space."""
        end = info.address + info.generic_len - 1
        return info.address >= self.task_size_max or end >= self.task_size_max

    def ip_in_kernel(self, ip: int) -> bool:
        """Whether a hit at `ip` happened in kernel mode (for exclude_user/kernel)."""
        return ip >= self.task_size_max

    # --- the per-CPU register image -------------------------------------------------

    @abc.abstractmethod
    def new_registers(self) -> Any:
        """A fresh, reset register image for one CPU."""

    @abc.abstractmethod
    def install(self, regs: Any, bp: Breakpoint) -> int:
        """Claim the first free slot for `bp`; return its index (EBUSY if none: a bug)."""

    @abc.abstractmethod
    def uninstall(self, regs: Any, bp: Breakpoint) -> None:
        """Release `bp`'s slot and disable it in the image."""

    # Every register image keeps Linux's per-CPU bp_per_reg table as `regs.owners`.
    def claim_slot(self, regs: Any, bp: Breakpoint, pool: Iterable[int]) -> int:
        """The first free slot of `pool`, now owned by `bp` (arch_install_hw_breakpoint's search).

        Accounting guarantees room; a full pool is a bug (Linux WARNs and returns EBUSY).
        """
        for slot in pool:
            if regs.owners[slot] is None:
                regs.owners[slot] = bp
                return slot
        raise HwBreakpointError(EBUSY, "can't find any breakpoint slot (accounting bug)")

    def release_slot(self, regs: Any, bp: Breakpoint) -> int | None:
        """Free the slot `bp` owns and return it (None, with a warning, if it owns none)."""
        slot = self.slot_of(regs, bp)
        if slot is None:
            log.warning("uninstall of a breakpoint that holds no slot: %r", bp)
            return None
        regs.owners[slot] = None
        return slot

    def slot_of(self, regs: Any, bp: Breakpoint) -> int | None:
        """The slot `bp` occupies in this image, or None."""
        for slot, owner in enumerate(regs.owners):
            if owner is bp:
                return slot
        return None

    def slot_owner(self, regs: Any, slot: int) -> Breakpoint | None:
        """The breakpoint installed in `slot`, or None (a stale status bit)."""
        return regs.owners[slot] if 0 <= slot < len(regs.owners) else None

    @abc.abstractmethod
    def enforced_slots(self, regs: Any) -> list[WatchSlot]:
        """Decode the image: exactly the slots the hardware would enforce."""

    @abc.abstractmethod
    def record_hit(self, regs: Any, slots: tuple[int, ...]) -> None:
        """Set the status bits for `slots` (x86: DR6 Bn); they stay until cleared."""

    @abc.abstractmethod
    def clear_status(self, regs: Any) -> None:
        """Software clears the status register (x86: DR6 = DR6_RESERVED)."""

    def slot_name(self, slot: int) -> str:
        """How a person calls slot `slot` (x86: DR0-DR3)."""
        return f"slot {slot}"

    def describe_registers(self, regs: Any) -> str:
        """The raw control/status values, one line, for `monitor hwbp`."""
        return ""
