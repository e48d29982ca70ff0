"""ElfImage: segments, entry, symbols and build-id agree with binutils (readelf/nm, the oracle),
and files that cannot run here are refused with a message that says why."""

from __future__ import annotations

import errno
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

from gdbstub.target.elf import MMAP_BASE, ElfImage, ElfLoadError
from tests.programs.build import build, have_compiler

pytestmark = [
    pytest.mark.skipif(not have_compiler(), reason="gcc is needed to build the test programs"),
    pytest.mark.skipif(shutil.which("readelf") is None or shutil.which("nm") is None,
                       reason="binutils (readelf, nm) are the oracle"),
]


def binutils(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def readelf_loads(path: Path) -> list[tuple[int, int, str]]:
    """(vaddr, memsz, flags) of each LOAD line of `readelf -lW`."""
    rows = []
    for line in binutils("readelf", "-lW", str(path)).splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD":
            rows.append((int(fields[2], 16), int(fields[5], 16), "".join(fields[6:-1])))
    return rows


def nm_symbols(path: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (value, size, nm type letter) for sized symbols, from `nm -S`."""
    table = {}
    for line in binutils("nm", "-S", "--defined-only", str(path)).splitlines():
        fields = line.split()
        if len(fields) == 4:
            table.setdefault(fields[3], (int(fields[0], 16), int(fields[1], 16), fields[2]))
    return table


def test_static_executable_segments_and_entry_match_readelf() -> None:
    path = build("hello")
    image = ElfImage.open(path)
    header = binutils("readelf", "-hW", str(path))
    entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", header).group(1), 16)
    assert image.elf_type == "ET_EXEC" and not image.is_static_pie and image.load_base == 0
    assert image.entry == entry
    flag_bits = {"R": UC_PROT_READ, "W": UC_PROT_WRITE, "E": UC_PROT_EXEC}
    expected = [(v, m, sum(flag_bits[c] for c in f)) for v, m, f in readelf_loads(path)]
    assert [(s.vaddr, s.memsz, s.prot) for s in image.segments] == expected
    assert image.end == max((s.vaddr + s.memsz + 0xFFF) & ~0xFFF for s in image.segments)


def test_segment_data_is_the_file_bytes() -> None:
    path = build("hello")
    raw = path.read_bytes()
    image = ElfImage.open(path)
    text = image.symbols["main"]
    seg = next(s for s in image.segments if s.vaddr <= text.addr < s.vaddr + s.memsz)
    start = text.addr - seg.vaddr
    # the same bytes objdump shows for main: check through the section's file offset
    sections = binutils("readelf", "-SW", str(path))
    m = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)\s+([0-9a-f]+)", sections)
    text_addr, text_off = int(m.group(1), 16), int(m.group(2), 16)
    file_off = text_off + (text.addr - text_addr)
    assert seg.data[start : start + text.size] == raw[file_off : file_off + text.size]


def test_phdr_address_points_at_the_program_headers() -> None:
    path = build("hello")
    image = ElfImage.open(path)
    e_phoff, = struct.unpack_from("<Q", path.read_bytes(), 32)
    first = image.segments[0]
    assert first.data[e_phoff : e_phoff + 4] == path.read_bytes()[e_phoff : e_phoff + 4]
    assert image.phdr_addr == first.vaddr + e_phoff
    assert image.phentsize == 56 and image.phnum == len(re.findall(r"^\s+[A-Z_]+\s+0x",
                                                                    binutils("readelf", "-lW", str(path)), re.M))


def test_symbols_match_nm() -> None:
    path = build("counter")
    image = ElfImage.open(path)
    nm = nm_symbols(path)
    for name, kind in [("counter", "object"), ("bump", "func"), ("main", "func"), ("printf", "func")]:
        value, size, _letter = nm[name]
        assert image.symbols[name] == (value, size, kind)


def test_symbol_at_gives_name_offset_and_size() -> None:
    image = ElfImage.open(build("counter"))
    bump = image.symbols["bump"]
    assert image.symbol_at(bump.addr) == ("bump", 0, bump.size)
    assert image.symbol_at(bump.addr + bump.size - 1) == ("bump", bump.size - 1, bump.size)
    counter = image.symbols["counter"]
    assert image.symbol_at(counter.addr + 2) == ("counter", 2, 4)
    assert image.symbol_at(0x1000) is None
    assert image.symbol_at(MMAP_BASE) is None


def test_symbol_at_prefers_the_plain_global_alias() -> None:
    image = ElfImage.open(build("malloc"))
    malloc = image.symbols["malloc"]
    aliases = [n for n, s in image.symbols.items() if s.addr == malloc.addr]
    assert len(aliases) > 1                       # glibc: malloc, __libc_malloc, __malloc
    assert image.symbol_at(malloc.addr + 1).name == "malloc"


def test_build_id_matches_readelf() -> None:
    path = build("hello")
    notes = binutils("readelf", "-nW", str(path))
    expected = re.search(r"Build ID:\s+([0-9a-f]+)", notes).group(1)
    assert ElfImage.open(path).build_id == expected


def test_file_parts_are_the_headers_and_sections_readelf_shows() -> None:
    path = build("hello")
    header = binutils("readelf", "-hW", str(path))

    def table(what: str) -> tuple[int, int]:
        start, count, size = (int(re.search(rf"{label}:\s+(\d+)", header).group(1))
                              for label in (f"Start of {what}", f"Number of {what}", f"Size of {what}"))
        return start, start + count * size

    expected = {(0, int(re.search(r"Size of this header:\s+(\d+)", header).group(1))),
                table("program headers"), table("section headers")}
    # [Nr] Name Type Address Off Size ...: every section with bytes in the file ([ 0] has none)
    row = re.compile(r"\[\s*[1-9]\d*\]\s+\S+\s+(\S+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)")
    for kind, off, size in row.findall(binutils("readelf", "-SW", str(path))):
        if kind != "NOBITS" and int(size, 16):
            expected.add((int(off, 16), int(off, 16) + int(size, 16)))
    assert list(ElfImage.open(path).file_parts) == sorted(expected)


def test_static_pie_is_relocated_as_a_whole() -> None:
    path = build("pie")
    image = ElfImage.open(path)
    nm = nm_symbols(path)
    assert image.elf_type == "ET_DYN" and image.is_static_pie
    assert image.load_base % 0x1000 == 0 and image.end == MMAP_BASE
    assert image.symbols["main"].addr == image.load_base + nm["main"][0]
    header = binutils("readelf", "-hW", str(path))
    entry = int(re.search(r"Entry point address:\s+(0x[0-9a-f]+)", header).group(1), 16)
    assert image.entry == image.load_base + entry
    moved = ElfImage.open(path, load_base=0x555555554000)
    assert moved.symbols["main"].addr == 0x555555554000 + nm["main"][0]


# ----------------------------------------------------------------------------- refusals
def test_missing_file() -> None:
    with pytest.raises(ElfLoadError, match="no such file") as info:
        ElfImage.open("/nonexistent/program")
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, ValueError)


def test_text_file_is_not_an_elf(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ElfLoadError, match="not an ELF") as info:
        ElfImage.open(script)
    assert info.value.errno == errno.ENOEXEC


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ElfLoadError, match="directory"):
        ElfImage.open(tmp_path)


def crafted_elf32() -> bytes:
    """A minimal ELF32 i386 executable header (gcc -m32 may be missing): e_ident + Elf32_Ehdr."""
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)          # ELFCLASS32, little-endian, v1
    return ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x8048000, 52, 0, 0, 52, 32, 0, 40, 0, 0)


def test_32_bit_elf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "i386"
    path.write_bytes(crafted_elf32())
    with pytest.raises(ElfLoadError, match="32-bit"):
        ElfImage.open(path)


def patched(path: Path, offset: int, fmt: str, value: int, out: Path) -> Path:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    out.write_bytes(raw)
    return out


def test_other_machine_is_refused(tmp_path: Path) -> None:
    arm = patched(build("hello"), 18, "<H", 183, tmp_path / "aarch64")      # e_machine = EM_AARCH64
    with pytest.raises(ElfLoadError, match="not x86-64"):
        ElfImage.open(arm)


def test_relocatable_object_is_not_an_executable(tmp_path: Path) -> None:
    obj = patched(build("hello"), 16, "<H", 1, tmp_path / "hello.o")        # e_type = ET_REL
    with pytest.raises(ElfLoadError, match="not an executable"):
        ElfImage.open(obj)


def test_dynamically_linked_needs_a_loader() -> None:
    path = build("hello", flags=["-g", "-O0"])
    with pytest.raises(ElfLoadError, match=r"needs a dynamic loader \(/lib64/ld-linux-x86-64.so.2\)") as info:
        ElfImage.open(path)
    assert info.value.errno == errno.ENOEXEC


def test_a_section_offset_past_any_file_is_a_malformed_elf(tmp_path: Path) -> None:
    raw = bytearray(build("hello").read_bytes())
    e_shoff, = struct.unpack_from("<Q", raw, 0x28)
    e_shentsize, = struct.unpack_from("<H", raw, 0x3A)
    struct.pack_into("<Q", raw, e_shoff + e_shentsize + 0x18, 2**63 + 5)   # section 1's sh_offset
    broken = tmp_path / "broken"
    broken.write_bytes(raw)
    with pytest.raises(ElfLoadError, match="malformed ELF file"):
        ElfImage.open(broken)


def test_truncated_file(tmp_path: Path) -> None:
    stub = tmp_path / "stub"
    stub.write_bytes(build("hello").read_bytes()[:40])
    with pytest.raises(ElfLoadError):
        ElfImage.open(stub)
