"""Assemble small Intel-syntax x86-64 snippets with binutils, for CPU tests.

`assemble(source, base)` runs `as --64` on the snippet (with
`.intel_syntax noprefix` prepended), then `objcopy -O binary` for the raw
bytes of .text and `nm` for the labels.  Nothing is linked: labels are
offsets into .text, relocated here by `base`, and data the snippet touches
is addressed absolutely (e.g. `.set X, 0x600000` then `qword ptr [X]`), so no
relocation is ever needed.  Results are cached on disk by the hash of the
source, because running binutils costs ~10 ms per snippet.

`RawProgram` maps the code, a data area and a stack into a fresh Unicorn
instance: the shape every test program in tests/target uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unicorn import (
    UC_ARCH_X86, UC_MODE_64, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, Uc,
)
from unicorn.x86_const import UC_X86_REG_RIP, UC_X86_REG_RSP

from gdbstub.target.process import enter_user_mode

CODE_BASE = 0x400000
DATA_BASE = 0x600000          # a data area of DATA_PAGES pages, read-write
DATA_PAGES = 4
STACK_TOP = 0x800000          # the stack grows down from here
STACK_SIZE = 0x10000


_CACHE_DIR = Path(tempfile.gettempdir()) / "trio-gdbstub-asm-cache"
_TOOL_TIMEOUT = 30


@dataclass(frozen=True)
class Assembled:
    code: bytes
    symbols: dict[str, int]   # label -> absolute address (base + offset in .text)
    base: int

    def __getitem__(self, label: str) -> int:
        return self.symbols[label]


def assemble(source: str, base: int = CODE_BASE) -> Assembled:
    """Assemble `source` (Intel syntax, no prefixes) placed at `base`."""
    text = ".intel_syntax noprefix\n.text\n" + source + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    cached = _CACHE_DIR / f"{key}.json"
    if cached.exists():
        entry = json.loads(cached.read_text())
    else:
        entry = _run_binutils(text)
        _CACHE_DIR.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a concurrent test run never sees half a file
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(cached)
    code = bytes.fromhex(entry["code"])
    symbols = {name: base + offset for name, offset in entry["symbols"].items()}
    return Assembled(code, symbols, base)


def _run_binutils(text: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="asm-") as work:
        src, obj, raw = (Path(work) / n for n in ("snippet.s", "snippet.o", "snippet.bin"))
        src.write_text(text)
        _tool(["as", "--64", "-o", str(obj), str(src)])
        _tool(["objcopy", "-O", "binary", "--only-section=.text", str(obj), str(raw)])
        listing = _tool(["nm", "--defined-only", str(obj)])
        symbols = {}
        for line in listing.splitlines():
            value, kind, name = line.split()
            if kind.lower() == "t":      # labels in .text only; .set constants are absolute ("a")
                symbols[name] = int(value, 16)
        return {"code": raw.read_bytes().hex(), "symbols": symbols}


def _tool(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{done.stderr}")
    return done.stdout


class RawProgram:
    """A Unicorn instance holding one assembled snippet, a data area and a stack.

    Code pages are R+X, data and stack R+W; RIP is at `start` (default: the
    first byte of the snippet).  Extra pages can be mapped with `map()`
    before the Cpu is built (the Cpu reads guest permissions at construction).
    """

    def __init__(self, source: str, start: str | None = None, *, user_mode: bool = False) -> None:
        self.asm = assemble(source)
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        if user_mode:           # CPL 3, as a Linux process runs (default: Unicorn's CPL 0)
            enter_user_mode(self.uc)
        code_size = _page_round(len(self.asm.code))
        self.uc.mem_map(CODE_BASE, code_size, UC_PROT_READ | UC_PROT_EXEC)
        self.uc.mem_write(CODE_BASE, self.asm.code)
        self.uc.mem_map(DATA_BASE, DATA_PAGES * 0x1000, UC_PROT_READ | UC_PROT_WRITE)
        self.uc.mem_map(STACK_TOP - STACK_SIZE, STACK_SIZE, UC_PROT_READ | UC_PROT_WRITE)
        self.uc.reg_write(UC_X86_REG_RSP, STACK_TOP - 0x100)
        self.uc.reg_write(UC_X86_REG_RIP, self.asm[start] if start else CODE_BASE)

    def __getitem__(self, label: str) -> int:
        return self.asm[label]

    def map(self, addr: int, size: int, perms: int = UC_PROT_ALL) -> None:
        self.uc.mem_map(addr, _page_round(size), perms)


def _page_round(n: int) -> int:
    return max(0x1000, (n + 0xFFF) & ~0xFFF)


def counted_loop(times: int) -> str:
    """Adds 1 to qword [X] `times` times (X: the test's `.set` data address), then int3; `loop` is the
    add, `target` its `dec rcx`, where breakpoint and execute-slot tests stop."""
    return f"""
    mov rcx, {times}
loop:
    add qword ptr [X], 1
target:
    dec rcx
    jnz loop
    int3
"""
