"""Find the instructions whose stores Unicorn makes inside a C helper.

Unicorn 2.1.4 performs a few stores in C helpers rather than in translated
code: x87 80-bit stores (`fstp m80`, `fbstp`), `fnsave`, `fnstenv`,
`fxsave`, `xsave`, `xsaveopt`, `cmpxchg8b`/`cmpxchg16b`, `maskmovq` and
`maskmovdqu` (measured: every store-capable instruction was run against a
write-protected page; these are the ones that are not a precise fault).  A
helper's store to a write-protected page is *dropped* and the run goes on
past the instruction, so page protection cannot watch them.  The CPU
therefore puts a code hook on each such instruction while a watched page is
write-protected, and steps it under the watch when its store reaches one
(cpu.py).  Loads in helpers fault precisely and need nothing.

The instructions are found by scanning executable memory for their opcode
bytes; every place where the bytes could start an instruction (after up to
five prefix bytes) is decoded with capstone.  A place that is not a real
instruction start only costs a hook that never fires.  The CPU scans again
when executable memory is mapped, unmapped or made executable (stopping the
run for it) and when the debugger writes into scanned code; code the program
writes into memory that is already executable is not scanned again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import capstone
from capstone import x86 as cx
from unicorn import Uc
from unicorn import x86_const

from gdbstub.target.disasm import LEGACY_PREFIXES, MAX_INSN_LEN, REX_PREFIXES

__all__ = ["HelperStore", "find_helper_stores", "fixed_store_range", "store_range"]

# The bytes of each instruction's store: what the helper writes at the operand.
_STORE_WIDTH = {
    "fstp": 10, "fbstp": 10,                # only the m80 form is scanned for
    "fnsave": 108, "fnstenv": 28,
    "fxsave": 512, "fxsave64": 512,
    # the legacy region and the XSAVE header: x87 and SSE are the only state components Unicorn
    # 2.1.4 has (measured: it writes up to byte 520, XSTATE_BV)
    "xsave": 576, "xsave64": 576, "xsaveopt": 576, "xsaveopt64": 576,
    "cmpxchg8b": 8, "cmpxchg16b": 16,
    "maskmovq": 8, "maskmovdqu": 16,        # implicit operand: [rdi]
}
_MASK64 = (1 << 64) - 1
_PREFIX_BYTES = LEGACY_PREFIXES | REX_PREFIXES
_MAX_PREFIXES = 5
_SEGMENT_BASE = {cx.X86_REG_FS: x86_const.UC_X86_REG_FS_BASE, cx.X86_REG_GS: x86_const.UC_X86_REG_GS_BASE}
_SEGMENT_OF_PREFIX = {0x64: cx.X86_REG_FS, 0x65: cx.X86_REG_GS}


def _memory_modrm(reg: int) -> bytes:
    """Every ModRM byte with this reg field and a memory operand (mod != 3)."""
    return bytes((mod << 6) | (reg << 3) | rm for mod in range(3) for rm in range(8))


def _register_modrm() -> bytes:
    return bytes(0xC0 | n for n in range(64))


def _opcode_pattern(opcode: bytes, modrms: bytes) -> bytes:
    return re.escape(opcode) + b"[" + b"".join(re.escape(bytes([m])) for m in modrms) + b"]"


# A lookahead, so that overlapping places are all found (0f f7 c0 could be a maskmov's tail, and
# its last byte the start of an fstp).
_OPCODES = re.compile(b"(?=" + b"|".join([
    _opcode_pattern(b"\xdb", _memory_modrm(7)),                                  # fstp m80
    _opcode_pattern(b"\xdf", _memory_modrm(6)),                                  # fbstp m80
    _opcode_pattern(b"\xdd", _memory_modrm(6)),                                  # fnsave
    _opcode_pattern(b"\xd9", _memory_modrm(6)),                                  # fnstenv
    _opcode_pattern(b"\x0f\xae", _memory_modrm(0) + _memory_modrm(4) + _memory_modrm(6)),  # fxsave, xsave...
    _opcode_pattern(b"\x0f\xc7", _memory_modrm(1)),                              # cmpxchg8b/16b
    _opcode_pattern(b"\x0f\xf7", _register_modrm()),                             # maskmovq/maskmovdqu
]) + b")")


@dataclass(frozen=True)
class HelperStore:
    """One instruction that stores in a C helper, and how to find where it stores."""

    addr: int
    size: int                   # the instruction's length
    mnemonic: str
    base: int                   # Unicorn register ids, 0 for none; base RIP is handled as RIP-relative
    index: int
    scale: int
    disp: int
    segment_base: int           # UC_X86_REG_FS_BASE / GS_BASE, or 0
    width: int                  # bytes the store may cover from the operand's address
    address_mask: int           # 32-bit addressing (an 0x67 prefix) wraps at 4 GiB


def find_helper_stores(chunks: Iterable[tuple[int, bytes]]) -> dict[int, HelperStore]:
    """The helper-storing instructions that may start in `chunks` of (address, code bytes)."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    found: dict[int, HelperStore] = {}
    for base, code in chunks:
        for match in _OPCODES.finditer(code):
            for start in _possible_starts(code, match.start()):
                store = _decode(md, code, base, start, match.start())
                if store is not None:
                    found[store.addr] = store
    return found


def _possible_starts(code: bytes, opcode_at: int) -> Iterator[int]:
    start = opcode_at
    while True:
        yield start
        if start == 0 or opcode_at - start >= _MAX_PREFIXES or code[start - 1] not in _PREFIX_BYTES:
            return
        start -= 1


def _decode(md: capstone.Cs, code: bytes, base: int, start: int, opcode_at: int) -> HelperStore | None:
    insn = next(md.disasm(code[start:start + MAX_INSN_LEN], base + start, 1), None)
    if insn is None or start + insn.size <= opcode_at:
        return None
    mnemonic = insn.mnemonic.split()[-1]        # capstone spells a lock prefix into the mnemonic
    if mnemonic not in _STORE_WIDTH or (mnemonic == "fstp" and insn.operands[0].size != 10):
        return None
    address_size_prefix = 0x67 in insn.prefix
    memory = [op.mem for op in insn.operands if op.type == cx.X86_OP_MEM]
    if memory:
        mem = memory[0]
        base_reg, index, scale, disp, segment = mem.base, mem.index, mem.scale, mem.disp, mem.segment
    else:                       # maskmov: [rdi] (or [edi] with an address-size prefix), any segment override
        base_reg = cx.X86_REG_EDI if address_size_prefix else cx.X86_REG_RDI
        index, scale, disp = 0, 1, 0
        segment = next((_SEGMENT_OF_PREFIX[p] for p in insn.prefix if p in _SEGMENT_OF_PREFIX), 0)
    return HelperStore(
        addr=insn.address, size=insn.size, mnemonic=mnemonic,
        base=_uc_register(insn, base_reg), index=_uc_register(insn, index), scale=scale, disp=disp,
        segment_base=_SEGMENT_BASE.get(segment, 0),
        width=_STORE_WIDTH[mnemonic], address_mask=0xFFFF_FFFF if address_size_prefix else _MASK64)


def _uc_register(insn: capstone.CsInsn, reg: int) -> int:
    if reg == 0 or insn.reg_name(reg) in ("riz", "eiz"):     # a SIB byte that names no index
        return 0
    return getattr(x86_const, "UC_X86_REG_" + insn.reg_name(reg).upper())


def fixed_store_range(store: HelperStore) -> tuple[int, int] | None:
    """[start, end) of what `store` writes if no register decides it (absolute or RIP-relative), else None."""
    if store.index or store.segment_base or store.base not in (0, x86_const.UC_X86_REG_RIP):
        return None
    return store_range(None, store)     # (no register to read)


def store_range(uc: Uc | None, store: HelperStore) -> tuple[int, int]:
    """[start, end) of what `store` may write when it executes now (its registers as they are)."""
    if store.base == x86_const.UC_X86_REG_RIP:
        address = store.addr + store.size
    else:
        address = uc.reg_read(store.base) if store.base else 0
    if store.index:
        address += uc.reg_read(store.index) * store.scale
    address = (address + store.disp) & store.address_mask
    if store.segment_base:
        address += uc.reg_read(store.segment_base)
    address &= _MASK64
    return address, address + store.width
