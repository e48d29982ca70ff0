"""`monitor disas` output compared with gdb's own `x/i` on the same bytes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gdbstub.target.disasm import disassemble

TOOLS_TIMEOUT = 30
HAVE_TOOLS = all(shutil.which(tool) for tool in ("as", "objcopy", "nm", "gdb"))
needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="needs binutils (as, objcopy, nm) and gdb")

# AT&T source covering the shapes gdb prints differently from capstone's
# defaults: suffixes, hex immediates masked to the operand size, SIB and
# %rip operands, branches with symbols, segment and string prefixes, x87.
SOURCE = """
.text
.globl main
main:
    push %rbp
    mov %rsp,%rbp
    sub $0x10,%rsp
    movl $0x0,-0x4(%rbp)
    mov $0x0,%eax
    movq $5,8(%rax)
    lea 0x10(%rip),%rdi
    call helper
    jmp 1f
1:  cmpb $0x2f,(%rdi)
    movzbl (%rdi),%eax
    movslq %edi,%rdi
    add $-1,%rax
    and $-16,%esp
    mov %fs:0x28,%rax
    mov 0x1234(,%rbx,4),%ecx
    lea -0x8(%rbp,%rcx,2),%rsi
    call *0x8(%rax)
    jmp *%rdx
    shr %eax
    sar %cl,%eax
    movsd %xmm0,-0x18(%rbp)
    cvtsi2sd %eax,%xmm1
    vmovdqu (%rdi),%ymm0
    lock xadd %eax,(%rdx)
    rep stosq
    repz cmpsb
    fmul %st(0),%st
    faddp %st,%st(1)
    fucomip %st(1),%st
    .byte 0x66, 0x90
    .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
    syscall
    leave
    ret
helper:
    endbr64
    ret $8
"""
SOURCE_INSTRUCTIONS = 37      # counted by hand from SOURCE (the two .byte runs are one each)


def _tool(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOLS_TIMEOUT, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> tuple[Path, bytes, dict[str, int]]:
    work = tmp_path_factory.mktemp("disasm")
    src, obj, raw = work / "prog.s", work / "prog.o", work / "prog.bin"
    src.write_text(SOURCE)
    _tool(["as", "--64", "-o", str(obj), str(src)])
    _tool(["objcopy", "-O", "binary", "--only-section=.text", str(obj), str(raw)])
    symbols = {}
    for line in _tool(["nm", "--defined-only", str(obj)]).splitlines():
        value, kind, name = line.split()
        if kind.lower() == "t":
            symbols[name] = int(value, 16)
    return obj, raw.read_bytes(), symbols


def _symbolizer(symbols: dict[str, int], end: int):
    """gdb's `<sym+off>`: the nearest symbol at or below addr, inside .text."""
    def symbolize(addr: int) -> str | None:
        below = [(start, name) for name, start in symbols.items() if start <= addr]
        if not below or addr >= end:
            return None
        start, name = max(below)
        return name if addr == start else f"{name}+{addr - start}"
    return symbolize


def _gdb_x_i(obj: Path, count: int) -> tuple[list[str], str]:
    """gdb's listing (stdout) and its error, if any (stderr): gdb exits 1
    when the listing runs into unreadable memory."""
    done = subprocess.run(["gdb", "-batch", "-nx", "-ex", f"x/{count}i main", str(obj)],
                          capture_output=True, text=True, timeout=TOOLS_TIMEOUT)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines, done.stderr.strip()


def _reader(code: bytes, base: int = 0):
    def read_memory(addr: int, size: int) -> bytes:
        if not base <= addr < base + len(code):
            raise ValueError(f"unmapped {addr:#x}")
        return code[addr - base:addr - base + size]
    return read_memory


@pytest.mark.gdb
@needs_tools
def test_listing_matches_gdb_x_i_line_for_line(program):
    obj, code, symbols = program
    expected, error = _gdb_x_i(obj, 100)               # more than there are: both stop at the end
    ours = disassemble(_reader(code), 0, 100, _symbolizer(symbols, len(code)))
    assert len(ours) == SOURCE_INSTRUCTIONS + 1
    # gdb prints the address part of the last line on stdout and the message on stderr
    *instructions, last = ours
    address, message = last.split("\t", 1)
    assert expected[:-1] == [line.strip() for line in instructions]
    assert expected[-1] == address and error == message


@pytest.mark.gdb
@needs_tools
def test_mnemonics_agree_with_gdb(program):
    obj, code, _ = program
    expected, _ = _gdb_x_i(obj, 100)
    ours = disassemble(_reader(code), 0, 100)[:-1]
    mnemonic = lambda line: line.split(":\t", 1)[1].split()[0]
    assert [mnemonic(x) for x in ours] == [mnemonic(x) for x in expected[:-1]]


def test_stops_at_unreadable_memory_with_gdbs_message(program):
    _, code, _ = program
    lines = disassemble(_reader(code), 0, len(code))
    assert lines[-1] == f"{len(code):#x}:\tCannot access memory at address {len(code):#x}"
    assert all("Cannot access" not in line for line in lines[:-1])


def test_instruction_cut_by_the_end_of_memory():
    code = bytes.fromhex("90" "48b88877665544")          # nop; the first 7 of movabs's 10 bytes
    lines = disassemble(_reader(code, 0x401000), 0x401000, 5)
    assert lines == ["0x401000:\tnop",
                     "0x401001:\tCannot access memory at address 0x401008"]


def test_short_reads_mark_the_end_like_errors_do():
    code = bytes.fromhex("90" "c3")
    lines = disassemble(lambda addr, size: code[addr:addr + size], 0, 4)
    assert lines == ["0x0:\tnop", "0x1:\tret", "0x2:\tCannot access memory at address 0x2"]


def test_unreadable_start():
    assert disassemble(_reader(b"", 0x1000), 0x5000, 3) == \
        ["0x5000:\tCannot access memory at address 0x5000"]


def test_undecodable_byte_is_bad_and_skipped():
    code = bytes.fromhex("06" "c3")                          # push %es is invalid in 64-bit mode
    assert disassemble(_reader(code), 0, 2) == ["0x0:\t(bad)", "0x1:\tret"]


def test_count_limits_the_listing_and_symbols_label_lines():
    code = bytes.fromhex("55" "4889e5" "c3")
    symbolize = lambda addr: "main" if addr == 0x401136 else f"main+{addr - 0x401136}"
    lines = disassemble(_reader(code, 0x401136), 0x401136, 2, symbolize)
    assert lines == ["0x401136 <main>:\tpush   %rbp", "0x401137 <main+1>:\tmov    %rsp,%rbp"]


def test_branch_targets_are_symbolized():
    code = bytes.fromhex("e8fb0f0000")                       # call .+0x1000
    lines = disassemble(_reader(code, 0x400000), 0x400000, 1,
                        lambda addr: "puts" if addr == 0x401000 else None)
    assert lines == ["0x400000:\tcall   0x401000 <puts>"]


def test_only_the_listed_errors_count_as_unreadable():
    def broken(addr: int, size: int) -> bytes:
        raise RuntimeError("a bug, not unmapped memory")
    with pytest.raises(RuntimeError):
        disassemble(broken, 0, 1)


def test_mnemonic_column_pads_like_binutils():
    lines = disassemble(_reader(bytes.fromhex("4801d8" "f30f1efa")), 0, 2)
    assert re.fullmatch(r"0x0:\tadd    %rbx,%rax", lines[0])
    assert lines[1] == "0x3:\tendbr64"


def test_long_listings_read_memory_in_bounded_chunks():
    code = b"\x90" * 10_000
    sizes: list[int] = []

    def read_memory(addr: int, size: int) -> bytes:
        sizes.append(size)
        return _reader(code)(addr, size)

    lines = disassemble(read_memory, 0, 9_000)
    assert len(lines) == 9_000 and lines[-1] == f"{8_999:#x}:\tnop"
    assert max(sizes) <= 4096
