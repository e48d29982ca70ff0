"""Disassembly for `monitor disas`, printed the way gdb's `x/i` prints it.

Capstone decodes; the text is rebuilt from its operand details in the
binutils AT&T dialect gdb uses by default: `mov    %rsp,%rbp`, hex
immediates masked to the operand size, `-0x8(%rbp,%rcx,2)`, `call   0x401126
<foo>`, no size suffix when a register operand already gives the size, and
`# 0x... <sym>` after %rip-relative operands.  Where the details do not carry
enough to do that (implicit operands), capstone's own text is used with
binutils' comma spacing.
"""

from __future__ import annotations

from typing import Callable

import capstone
from capstone import x86 as cx
from unicorn import UcError

__all__ = ["disassemble", "MAX_INSN_LEN", "LEGACY_PREFIXES", "REX_PREFIXES", "DEFAULT_UNREADABLE"]

MAX_INSN_LEN = 15                    # the architectural limit of one x86 instruction
# segment overrides, operand and address size, lock, rep/repne; REX comes last, just before the opcode
LEGACY_PREFIXES = frozenset({0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3})
REX_PREFIXES = frozenset(range(0x40, 0x50))
DEFAULT_UNREADABLE: tuple[type[BaseException], ...] = (UcError, OSError, LookupError, ValueError)

_MNEMONIC_WIDTH = 6                  # binutils pads the mnemonic to 6, then one space
_SUFFIX_SIZE = {"b": 1, "w": 2, "l": 4, "q": 8}
# 64-bit-default stack and branch instructions: binutils never prints their `q`
_NO_Q_SUFFIX = frozenset({"push", "pop", "call", "ret", "jmp", "enter", "leave"})
_PREFIX_NAMES = {"repe": "repz", "repne": "repnz"}
_MNEMONIC_NAMES = {"fucompi": "fucomip", "fcompi": "fcomip", "wait": "fwait"}    # capstone's spelling -> binutils'
_OPSIZE_PREFIX = 0x66
_XCHG_AX_AX = b"\x66\x90"        # binutils does not call this one `nop`
_ACCUMULATOR = {"b": "%al", "w": "%ax", "l": "%eax", "q": "%rax"}
# string instructions: binutils spells out the implicit operands capstone omits
_STRING_OPERANDS = {
    "movs": "%ds:(%rsi),%es:(%rdi)", "cmps": "%es:(%rdi),%ds:(%rsi)",
    "stos": "{acc},%es:(%rdi)", "lods": "%ds:(%rsi),{acc}", "scas": "%es:(%rdi),{acc}",
}
_MASK64 = (1 << 64) - 1
# x87 register forms (escape D8-DF, modrm >= C0): the ModRM.reg values whose
# binutils text names both %st(i) and the top of stack %st, and in which order
# (capstone lists only %st(i) for most of them)
_X87_STI_FIRST = {0xD8: {0, 1, 4, 5, 6, 7}, 0xDA: {0, 1, 2, 3}, 0xDB: {0, 1, 2, 3, 5, 6},
                  0xDF: {5, 6}}
_X87_ST_FIRST = {0xDC: {0, 1, 4, 5, 6, 7}, 0xDE: {0, 1, 4, 5, 6, 7}}
_SEGMENTS_IGNORED_IN_64BIT = frozenset({"cs", "ds", "es", "ss"})

ReadMemory = Callable[[int, int], bytes]
Symbolize = Callable[[int], "str | None"]


def _new_decoder() -> capstone.Cs:
    # one per call: a capstone handle is not safe to share between threads
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.syntax = capstone.CS_OPT_SYNTAX_ATT
    md.detail = True
    return md


def disassemble(read_memory: ReadMemory, addr: int, count: int,
                symbolize: Symbolize | None = None, *,
                unreadable: tuple[type[BaseException], ...] = DEFAULT_UNREADABLE) -> list[str]:
    """`count` instructions from `addr`, one line each, like gdb's `x/<count>i`.

    `read_memory(addr, size)` may return fewer bytes than asked or raise one
    of `unreadable`; either marks where readable memory ends, and the listing
    stops there with gdb's "Cannot access memory at address 0x..." line.
    """
    decoder = _new_decoder()
    code = _CodeWindow(read_memory, addr, unreadable)
    lines: list[str] = []
    pc = addr
    while len(lines) < count:
        head = f"{pc:#x}{_label(pc, symbolize)}:\t"
        window = code.at(pc)
        insn = next(decoder.disasm(window, pc, 1), None)
        if insn is None:
            if _needs_more_bytes(decoder, window, pc):
                lines.append(f"{head}Cannot access memory at address {code.end:#x}")
                break
            lines.append(head + "(bad)")      # binutils shows an undecodable byte and moves on by one
            pc += 1
        else:
            lines.append(head + _format(insn, symbolize))
            pc += insn.size
    return lines


class _CodeWindow:
    """The bytes from `start` on, read a chunk at a time as the listing needs
    them, up to the first unreadable address (`end`, once reached)."""

    CHUNK = 4096

    def __init__(self, read_memory: ReadMemory, start: int,
                 unreadable: tuple[type[BaseException], ...]) -> None:
        self._read, self._start, self._unreadable = read_memory, start, unreadable
        self._bytes = b""
        self._exhausted = False

    @property
    def end(self) -> int:
        return self._start + len(self._bytes)

    def at(self, pc: int) -> bytes:
        """Up to MAX_INSN_LEN readable bytes at `pc`."""
        while not self._exhausted and self.end < pc + MAX_INSN_LEN:
            chunk = _read_readable_prefix(self._read, self.end, self.CHUNK, self._unreadable)
            self._bytes += chunk
            self._exhausted = len(chunk) < self.CHUNK
        offset = pc - self._start
        return self._bytes[offset:offset + MAX_INSN_LEN]


def _needs_more_bytes(decoder: capstone.Cs, window: bytes, pc: int) -> bool:
    """Did decoding fail only because the bytes ran out?  Pad the window with
    zeros: if it then decodes into the padding, the instruction runs on past
    readable memory; if it still does not decode, the bytes are invalid."""
    if len(window) >= MAX_INSN_LEN:
        return False
    padded = window + bytes(MAX_INSN_LEN - len(window))
    return next(decoder.disasm(padded, pc, 1), None) is not None


def _read_readable_prefix(read_memory: ReadMemory, addr: int, size: int,
                          unreadable: tuple[type[BaseException], ...]) -> bytes:
    """The longest readable run of bytes at `addr`, up to `size`.

    One read when everything is mapped; otherwise a binary search for the
    boundary (a handful of reads), since a failed read says nothing about
    how much of it was readable."""
    try:
        return bytes(read_memory(addr, size))[:size]
    except unreadable:
        pass
    good, bad = b"", size               # invariant: `good` is readable, `bad` bytes are not
    while bad - len(good) > 1:
        middle = (len(good) + bad) // 2
        try:
            data = bytes(read_memory(addr, middle))
        except unreadable:
            bad = middle
            continue
        if len(data) < middle:          # a short read already names the boundary
            return data
        good = data
    return good


def _label(addr: int, symbolize: Symbolize | None) -> str:
    name = symbolize(addr) if symbolize else None
    return f" <{name}>" if name else ""


def _format(insn: capstone.CsInsn, symbolize: Symbolize | None) -> str:
    if bytes(insn.bytes) == _XCHG_AX_AX:
        return "xchg   %ax,%ax"
    *prefixes, mnemonic = insn.mnemonic.split(" ")
    prefixes = [_PREFIX_NAMES.get(p, p) for p in prefixes]
    operands, comment = _operands(insn, symbolize)
    mnemonic = _MNEMONIC_NAMES.get(mnemonic, mnemonic)
    mnemonic = _binutils_mnemonic(insn, mnemonic)
    text = " ".join([*_ignored_prefixes(insn), *prefixes, mnemonic])
    if operands:
        text = f"{text:<{_MNEMONIC_WIDTH}} {operands}"
    return text + comment


def _ignored_prefixes(insn: capstone.CsInsn) -> list[str]:
    """Prefixes that do nothing here and that binutils prints as words: a
    cs/ds/es/ss override (no effect in 64-bit mode; compilers pad with `cs
    nopw`) and each operand-size prefix beyond the first (`data16`)."""
    words = []
    extra_opsize = max(0, _prefix_bytes(insn).count(_OPSIZE_PREFIX) - 1)
    words += ["data16"] * extra_opsize
    if _ignored_segment(insn):
        words.append(_ignored_segment(insn))
    return words


def _prefix_bytes(insn: capstone.CsInsn) -> bytes:
    code = bytes(insn.bytes)
    n = 0
    while n < len(code) and code[n] in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3):
        n += 1
    return code[:n]


def _ignored_segment(insn: capstone.CsInsn) -> str | None:
    name = insn.insn_name()
    if name[:-1] in _STRING_OPERANDS:
        return None
    for op in insn.operands:
        if op.type == cx.X86_OP_MEM and op.mem.segment:
            seg = insn.reg_name(op.mem.segment)
            return seg if seg in _SEGMENTS_IGNORED_IN_64BIT else None
    return None


def _binutils_mnemonic(insn: capstone.CsInsn, mnemonic: str) -> str:
    """Drop capstone's size suffix where binutils leaves it out: a register
    operand of the suffix's size already says it (`movq %rsp,%rbp` is
    `mov`), and 64-bit stack/branch instructions never show `q`."""
    base, suffix = mnemonic[:-1], mnemonic[-1:]
    if base in _STRING_OPERANDS and suffix in _ACCUMULATOR:
        # capstone names these with the suffix (stosq); binutils drops it
        # when the accumulator is printed, as for any register operand
        return base if "{acc}" in _STRING_OPERANDS[base] else mnemonic
    if base != insn.insn_name() or suffix not in _SUFFIX_SIZE:
        return mnemonic       # the suffix is part of the name (movzbl, cvtsi2sdl with memory...)
    if suffix == "q" and base in _NO_Q_SUFFIX:
        return base
    sized_by_register = any(op.type == cx.X86_OP_REG and op.size == _SUFFIX_SIZE[suffix]
                            for op in insn.operands)
    return base if sized_by_register else mnemonic


def _operands(insn: capstone.CsInsn, symbolize: Symbolize | None) -> tuple[str, str]:
    """The operand text and any trailing `# target` comment."""
    name = insn.insn_name()
    string_base, suffix = name[:-1], name[-1:]
    if string_base in _STRING_OPERANDS and suffix in _ACCUMULATOR and not _uses_32bit_addresses(insn):
        return _STRING_OPERANDS[string_base].format(acc=_ACCUMULATOR[suffix]), ""
    x87 = _x87_register_operands(insn)
    if x87 is not None:
        return x87, ""
    is_branch = bool({capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL} & set(insn.groups))
    texts, comment = [], ""
    for op in insn.operands:
        if op.type == cx.X86_OP_IMM:
            if insn.imm_size == 0 and not is_branch:
                continue                  # an implied operand (`shr %eax` is D1 /5: the 1 is not encoded)
            if is_branch:
                texts.append(f"{op.imm & _MASK64:#x}{_label(op.imm & _MASK64, symbolize)}")
            else:
                texts.append(f"${op.imm & ((1 << (8 * op.size)) - 1):#x}")
        elif op.type == cx.X86_OP_REG:
            texts.append(("*" if is_branch else "") + "%" + insn.reg_name(op.reg))
        elif op.type == cx.X86_OP_MEM:
            text, target = _memory(insn, op)
            texts.append(("*" if is_branch else "") + text)
            if target is not None:
                comment = f"        # {target:#x}{_label(target, symbolize)}"
        else:
            return insn.op_str.replace(", ", ","), ""
    if not texts and insn.op_str:
        return insn.op_str.replace(", ", ","), ""   # operands capstone only has as text
    return ",".join(texts), comment


def _x87_register_operands(insn: capstone.CsInsn) -> str | None:
    escape, modrm = insn.opcode[0], insn.modrm
    if not 0xD8 <= escape <= 0xDF or modrm < 0xC0:
        return None
    reg, sti = (modrm >> 3) & 7, f"%st({modrm & 7})"
    if reg in _X87_STI_FIRST.get(escape, ()):
        return f"{sti},%st"
    if reg in _X87_ST_FIRST.get(escape, ()):
        return f"%st,{sti}"
    return None


def _uses_32bit_addresses(insn: capstone.CsInsn) -> bool:
    return any(op.type == cx.X86_OP_MEM and insn.reg_name(op.mem.base) in ("esi", "edi")
               for op in insn.operands)


def _memory(insn: capstone.CsInsn, op: cx.X86Op) -> tuple[str, int | None]:
    """`%seg:disp(base,index,scale)` in binutils' spelling, and the absolute
    target of a %rip-relative operand (for the `# 0x...` comment)."""
    mem = op.mem
    seg = f"%{insn.reg_name(mem.segment)}:" if mem.segment else ""
    if seg and _ignored_segment(insn):
        seg = ""                          # printed as a prefix word instead
    base = insn.reg_name(mem.base) if mem.base else None
    index = insn.reg_name(mem.index) if mem.index else None
    if base is None and index is None:
        return f"{seg}{mem.disp & _MASK64:#x}", None          # absolute address
    disp = ""
    if mem.disp or insn.disp_size:       # an encoded zero displacement still prints as 0x0
        disp = f"-{-mem.disp:#x}" if mem.disp < 0 else f"{mem.disp:#x}"
    inner = f"%{base}" if base else ""
    if index:
        inner += f",%{index},{mem.scale}"
    target = (insn.address + insn.size + mem.disp) & _MASK64 if base == "rip" else None
    return f"{seg}{disp}({inner})", target
