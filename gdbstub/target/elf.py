"""Read an x86-64 Linux executable: what to map, where to start, and its symbols.

Only what a static program needs is supported: ET_EXEC, and static-pie (ET_DYN with no PT_INTERP and no
DT_NEEDED). Anything that needs a dynamic loader is refused with a message that says so, because this
stub maps the program itself and has no ld.so to hand it to.

Static-pie placement copies what Linux 6.x does with ASLR off (measured on this host with
`setarch -R`): the image goes just below the mmap base, 0x7ffff7fff000 - span, like any mmap of that
size, so addresses match what a user of real gdb sees for the same binary.
"""

from __future__ import annotations

import bisect
import errno
import os
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from unicorn import UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE

__all__ = [
    "PAGE_SIZE",
    "MMAP_BASE",
    "ElfLoadError",
    "ElfImage",
    "Segment",
    "Symbol",
    "SymbolLocation",
    "MMAP_MIN_ADDR",
    "USER_TOP",
    "page_down",
    "page_up",
]

PAGE_SIZE = 0x1000
USER_TOP = 1 << 47                 # the x86-64 user address space ends here (4-level paging)
MMAP_MIN_ADDR = 0x10000            # vm.mmap_min_addr: nothing is mapped below
# Top of the mmap area with ASLR off: TASK_SIZE (0x7ffffffff000) minus Linux's minimum 128 MiB stack gap.
MMAP_BASE = 0x7FFFF7FFF000

_PF_X, _PF_W, _PF_R = 1, 2, 4
_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1


def page_down(addr: int) -> int:
    return addr & ~(PAGE_SIZE - 1)


def page_up(addr: int) -> int:
    return (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class ElfLoadError(ValueError):
    """The file cannot be run here; `errno` is what execve(2) would have said (ENOENT, ENOEXEC...)."""

    def __init__(self, message: str, errno_: int = errno.ENOEXEC) -> None:
        super().__init__(message)
        self.errno = errno_


class Segment(NamedTuple):
    """One PT_LOAD segment, already relocated by the load base."""

    vaddr: int
    memsz: int
    data: bytes          # the file part (p_filesz bytes); the rest up to memsz is zero (bss)
    prot: int            # UC_PROT_* bits


class Symbol(NamedTuple):
    addr: int
    size: int
    type: str            # "func" or "object"


class SymbolLocation(NamedTuple):
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class _SymbolEntry:
    start: int
    end: int             # start + max(size, 1): a zero-size symbol still owns its own address
    name: str
    size: int
    rank: tuple[int, int, str]   # lower is preferred among aliases


def _segment_prot(p_flags: int) -> int:
    prot = 0
    if p_flags & _PF_R:
        prot |= UC_PROT_READ
    if p_flags & _PF_W:
        prot |= UC_PROT_WRITE
    if p_flags & _PF_X:
        prot |= UC_PROT_EXEC
    return prot


class ElfImage:
    """A parsed executable. Build with `ElfImage.open(path)`; all addresses include `load_base`."""

    def __init__(
        self,
        path: str,
        *,
        elf_type: str,
        load_base: int,
        entry: int,
        segments: list[Segment],
        phdr_addr: int,
        phnum: int,
        phentsize: int,
        build_id: str | None,
        raw: bytes,
        file_parts: tuple[tuple[int, int], ...],
    ) -> None:
        self.path = path
        self.elf_type = elf_type            # "ET_EXEC" or "ET_DYN"
        self.is_static_pie = elf_type == "ET_DYN"
        self.load_base = load_base          # 0 for ET_EXEC
        self.entry = entry
        self.segments = segments
        self.phdr_addr = phdr_addr
        self.phnum = phnum
        self.phentsize = phentsize
        self.build_id = build_id            # lowercase hex, as in /usr/lib/debug/.build-id/xx/yyyy.debug
        self.file_parts = file_parts        # (start, end) file offsets: see _file_parts
        self._raw = raw

    # ----------------------------------------------------------------- loading
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, load_base: int | None = None) -> ElfImage:
        """Parse `path`; `load_base` overrides where a static-pie goes (ignored for ET_EXEC)."""
        abspath = os.path.abspath(os.fspath(path))
        raw = _read_executable(abspath)
        _check_ident(abspath, raw)
        try:
            return cls._from_bytes(abspath, raw, load_base)
        except (ELFError, ValueError, KeyError, IndexError, OverflowError) as exc:
            if isinstance(exc, ElfLoadError):
                raise
            raise ElfLoadError(f"{abspath}: malformed ELF file ({exc})") from exc

    @classmethod
    def _from_bytes(cls, path: str, raw: bytes, load_base: int | None) -> ElfImage:
        import io

        elf = ELFFile(io.BytesIO(raw))
        if elf["e_machine"] != "EM_X86_64":
            raise ElfLoadError(f"{path}: ELF for machine {elf['e_machine']}, not x86-64")
        elf_type = elf["e_type"]
        if elf_type not in ("ET_EXEC", "ET_DYN"):
            kind = {"ET_REL": "a relocatable object (.o)", "ET_CORE": "a core dump"}.get(elf_type, elf_type)
            raise ElfLoadError(f"{path}: is {kind}, not an executable")

        loads = []
        interp = None
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                loads.append(seg)
            elif seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
        if interp is not None:
            raise ElfLoadError(
                f"{path}: is dynamically linked: it needs a dynamic loader ({interp}), which this stub "
                "does not provide; rebuild it with -static (or -static-pie)"
            )
        needed = _dt_needed(elf)
        if needed:
            raise ElfLoadError(
                f"{path}: needs shared libraries ({', '.join(needed)}) and a dynamic loader, "
                "which this stub does not provide; rebuild it with -static"
            )
        if not loads:
            raise ElfLoadError(f"{path}: has no PT_LOAD segment, nothing to run")
        if elf["e_entry"] == 0 and elf_type == "ET_DYN":
            raise ElfLoadError(f"{path}: is a shared library (no entry point), not an executable")

        low = min(page_down(s["p_vaddr"]) for s in loads)
        high = max(page_up(s["p_vaddr"] + s["p_memsz"]) for s in loads)
        if elf_type == "ET_EXEC":
            base = 0
        elif load_base is not None:
            base = load_base - low
        else:
            align = max([PAGE_SIZE] + [s["p_align"] for s in loads])
            base = ((MMAP_BASE - (high - low)) & ~(align - 1)) - low

        segments = [
            Segment(
                vaddr=base + s["p_vaddr"],
                memsz=s["p_memsz"],
                data=raw[s["p_offset"] : s["p_offset"] + s["p_filesz"]],
                prot=_segment_prot(s["p_flags"]),
            )
            for s in loads
        ]
        return cls(
            path,
            elf_type=elf_type,
            load_base=base,
            entry=base + elf["e_entry"],
            segments=segments,
            phdr_addr=base + _phdr_vaddr(elf, loads),
            phnum=elf["e_phnum"],
            phentsize=elf["e_phentsize"],
            build_id=_build_id(elf),
            raw=raw,
            file_parts=_file_parts(elf),
        )

    # ----------------------------------------------------------------- geometry
    @property
    def load_bias(self) -> int:
        """The kernel's and gdb's name for `load_base`: what was added to every link-time address."""
        return self.load_base

    @property
    def end(self) -> int:
        """First page boundary after the highest segment: where Linux puts the program break."""
        return max(page_up(s.vaddr + s.memsz) for s in self.segments)

    @property
    def start(self) -> int:
        return min(page_down(s.vaddr) for s in self.segments)

    def page_protections(self) -> dict[int, int]:
        """page address -> UC_PROT_* (segments sharing a page get the union, as the kernel maps them)."""
        pages: dict[int, int] = {}
        for seg in self.segments:
            for page in range(page_down(seg.vaddr), page_up(seg.vaddr + seg.memsz), PAGE_SIZE):
                pages[page] = pages.get(page, 0) | seg.prot
        return pages

    # ----------------------------------------------------------------- symbols
    @cached_property
    def symbols(self) -> dict[str, Symbol]:
        """name -> Symbol(addr, size, type) for functions and data objects, relocated."""
        table: dict[str, Symbol] = {}
        for entry, sym_type in self._symbol_entries:
            if entry.name not in table:
                table[entry.name] = Symbol(entry.start, entry.size, sym_type)
        return table

    def symbol_at(self, addr: int) -> SymbolLocation | None:
        """The symbol containing `addr` as (name, offset, size), e.g. for `step+0x1c/0x40`."""
        starts, entries, max_end = self._symbol_index
        i = bisect.bisect_right(starts, addr) - 1
        best: _SymbolEntry | None = None
        # Walk back while an earlier symbol could still reach addr (max_end is a running maximum).
        while i >= 0 and max_end[i] > addr:
            entry = entries[i]
            if entry.start <= addr < entry.end:
                if best is None or entry.start > best.start or (
                    entry.start == best.start and entry.rank < best.rank
                ):
                    best = entry
            if best is not None and entry.start < best.start:
                break
            i -= 1
        if best is None:
            return None
        return SymbolLocation(best.name, addr - best.start, best.size)

    @cached_property
    def _symbol_entries(self) -> list[tuple[_SymbolEntry, str]]:
        import io

        elf = ELFFile(io.BytesIO(self._raw))
        section = elf.get_section_by_name(".symtab") or elf.get_section_by_name(".dynsym")
        if section is None:
            return []
        result: list[tuple[_SymbolEntry, str]] = []
        for sym in section.iter_symbols():
            st_type = sym["st_info"]["type"]
            if st_type in ("STT_FUNC", "STT_LOOS", "STT_GNU_IFUNC"):   # pyelftools names IFUNC STT_LOOS
                sym_type = "func"
            elif st_type == "STT_OBJECT":
                sym_type = "object"
            else:
                continue
            if not sym.name or sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS"):
                continue
            start = self.load_base + sym["st_value"]
            size = sym["st_size"]
            binding = {"STB_GLOBAL": 0, "STB_WEAK": 1}.get(sym["st_info"]["bind"], 2)
            underscores = len(sym.name) - len(sym.name.lstrip("_"))
            entry = _SymbolEntry(start, start + max(size, 1), sym.name, size, (binding, underscores, sym.name))
            result.append((entry, sym_type))
        # Globals first so that `symbols[name]` prefers them over a same-named static.
        result.sort(key=lambda pair: pair[0].rank)
        return result

    @cached_property
    def _symbol_index(self) -> tuple[list[int], list[_SymbolEntry], list[int]]:
        entries = sorted((e for e, _ in self._symbol_entries), key=lambda e: (e.start, e.rank))
        starts = [e.start for e in entries]
        max_end: list[int] = []
        running = 0
        for e in entries:
            running = max(running, e.end)
            max_end.append(running)
        return starts, entries, max_end


# --------------------------------------------------------------------- helpers
def _read_executable(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ElfLoadError(f"{path}: no such file", errno.ENOENT) from None
    except IsADirectoryError:
        raise ElfLoadError(f"{path}: is a directory", errno.EACCES) from None
    except PermissionError:
        raise ElfLoadError(f"{path}: permission denied", errno.EACCES) from None


def _check_ident(path: str, raw: bytes) -> None:
    if raw[:4] != _ELF_MAGIC:
        raise ElfLoadError(f"{path}: not an ELF file")
    if len(raw) > 4 and raw[4] != _ELFCLASS64:
        bits = {1: "a 32-bit"}.get(raw[4], f"an ELF class {raw[4]}")
        raise ElfLoadError(f"{path}: {bits} ELF; only x86-64 (64-bit) executables are supported")
    if len(raw) < 64:
        raise ElfLoadError(f"{path}: truncated ELF header")
    if raw[5] != _ELFDATA2LSB:
        raise ElfLoadError(f"{path}: big-endian ELF; only x86-64 executables are supported")


def _dt_needed(elf: ELFFile) -> list[str]:
    dynamic = elf.get_section_by_name(".dynamic")
    if dynamic is None or not hasattr(dynamic, "iter_tags"):
        return []
    return [tag.needed for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]


def _phdr_vaddr(elf: ELFFile, loads: list) -> int:
    """Where the program headers sit in memory (AT_PHDR before relocation)."""
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_PHDR":
            return seg["p_vaddr"]
    phoff = elf["e_phoff"]
    for seg in loads:
        if seg["p_offset"] <= phoff < seg["p_offset"] + seg["p_filesz"]:
            return seg["p_vaddr"] + (phoff - seg["p_offset"])
    return 0   # headers not mapped: Linux would pass a bogus AT_PHDR too; static glibc then skips TLS


def _file_parts(elf: ELFFile) -> tuple[tuple[int, int], ...]:
    """The ranges of the file a reader of it (gdb's BFD) reads one at a time: the ELF header, the
    program and section header tables, and each section's contents; sorted by start."""
    header = elf.header
    parts = [
        (0, header["e_ehsize"]),
        # num_segments/num_sections: e_phnum and e_shnum may say "see section 0" (extended numbering)
        (header["e_phoff"], header["e_phoff"] + elf.num_segments() * header["e_phentsize"]),
        (header["e_shoff"], header["e_shoff"] + elf.num_sections() * header["e_shentsize"]),
    ]
    parts += [(section["sh_offset"], section["sh_offset"] + section["sh_size"])
              for section in elf.iter_sections() if section["sh_type"] != "SHT_NOBITS"]
    return tuple(sorted((start, end) for start, end in parts if end > start))


def _build_id(elf: ELFFile) -> str | None:
    for section in elf.iter_sections():
        if section["sh_type"] != "SHT_NOTE":
            continue
        for note in section.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return None
