"""x86-64 registers as gdb numbers them, mapped onto a Unicorn CPU.

The numbering, names, sizes and types are those gdbserver uses for an
x86-64 GNU/Linux process (gdb's features/i386/64bit-{core,sse,linux,
segments}.xml, in that order): 0-23 general and segment registers, 24-39 the
x87 unit, 40-56 SSE, 57 orig_rax, 58-59 fs_base/gs_base.  `TARGET_XML` is the
same description as one self-contained document (no xi:include), so gdb
never has to ask for a second annex.

Values travel as little-endian byte strings of bitsize/8 bytes; the `g`/`G`
blob is all of them back to back in register order, laid out by the
construct `Struct` in `REGISTER_BLOB`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

from construct import Bytes, Struct
from unicorn import Uc, UcError
from unicorn import x86_const as X

__all__ = [
    "RegDef", "REGISTERS", "REGISTER_BLOB", "BLOB_SIZE", "TARGET_XML",
    "EXPEDITED", "PC", "SP", "FP", "number_of",
    "read_register", "write_register", "read_all", "write_all",
]

_CORE = "org.gnu.gdb.i386.core"
_SSE = "org.gnu.gdb.i386.sse"
_LINUX = "org.gnu.gdb.i386.linux"
_SEGMENTS = "org.gnu.gdb.i386.segments"
_FEATURE_ORDER = (_CORE, _SSE, _LINUX, _SEGMENTS)


@dataclass(frozen=True)
class RegDef:
    """One gdb register: its wire shape and where Unicorn keeps it."""

    name: str
    bitsize: int
    unicorn_id: int | None     # None: not a plain Unicorn register (see _SPECIAL)
    type: str                  # the target.xml type
    feature: str
    group: str | None = None

    @property
    def size(self) -> int:
        return self.bitsize // 8


def _build_registers() -> tuple[RegDef, ...]:
    regs: list[RegDef] = []
    for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"):
        kind = "data_ptr" if name in ("rbp", "rsp") else "int64"
        regs.append(RegDef(name, 64, getattr(X, f"UC_X86_REG_{name.upper()}"), kind, _CORE))
    regs.append(RegDef("rip", 64, X.UC_X86_REG_RIP, "code_ptr", _CORE))
    regs.append(RegDef("eflags", 32, X.UC_X86_REG_EFLAGS, "i386_eflags", _CORE))
    for name in ("cs", "ss", "ds", "es", "fs", "gs"):
        regs.append(RegDef(name, 32, getattr(X, f"UC_X86_REG_{name.upper()}"), "int32", _CORE))
    # st(i) is stack-relative; Unicorn's ST0-7 ids copy 10 bytes into the
    # Python binding's 8-byte buffer, so these go through FP0-7 (see _read_st).
    for i in range(8):
        regs.append(RegDef(f"st{i}", 80, None, "i387_ext", _CORE))
    x87 = {
        "fctrl": X.UC_X86_REG_FPCW, "fstat": X.UC_X86_REG_FPSW, "ftag": X.UC_X86_REG_FPTAG,
        "fiseg": X.UC_X86_REG_FCS, "fioff": X.UC_X86_REG_FIP,
        "foseg": X.UC_X86_REG_FDS, "fooff": X.UC_X86_REG_FDP, "fop": X.UC_X86_REG_FOP,
    }
    for name, uc_id in x87.items():
        regs.append(RegDef(name, 32, uc_id, "int", _CORE, group="float"))
    for i in range(16):
        regs.append(RegDef(f"xmm{i}", 128, getattr(X, f"UC_X86_REG_XMM{i}"), "vec128", _SSE))
    regs.append(RegDef("mxcsr", 32, X.UC_X86_REG_MXCSR, "i386_mxcsr", _SSE, group="vector"))
    regs.append(RegDef("orig_rax", 64, None, "int", _LINUX))
    regs.append(RegDef("fs_base", 64, X.UC_X86_REG_FS_BASE, "int", _SEGMENTS))
    regs.append(RegDef("gs_base", 64, X.UC_X86_REG_GS_BASE, "int", _SEGMENTS))
    return tuple(regs)


REGISTERS: tuple[RegDef, ...] = _build_registers()
_BY_NAME = {r.name: n for n, r in enumerate(REGISTERS)}


def number_of(name: str) -> int:
    """gdb's number for register `name` (KeyError if there is none)."""
    return _BY_NAME[name]


FP, SP, PC = number_of("rbp"), number_of("rsp"), number_of("rip")
EXPEDITED = (FP, SP, PC)            # what gdbserver puts in a T stop reply: 06, 07, 10

REGISTER_BLOB = Struct(*(r.name / Bytes(r.size) for r in REGISTERS))
BLOB_SIZE: int = REGISTER_BLOB.sizeof()
_BLOB_CODEC = REGISTER_BLOB.compile()       # same layout, ~5x faster to build and parse
_OFFSETS: tuple[int, ...] = tuple(
    sum(r.size for r in REGISTERS[:n]) for n in range(len(REGISTERS)))


# --- target.xml -------------------------------------------------------------

_EFLAGS_FIELDS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7),
                  ("TF", 8), ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16),
                  ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21))
_MXCSR_FIELDS = (("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5),
                 ("DAZ", 6), ("IM", 7), ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11),
                 ("PM", 12), ("FZ", 15))
# vec128 exactly as gdb 13's 64bit-sse.xml spells it, so `p $xmm0` prints the same union
_VEC128_FIELDS = (("v8_bfloat16", "v8bf16", "bfloat16", 8), ("v8_half", "v8h", "ieee_half", 8),
                  ("v4_float", "v4f", "ieee_single", 4), ("v2_double", "v2d", "ieee_double", 2),
                  ("v16_int8", "v16i8", "int8", 16), ("v8_int16", "v8i16", "int16", 8),
                  ("v4_int32", "v4i32", "int32", 4), ("v2_int64", "v2i64", "int64", 2))


def _flags_xml(type_id: str, fields: tuple[tuple[str, int], ...]) -> list[str]:
    lines = [f'    <flags id="{type_id}" size="4">']
    lines += [f'      <field name="{name}" start="{bit}" end="{bit}"/>' for name, bit in fields]
    lines.append("    </flags>")
    return lines


def _reg_xml(n: int, reg: RegDef) -> str:
    group = f' group="{reg.group}"' if reg.group else ""
    return f'    <reg name="{reg.name}" bitsize="{reg.bitsize}" type="{reg.type}" regnum="{n}"{group}/>'


def _build_target_xml() -> str:
    lines = ['<?xml version="1.0"?>',
             '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
             '<target version="1.0">',
             "  <architecture>i386:x86-64</architecture>",
             "  <osabi>GNU/Linux</osabi>"]
    for feature in _FEATURE_ORDER:
        lines.append(f'  <feature name="{feature}">')
        if feature == _CORE:
            lines += _flags_xml("i386_eflags", _EFLAGS_FIELDS)
        elif feature == _SSE:
            lines += [f'    <vector id="{vid}" type="{elem}" count="{count}"/>'
                      for _, vid, elem, count in _VEC128_FIELDS]
            lines.append('    <union id="vec128">')
            lines += [f'      <field name="{name}" type="{vid}"/>' for name, vid, _, _ in _VEC128_FIELDS]
            lines.append('      <field name="uint128" type="uint128"/>')
            lines.append("    </union>")
            lines += _flags_xml("i386_mxcsr", _MXCSR_FIELDS)
        lines += [_reg_xml(n, r) for n, r in enumerate(REGISTERS) if r.feature == feature]
        lines.append("  </feature>")
    lines.append("</target>")
    return "\n".join(lines) + "\n"


TARGET_XML: str = _build_target_xml()


# --- per-register access ----------------------------------------------------

# orig_rax is Linux's "syscall number being restarted" slot; Unicorn has no
# such register, so it lives here, per Uc, with the kernel's "no syscall"
# value -1 until someone writes it.
_NO_SYSCALL = (1 << 64) - 1
_orig_rax: weakref.WeakKeyDictionary[Uc, int] = weakref.WeakKeyDictionary()

_FPSW_TOP_SHIFT = 11
_MASK32 = 0xFFFF_FFFF
_FOP_MASK = 0x7FF           # the opcode is 11 bits; gdb masks it the same way


def _fp_physical(uc: Uc, st_index: int) -> int:
    """Unicorn id of the physical x87 register that is st(st_index) now."""
    top = (uc.reg_read(X.UC_X86_REG_FPSW) >> _FPSW_TOP_SHIFT) & 7
    return X.UC_X86_REG_FP0 + ((top + st_index) & 7)


def _read_st(uc: Uc, st_index: int) -> int:
    mantissa, sign_exponent = uc.reg_read(_fp_physical(uc, st_index))
    return mantissa | (sign_exponent & 0xFFFF) << 64     # gdb's i387_ext: 8-byte mantissa, 2-byte sign/exp


def _write_st(uc: Uc, st_index: int, value: int) -> None:
    uc.reg_write(_fp_physical(uc, st_index), (value & ((1 << 64) - 1), value >> 64))


def _write_low32(uc_id: int) -> Callable[[Uc, int], None]:
    # fioff/fooff are 32-bit in gdb but 64-bit FIP/FDP in Unicorn: keep the
    # upper half so writing back what `g` returned changes nothing.
    def write(uc: Uc, value: int) -> None:
        uc.reg_write(uc_id, (uc.reg_read(uc_id) & ~_MASK32) | value)
    return write


def _write_fs_gs(uc_id: int, base_id: int) -> Callable[[Uc, int], None]:
    # Unicorn loads a descriptor on an FS/GS write, which zeroes the base (and
    # fails for a non-null selector: no GDT in a user-mode emulation).  Linux
    # keeps fs_base across a ptrace write of fs, so we do too, and skip
    # no-op writes (every `G` writes fs/gs back unchanged).
    def write(uc: Uc, value: int) -> None:
        if uc.reg_read(uc_id) == value:
            return
        base = uc.reg_read(base_id)
        try:
            uc.reg_write(uc_id, value)
        except UcError as exc:
            raise ValueError(f"segment selector {value:#x} rejected by the CPU: {exc}") from exc
        finally:
            uc.reg_write(base_id, base)
    return write


def _keep_selector(uc_id: int) -> Callable[[Uc, int], None]:
    # The CPU got its user-mode CS and SS from sysret (process.py), not from a descriptor table:
    # loading any selector would look for one and leave the CPU broken (a double fault at the
    # next instruction). Writing back the value it has is a no-op; anything else is refused.
    def write(uc: Uc, value: int) -> None:
        if uc.reg_read(uc_id) != value:
            raise ValueError(f"segment selector {value:#x}: the emulated CPU keeps "
                             f"{uc.reg_read(uc_id):#x}")
    return write


_Reader = Callable[[Uc], int]
_Writer = Callable[[Uc, int], None]
_SPECIAL: dict[str, tuple[_Reader, _Writer]] = {
    **{f"st{i}": ((lambda uc, i=i: _read_st(uc, i)), (lambda uc, v, i=i: _write_st(uc, i, v)))
       for i in range(8)},
    "fioff": (lambda uc: uc.reg_read(X.UC_X86_REG_FIP) & _MASK32, _write_low32(X.UC_X86_REG_FIP)),
    "fooff": (lambda uc: uc.reg_read(X.UC_X86_REG_FDP) & _MASK32, _write_low32(X.UC_X86_REG_FDP)),
    "fop": (lambda uc: uc.reg_read(X.UC_X86_REG_FOP) & _FOP_MASK,
            lambda uc, v: uc.reg_write(X.UC_X86_REG_FOP, v & _FOP_MASK)),
    **{name: ((lambda uc, uc_id=uc_id: uc.reg_read(uc_id)), _keep_selector(uc_id))
       for name, uc_id in (("cs", X.UC_X86_REG_CS), ("ss", X.UC_X86_REG_SS),
                           ("ds", X.UC_X86_REG_DS), ("es", X.UC_X86_REG_ES))},
    "fs": (lambda uc: uc.reg_read(X.UC_X86_REG_FS), _write_fs_gs(X.UC_X86_REG_FS, X.UC_X86_REG_FS_BASE)),
    "gs": (lambda uc: uc.reg_read(X.UC_X86_REG_GS), _write_fs_gs(X.UC_X86_REG_GS, X.UC_X86_REG_GS_BASE)),
    "orig_rax": (lambda uc: _orig_rax.get(uc, _NO_SYSCALL), _orig_rax.__setitem__),
}


def _lookup(regnum: int) -> RegDef:
    if not 0 <= regnum < len(REGISTERS):
        raise KeyError(f"no x86-64 register number {regnum}")
    return REGISTERS[regnum]


def read_register(uc: Uc, regnum: int) -> bytes:
    """Register `regnum` as gdb sends it: little-endian, bitsize/8 bytes."""
    reg = _lookup(regnum)
    special = _SPECIAL.get(reg.name)
    value = special[0](uc) if special else uc.reg_read(reg.unicorn_id)
    return (value & ((1 << reg.bitsize) - 1)).to_bytes(reg.size, "little")


def write_register(uc: Uc, regnum: int, data: bytes) -> None:
    """Write register `regnum` from gdb's little-endian bytes.

    KeyError for a number we do not have, ValueError for a wrong size or a
    value the CPU refuses (a segment selector with no descriptor).
    """
    reg = _lookup(regnum)
    if len(data) != reg.size:
        raise ValueError(f"{reg.name} takes {reg.size} bytes, got {len(data)}")
    value = int.from_bytes(data, "little")
    special = _SPECIAL.get(reg.name)
    if special:
        special[1](uc, value)
    else:
        uc.reg_write(reg.unicorn_id, value)


def read_all(uc: Uc) -> bytes:
    """The `g` reply body: every register, in gdb order."""
    return _BLOB_CODEC.build({r.name: read_register(uc, n) for n, r in enumerate(REGISTERS)})


# fstat carries the x87 TOP, which decides which physical register st0-7
# name: write it before the st registers, as one ptrace SETFPREGS would.
_FSTAT = number_of("fstat")
_WRITE_ORDER = (_FSTAT, *(n for n in range(len(REGISTERS)) if n != _FSTAT))


def write_all(uc: Uc, blob: bytes) -> None:
    """Apply a `G` body.  A short blob writes only the registers it touches;
    one that ends inside a register keeps that register's remaining bytes
    (gdbserver overlays the blob on its register cache the same way).
    ValueError, with no register changed, for a value the CPU refuses."""
    if len(blob) > BLOB_SIZE:
        raise ValueError(f"register blob is {len(blob)} bytes, the most is {BLOB_SIZE}")
    touched = [n for n in _WRITE_ORDER if _OFFSETS[n] < len(blob)]
    before = read_all(uc)
    fields = _BLOB_CODEC.parse(blob + before[len(blob):])
    try:
        for n in touched:
            write_register(uc, n, fields[REGISTERS[n].name])
    except ValueError:
        # A value the CPU refuses (a segment selector): the whole `G` fails, nothing changed.
        old = _BLOB_CODEC.parse(before)
        for n in touched:
            write_register(uc, n, old[REGISTERS[n].name])
        raise
