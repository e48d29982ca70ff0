"""A second, idealised debug-register arch: the proof that the core is arch-neutral.

VirtDebugArch has a configurable slot count, watches any range of 1..4096 bytes
at any address, has true read-only watchpoints, and execute breakpoints of any
length. `slots=0` models an arch without breakpoint support (ENOSYS). Its image
holds the enforced slots directly, since there is no bit encoding to model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from errno import EINVAL
from typing import TYPE_CHECKING

from .arch import ADDRESS_LIMIT, TYPE_DATA, TYPE_INST, DebugArch
from .attr import (
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    WatchSlot,
)
from .errors import HwBreakpointError

if TYPE_CHECKING:
    from .core import Breakpoint


PAGE_SIZE = 4096
_DATA_TYPES = (HW_BREAKPOINT_R, HW_BREAKPOINT_W, HW_BREAKPOINT_RW)


@dataclass(frozen=True)
class VirtBreakpointInfo:
    address: int
    length: int
    access: int

    @property
    def generic_len(self) -> int:
        return self.length


@dataclass
class VirtDebugRegisters:
    """One CPU's slots: what each enforces, who owns it, and a sticky hit mask."""

    entries: list[WatchSlot | None]
    owners: list[Breakpoint | None]
    status: int = 0  # bit n: slot n matched (like DR6 Bn), sticky until cleared


@dataclass
class VirtDebugArch(DebugArch):
    """`slots` data (or shared) slots; `inst_slots` gives instructions their own pool."""

    slots: int = 16
    inst_slots: int | None = None
    name: str = field(default="virt", init=False)

    def __post_init__(self) -> None:
        if self.slots < 0 or (self.inst_slots is not None and self.inst_slots < 0):
            raise ValueError("slot counts must be >= 0")
        self.mixed_slots = self.inst_slots is None

    @property
    def supported(self) -> bool:
        return self.slots > 0

    def hw_breakpoint_slots(self, slot_type: int) -> int:
        if slot_type not in (TYPE_INST, TYPE_DATA):
            raise ValueError(f"unknown slot type {slot_type}")
        if slot_type == TYPE_INST and self.inst_slots is not None:
            return self.inst_slots
        return self.slots

    def _pool(self, access: int) -> range:
        """Slot indexes serving `access`: data pool first, then the instruction pool."""
        if self.inst_slots is None:
            return range(self.slots)
        if access == HW_BREAKPOINT_X:
            return range(self.slots, self.slots + self.inst_slots)
        return range(self.slots)

    def hw_breakpoint_arch_parse(self, attr: BreakpointAttr) -> VirtBreakpointInfo:
        addr, length = attr.bp_addr, attr.bp_len
        if attr.bp_type not in (*_DATA_TYPES, HW_BREAKPOINT_X):
            raise HwBreakpointError(EINVAL, f"breakpoint type {attr.bp_type:#x} is not R, W, RW or X")
        if length < 1:
            raise HwBreakpointError(EINVAL, f"length {length} is not positive")
        if attr.bp_type != HW_BREAKPOINT_X and length > PAGE_SIZE:
            raise HwBreakpointError(EINVAL, f"length {length} exceeds a page ({PAGE_SIZE})")
        if not 0 <= addr < ADDRESS_LIMIT:
            raise HwBreakpointError(EINVAL, f"address {addr:#x} is outside the 64-bit address space")
        if addr + length > ADDRESS_LIMIT:
            raise HwBreakpointError(EINVAL, f"range {addr:#x}+{length} wraps around the address space")
        return VirtBreakpointInfo(addr, length, attr.bp_type)

    def new_registers(self) -> VirtDebugRegisters:
        total = self.slots + (self.inst_slots or 0)
        return VirtDebugRegisters(entries=[None] * total, owners=[None] * total)

    def install(self, regs: VirtDebugRegisters, bp: Breakpoint) -> int:
        info: VirtBreakpointInfo = bp.info
        slot = self.claim_slot(regs, bp, self._pool(info.access))
        regs.entries[slot] = WatchSlot(slot, info.address, info.length, info.access)
        return slot

    def uninstall(self, regs: VirtDebugRegisters, bp: Breakpoint) -> None:
        slot = self.release_slot(regs, bp)
        if slot is not None:
            regs.entries[slot] = None

    def enforced_slots(self, regs: VirtDebugRegisters) -> list[WatchSlot]:
        return [entry for entry in regs.entries if entry is not None]

    def record_hit(self, regs: VirtDebugRegisters, slots: tuple[int, ...]) -> None:
        for slot in slots:
            if 0 <= slot < len(regs.owners):
                regs.status |= 1 << slot

    def clear_status(self, regs: VirtDebugRegisters) -> None:
        regs.status = 0

    def describe_registers(self, regs: VirtDebugRegisters) -> str:
        return f"{len(regs.entries)} slots, status=0x{regs.status:x}"
