"""x86-64 debug registers DR0-DR3, DR6, DR7 (arch/x86/kernel/hw_breakpoint.c).

Parsing follows hw_breakpoint_arch_parse/arch_build_bp_info; the register
image is the real register file, so the emulated CPU can enforce exactly what
DR7 enables (enforced_slots decodes it back with decode_dr7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from errno import EINVAL, EOPNOTSUPP
from typing import TYPE_CHECKING, NamedTuple

from .arch import ADDRESS_LIMIT, TYPE_DATA, TYPE_INST, DebugArch
from .attr import (
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    SIZEOF_LONG,
    BreakpointAttr,
    WatchSlot,
)
from .errors import HwBreakpointError

if TYPE_CHECKING:
    from .core import Breakpoint


HBP_NUM = 4

# arch/x86/include/asm/hw_breakpoint.h: the low nibble is the DR7 field value.
X86_BREAKPOINT_LEN_X = 0x40
X86_BREAKPOINT_LEN_1 = 0x40
X86_BREAKPOINT_LEN_2 = 0x44
X86_BREAKPOINT_LEN_4 = 0x4C
X86_BREAKPOINT_LEN_8 = 0x48
X86_BREAKPOINT_EXECUTE = 0x80
X86_BREAKPOINT_WRITE = 0x81
X86_BREAKPOINT_RW = 0x83

# arch/x86/include/uapi/asm/debugreg.h
DR_TRAP0 = 0x1
DR_TRAP_BITS = 0xF
DR_BUS_LOCK = 0x800
DR_STEP = 0x4000
DR6_RESERVED = 0xFFFF0FF0  # DR6 at reset / when idle

DR_LOCAL_ENABLE = 0x1
DR_GLOBAL_ENABLE = 0x2
DR_ENABLE_SIZE = 2
DR_CONTROL_SHIFT = 16
DR_CONTROL_SIZE = 4
DR_LOCAL_SLOWDOWN = 0x100
DR_GLOBAL_SLOWDOWN = 0x200
DR7_FIXED_1 = 0x400  # bit 10 always reads as 1


_GENERIC_LEN_TO_X86 = {
    1: X86_BREAKPOINT_LEN_1,
    2: X86_BREAKPOINT_LEN_2,
    4: X86_BREAKPOINT_LEN_4,
    8: X86_BREAKPOINT_LEN_8,
}
_X86_LEN_TO_GENERIC = {code: length for length, code in _GENERIC_LEN_TO_X86.items()}
_X86_TYPE_TO_GENERIC = {
    X86_BREAKPOINT_WRITE: HW_BREAKPOINT_W,
    X86_BREAKPOINT_RW: HW_BREAKPOINT_RW,
}


@dataclass(frozen=True)
class X86BreakpointInfo:
    """struct arch_hw_breakpoint: what goes into DRn and DR7."""

    address: int
    len: int  # X86_BREAKPOINT_LEN_*
    type: int  # X86_BREAKPOINT_EXECUTE / WRITE / RW
    mask: int = 0  # AMD range extension; always 0 here (no BPEXT)

    @property
    def generic_len(self) -> int:
        return _X86_LEN_TO_GENERIC[self.len]


class Dr7Slot(NamedTuple):
    """decode_dr7's result: the enable bits (Ln|Gn) and the slot's codes."""

    enabled: int
    len: int
    type: int


# --- stateless bit functions -----------------------------------------------------------


def dr7_slot_bits(slot: int, len_code: int, type_code: int) -> int:
    """Linux __encode_dr7: the R/W+LEN field and the global enable Gn of one slot."""
    field_bits = ((len_code | type_code) & 0xF) << (DR_CONTROL_SHIFT + slot * DR_CONTROL_SIZE)
    return field_bits | (DR_GLOBAL_ENABLE << (slot * DR_ENABLE_SIZE))


def encode_dr7(slot: int, len_code: int, type_code: int) -> int:
    """Linux encode_dr7: the slot's bits plus GE (Linux never uses Ln for its own bps)."""
    return dr7_slot_bits(slot, len_code, type_code) | DR_GLOBAL_SLOWDOWN


def decode_dr7(dr7: int, slot: int) -> Dr7Slot:
    """Linux decode_dr7: (Ln|Gn bits, X86_BREAKPOINT_LEN_*, X86_BREAKPOINT_* type)."""
    field_bits = dr7 >> (DR_CONTROL_SHIFT + slot * DR_CONTROL_SIZE)
    return Dr7Slot(
        enabled=(dr7 >> (slot * DR_ENABLE_SIZE)) & 0x3,
        len=(field_bits & 0xC) | 0x40,
        type=(field_bits & 0x3) | 0x80,
    )


def arch_bp_generic_fields(len_code: int, type_code: int) -> tuple[int, int]:
    """Translate DR7 codes back to (generic length, generic type), as ptrace needs."""
    if type_code == X86_BREAKPOINT_EXECUTE:
        if len_code != X86_BREAKPOINT_LEN_X:
            raise HwBreakpointError(EINVAL, "execute breakpoints need LEN=00 in DR7")
        return SIZEOF_LONG, HW_BREAKPOINT_X
    if type_code not in _X86_TYPE_TO_GENERIC:
        raise HwBreakpointError(EINVAL, f"DR7 R/W code {type_code & 3:#x} is not a breakpoint type")
    if len_code not in _X86_LEN_TO_GENERIC:
        raise HwBreakpointError(EINVAL, f"DR7 LEN code {len_code:#x} is invalid")
    return _X86_LEN_TO_GENERIC[len_code], _X86_TYPE_TO_GENERIC[type_code]


def arch_build_bp_info(attr: BreakpointAttr) -> X86BreakpointInfo:
    """Translate generic (type, len) to x86 codes, in Linux's order of checks."""
    addr, length = attr.bp_addr, attr.bp_len
    if not 0 <= addr < ADDRESS_LIMIT:
        raise HwBreakpointError(EINVAL, f"address {addr:#x} is outside the 64-bit address space")
    if length < 1:  # Linux's wrap check catches this too; say what is wrong
        raise HwBreakpointError(EINVAL, f"length {length} is not 1, 2, 4 or 8")
    if (addr + length - 1) % ADDRESS_LIMIT < addr:
        raise HwBreakpointError(EINVAL, f"range {addr:#x}+{length} wraps around the address space")

    if attr.bp_type == HW_BREAKPOINT_W:
        type_code = X86_BREAKPOINT_WRITE
    elif attr.bp_type == HW_BREAKPOINT_RW:
        type_code = X86_BREAKPOINT_RW
    elif attr.bp_type == HW_BREAKPOINT_X:
        # The DR address is the instruction's first byte: any address, one fixed length.
        if length != SIZEOF_LONG:
            raise HwBreakpointError(
                EINVAL, f"execute breakpoints need length {SIZEOF_LONG} (sizeof(long)), not {length}"
            )
        return X86BreakpointInfo(addr, X86_BREAKPOINT_LEN_X, X86_BREAKPOINT_EXECUTE)
    elif attr.bp_type == HW_BREAKPOINT_R:
        raise HwBreakpointError(EINVAL, "x86 has no read-only watchpoints")
    else:
        raise HwBreakpointError(EINVAL, f"breakpoint type {attr.bp_type:#x} has no x86 encoding")

    if length in _GENERIC_LEN_TO_X86:
        return X86BreakpointInfo(addr, _GENERIC_LEN_TO_X86[length], type_code)
    # Other lengths would need the AMD range extension.
    if length & (length - 1):
        raise HwBreakpointError(EINVAL, f"length {length} is not 1, 2, 4 or 8")
    if addr & (length - 1):
        raise HwBreakpointError(EINVAL, f"length {length} needs {length}-byte alignment")
    # The emulated CPU does not have X86_FEATURE_BPEXT.
    raise HwBreakpointError(
        EOPNOTSUPP, f"length {length} needs the AMD breakpoint extension (BPEXT)"
    )


def hw_breakpoint_arch_parse(attr: BreakpointAttr) -> X86BreakpointInfo:
    """arch_build_bp_info plus the alignment rule DRn must obey for data breakpoints."""
    info = arch_build_bp_info(attr)
    if info.type == X86_BREAKPOINT_EXECUTE:
        return info
    align = info.generic_len - 1
    if info.address & align:
        raise HwBreakpointError(
            EINVAL, f"length {info.generic_len} needs {info.generic_len}-byte alignment"
        )
    return info


# --- the register file -------------------------------------------------------------------


@dataclass
class X86DebugRegisters:
    """One CPU's DR0-DR3, DR6, DR7, plus Linux's per-CPU slot owner table (bp_per_reg)."""

    dr: list[int] = field(default_factory=lambda: [0] * HBP_NUM)
    dr6: int = DR6_RESERVED
    dr7: int = DR7_FIXED_1
    owners: list[Breakpoint | None] = field(default_factory=lambda: [None] * HBP_NUM)


class X86DebugArch(DebugArch):
    """x86-64: 4 slots shared by instruction and data breakpoints."""

    name = "x86-64"
    mixed_slots = True

    # Exposed on the class too, so a caller holding only the arch can encode.
    encode_dr7 = staticmethod(encode_dr7)
    decode_dr7 = staticmethod(decode_dr7)

    def hw_breakpoint_slots(self, slot_type: int) -> int:
        if slot_type not in (TYPE_INST, TYPE_DATA):
            raise ValueError(f"unknown slot type {slot_type}")
        return HBP_NUM

    def hw_breakpoint_arch_parse(self, attr: BreakpointAttr) -> X86BreakpointInfo:
        return hw_breakpoint_arch_parse(attr)

    def new_registers(self) -> X86DebugRegisters:
        return X86DebugRegisters()

    def install(self, regs: X86DebugRegisters, bp: Breakpoint) -> int:
        """arch_install_hw_breakpoint: first free DRn, then OR encode_dr7 into DR7."""
        info: X86BreakpointInfo = bp.info
        slot = self.claim_slot(regs, bp, range(HBP_NUM))
        regs.dr[slot] = info.address
        regs.dr7 |= encode_dr7(slot, info.len, info.type)
        return slot

    def uninstall(self, regs: X86DebugRegisters, bp: Breakpoint) -> None:
        """arch_uninstall_hw_breakpoint: clear the slot's DR7 bits but keep GE."""
        slot = self.release_slot(regs, bp)
        if slot is None:
            return
        info: X86BreakpointInfo = bp.info
        # DRn keeps its stale address, as on Linux; DR7 no longer enables it.
        regs.dr7 &= ~dr7_slot_bits(slot, info.len, info.type)

    def enforced_slots(self, regs: X86DebugRegisters) -> list[WatchSlot]:
        """What DR0-3 + DR7 make the CPU check, decoded from the bits alone."""
        slots = []
        for slot in range(HBP_NUM):
            decoded = decode_dr7(regs.dr7, slot)
            if not decoded.enabled:
                continue
            if decoded.type == X86_BREAKPOINT_EXECUTE:
                slots.append(WatchSlot(slot, regs.dr[slot], 1, HW_BREAKPOINT_X))
                continue
            access = _X86_TYPE_TO_GENERIC.get(decoded.type)
            if access is None:  # R/W=10: I/O breakpoints need CR4.DE; never enforced here
                continue
            length = _X86_LEN_TO_GENERIC[decoded.len]
            # The CPU ignores the low address bits a LEN field does not cover (SDM 17.2.5).
            slots.append(WatchSlot(slot, regs.dr[slot] & ~(length - 1), length, access))
        return slots

    def slot_name(self, slot: int) -> str:
        return f"DR{slot}"

    def describe_registers(self, regs: X86DebugRegisters) -> str:
        addresses = " ".join(f"DR{n}=0x{value:x}" for n, value in enumerate(regs.dr))
        return f"{addresses} DR6=0x{regs.dr6:08x} DR7=0x{regs.dr7:08x}"

    def record_hit(self, regs: X86DebugRegisters, slots: tuple[int, ...]) -> None:
        """Set DR6 Bn for each matching slot; the CPU never clears DR6 itself."""
        for slot in slots:
            if 0 <= slot < HBP_NUM:
                regs.dr6 |= DR_TRAP0 << slot

    def clear_status(self, regs: X86DebugRegisters) -> None:
        regs.dr6 = DR6_RESERVED
