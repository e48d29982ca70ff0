"""Finding the instructions Unicorn stores from in a C helper, and where each one stores.

The oracle for `store_range` is Unicorn itself: each instruction runs under a write hook, and every
byte it writes must lie in the range computed from the registers before it ran.
"""

from __future__ import annotations

import pytest
from unicorn import UC_HOOK_MEM_WRITE, UC_PROT_ALL
from unicorn.x86_const import UC_X86_REG_FS_BASE

from gdbstub.target.helper_stores import find_helper_stores, fixed_store_range, store_range
from tests.target.asm import CODE_BASE, DATA_BASE, RawProgram, assemble

X = DATA_BASE + 0x100

# (instruction, mnemonic as found): every helper store, with prefixes and addressing modes
HELPER_STORES = [
    ("fstp tbyte ptr [rdi]", "fstp"),
    ("fbstp tbyte ptr [rdi + 8]", "fbstp"),
    ("fnsave [rdi]", "fnsave"),
    ("fnstenv [rdi + rcx * 4]", "fnstenv"),
    ("fxsave [rdi]", "fxsave"),
    ("fxsave64 [rdi + rcx * 8 + 40]", "fxsave64"),      # 16-byte aligned: rcx = 3
    ("xsave [rdi]", "xsave"),
    ("xsaveopt [rdi]", "xsaveopt"),
    ("lock cmpxchg16b xmmword ptr [rdi + 16]", "cmpxchg16b"),
    ("cmpxchg8b qword ptr [rdi]", "cmpxchg8b"),
    ("maskmovdqu xmm0, xmm1", "maskmovdqu"),
    ("maskmovq mm0, mm1", "maskmovq"),
    ("fstp tbyte ptr fs:[rdi]", "fstp"),
    (".byte 0x64; maskmovdqu xmm0, xmm1", "maskmovdqu"),        # fs:[rdi]
    ("fxsave [rip + target]", "fxsave"),
]
# stores Unicorn makes in translated code: never reported
ORDINARY_STORES = ["fstp qword ptr [rdi]", "fistp dword ptr [rdi]", "fnstcw word ptr [rdi]",
                   "mov qword ptr [rdi], rax", "movdqu xmmword ptr [rdi], xmm0", "fxrstor [rdi]"]


def labelled(instructions: list[str]) -> str:
    lines = []
    for n, insn in enumerate(instructions):
        lines += [f"i{n}:", f"    {insn}"]
    return "\n".join(lines + ["    int3", "    .balign 16", "target:", "    .quad 0"])


def test_finds_each_helper_store_at_its_address_and_nothing_ordinary():
    program = assemble(labelled([insn for insn, _ in HELPER_STORES] + ORDINARY_STORES))
    found = find_helper_stores([(program.base, program.code)])
    for n, (insn, mnemonic) in enumerate(HELPER_STORES):
        assert found[program[f"i{n}"]].mnemonic == mnemonic, insn
    for n, insn in enumerate(ORDINARY_STORES, start=len(HELPER_STORES)):
        assert program[f"i{n}"] not in found, insn


def test_a_store_right_after_bytes_that_look_like_another_is_found():
    # b8 00 00 0f f7 | db 3f: "0f f7 db" reads as a maskmov whose ModRM is fstp's opcode byte
    program = assemble(labelled(["mov eax, 0xf70f0000", "fstp tbyte ptr [rdi]"]))
    assert program["i1"] in find_helper_stores([(program.base, program.code)])


def test_an_instruction_split_across_chunks_is_not_found_in_either():
    program = assemble(labelled(["nop", "fxsave [rdi]"]))
    at = program["i1"] - program.base + 1          # cut inside fxsave
    found = find_helper_stores([(program.base, program.code[:at]), (program.base + at, program.code[at:])])
    assert program["i1"] not in found


def range_and_writes(prog: RawProgram) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """Run `prog` up to `insn`: store_range there; then run that one instruction: (addr, size) it wrote."""
    uc = prog.uc
    stores = find_helper_stores([(CODE_BASE, prog.asm.code)])
    uc.emu_start(CODE_BASE, prog["insn"])
    found = store_range(uc, stores[prog["insn"]])
    written: list[tuple[int, int]] = []
    uc.hook_add(UC_HOOK_MEM_WRITE, lambda uc, access, addr, size, value, _: written.append((addr, size)))
    uc.emu_start(prog["insn"], CODE_BASE + len(prog.asm.code), count=1)
    return found, written


@pytest.mark.parametrize("insn,_", HELPER_STORES)
def test_store_range_holds_every_byte_the_instruction_writes(insn, _):
    prog = RawProgram(f"""
        mov rdi, {X:#x}
        mov rcx, 3
        xor edx, edx
        mov r8, -1
        movq xmm1, r8
        movq mm1, r8
        mov eax, 3
    insn:
        {insn}
        int3
        .balign 16
    target:
        .quad 0
    """)
    uc = prog.uc
    uc.reg_write(UC_X86_REG_FS_BASE, 0x1000)
    uc.mem_write(X, bytes(8))                           # cmpxchg: edx:eax = 0:3 differs, it stores it back
    if "rip" in insn:                                   # RawProgram's code pages are not writable
        uc.mem_protect(CODE_BASE, 0x1000, UC_PROT_ALL)
    (start, end), written = range_and_writes(prog)
    assert written, "the instruction stored nothing"
    assert all(start <= addr and addr + size <= end for addr, size in written), (hex(start), written)
    assert min(addr for addr, _ in written) == start


def test_a_fixed_store_range_is_known_without_registers_and_only_then():
    program = assemble(labelled([f"fxsave [{X:#x}]", "fxsave [rip + target]", "fxsave [rdi]",
                                 f"fxsave fs:[{X:#x}]"]))
    stores = find_helper_stores([(program.base, program.code)])
    assert fixed_store_range(stores[program["i0"]]) == (X, X + 512)
    assert fixed_store_range(stores[program["i1"]]) == (program["target"], program["target"] + 512)
    assert fixed_store_range(stores[program["i2"]]) is None
    assert fixed_store_range(stores[program["i3"]]) is None


def test_32_bit_addressing_wraps_at_4_gib():
    # [edi + disp] with an address-size prefix: (edi + disp) mod 2**32, as the CPU computes it.
    prog = RawProgram(f"""
        mov edi, 0xfffffff0
    insn:
        fxsave [edi + {X + 0x10:#x}]
        int3
    """)
    found, writes = range_and_writes(prog)
    assert found == (X, X + 512)
    written = [addr for addr, _ in writes]
    assert min(written) == X
