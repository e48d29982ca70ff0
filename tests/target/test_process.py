"""LinuxProcess: programs run on the emulated CPU behave like the same programs run natively,
and the process starts the way the Linux x86-64 ABI says (stack, auxv, registers, mappings)."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from unicorn import UC_ERR_WRITE_UNMAPPED, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE
from unicorn.x86_const import (
    UC_X86_REG_CS, UC_X86_REG_MXCSR, UC_X86_REG_RDX, UC_X86_REG_RIP, UC_X86_REG_RSP, UC_X86_REG_SS,
)

from gdbstub.target.elf import MMAP_BASE, ElfLoadError
from gdbstub.target.events import StopKind
from gdbstub.target.machine import Machine
from gdbstub.target.process import STACK_TOP, LinuxProcess, ProcessExit, ProcessSignal
from tests.programs.build import build, have_compiler, run_emulated, run_native

pytestmark = pytest.mark.skipif(not have_compiler(), reason="gcc is needed to build the test programs")

DEMO = Path(__file__).resolve().parents[2] / "gdbstub" / "demo" / "demo"
ENV = {"HOME": "/home/tester", "LANG": "C"}
SIGSEGV, SIGABRT = 11, 6

# auxv keys from include/uapi/linux/auxvec.h
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_EXECFN = 23, 25, 31


def spawn(name: str, *args: str, **options: object) -> LinuxProcess:
    path = build(name)
    return LinuxProcess.spawn(path, [str(path), *args], None, io.BytesIO(), io.BytesIO(), **options)


def read_u64(proc: LinuxProcess, addr: int) -> int:
    return int.from_bytes(proc.uc.mem_read(addr, 8), "little")


def read_cstr(proc: LinuxProcess, addr: int) -> bytes:
    length = min(256, STACK_TOP - addr) if addr < STACK_TOP else 256   # don't read past the stack top
    data = bytes(proc.uc.mem_read(addr, length))
    return data[: data.index(b"\0")]


# ----------------------------------------------------------------------------- native oracle
@pytest.mark.parametrize(
    "name, args",
    [
        ("hello", ()),
        ("exitcode", ()),
        ("malloc", ()),
        ("args", ("one", "two words", "")),
        ("float", ()),
        ("counter", ("50",)),
        ("freestanding", ()),
        ("abort", ()),
    ],
)
def test_program_matches_native_run(name: str, args: tuple[str, ...]) -> None:
    path = build(name)
    native = run_native(path, args, env=ENV)
    emulated = run_emulated(path, args, env=ENV)
    assert emulated.fault is None
    assert (emulated.stdout, emulated.stderr) == (native.stdout, native.stderr)
    assert (emulated.status, emulated.signal) == (native.status, native.signal)


def test_segv_faults_at_the_null_store_like_native_sigsegv() -> None:
    path = build("segv")
    native = run_native(path, env=ENV)
    emulated = run_emulated(path, env=ENV)
    assert native.signal == SIGSEGV
    assert emulated.fault is not None and emulated.fault.errno == UC_ERR_WRITE_UNMAPPED
    assert (emulated.stdout, emulated.stderr) == (native.stdout, native.stderr)
    assert emulated.pc is not None and emulated.pc < 0x500000      # stopped inside main's text


# (opcode bytes each instruction starts with)
@pytest.mark.parametrize("insn, opcode", [
    ("hlt", b"\xf4"), ("cli", b"\xfa"), ("rdmsr", b"\x0f\x32"),
])
def test_privileged_instructions_are_sigsegv_at_the_instruction_like_native(insn: str, opcode: bytes) -> None:
    # The program runs at CPL 3 with Linux's user selectors, as gdbserver shows them.
    path = build("privileged")
    assert run_native(path, (insn,), env=ENV).signal == SIGSEGV
    machine = Machine(str(path), [str(path), insn], stdout=io.BytesIO(), stderr=io.BytesIO())
    assert (machine.process.uc.reg_read(UC_X86_REG_CS), machine.process.uc.reg_read(UC_X86_REG_SS)) == (0x33, 0x2B)
    stop = machine.run(False)
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGSEGV)
    assert machine.read_memory(stop.pc, len(opcode)) == opcode


def test_the_privileged_program_runs_to_its_end_when_it_executes_none() -> None:
    assert run_emulated(build("privileged"), (), env=ENV).status == 0


def test_abort_stops_with_sigabrt_right_after_tgkill() -> None:
    proc = spawn("abort")
    proc.uc.emu_start(proc.entry, 0, timeout=10_000_000)
    assert proc.take_event() == ProcessSignal(SIGABRT)
    rip = proc.uc.reg_read(UC_X86_REG_RIP)
    assert bytes(proc.uc.mem_read(rip - 2, 2)) == b"\x0f\x05"        # resumes after the syscall
    assert not proc.exited
    assert proc.deliver_signal(SIGABRT) == ProcessSignal(SIGABRT, killed=True)
    assert proc.exited


def test_demo_binary_runs_like_native() -> None:
    native = run_native(DEMO)
    emulated = run_emulated(DEMO)
    assert native.status == 0 and b"counter = 1000000" in native.stdout
    assert (emulated.stdout, emulated.status) == (native.stdout, native.status)


def test_spin_runs_until_stopped_without_an_event() -> None:
    proc = spawn("spin")
    spins = proc.elf.symbols["spins"]
    proc.uc.emu_start(proc.entry, 0, timeout=50_000)          # 50 ms, then Unicorn stops it
    assert proc.take_event() is None and not proc.exited
    assert read_u64(proc, spins.addr) > 1000


def test_terminal_mode_line_buffers_stdout() -> None:
    class Writes(io.BytesIO):
        def __init__(self) -> None:
            super().__init__()
            self.chunks: list[bytes] = []

        def write(self, data: bytes) -> int:          # type: ignore[override]
            self.chunks.append(bytes(data))
            return super().write(data)

    chunks = {}
    for terminal in (True, False):
        out = Writes()
        path = build("hello")
        proc = LinuxProcess.spawn(path, stdout=out, stderr=io.BytesIO(), terminal=terminal)
        while proc.take_event() is None:
            proc.uc.emu_start(proc.uc.reg_read(UC_X86_REG_RIP), 0, timeout=10_000_000)
        chunks[terminal] = out.chunks
    assert chunks[True][0] == b"hello, world\n"               # a tty: one write per line
    assert len(chunks[False]) == 1                           # a pipe: one write at exit, as natively
    assert b"".join(chunks[True]) == b"".join(chunks[False])


def test_exit_status_is_reported_once_and_marks_the_process_exited() -> None:
    proc = spawn("exitcode")
    proc.uc.emu_start(proc.entry, 0, timeout=10_000_000)
    assert proc.take_event() == ProcessExit(42)
    assert proc.take_event() is None
    assert proc.exited


# ----------------------------------------------------------------------------- process start
def test_identity_and_entry_registers() -> None:
    path = build("hello")
    proc = LinuxProcess.spawn(os.path.relpath(path), stdout=io.BytesIO())
    assert proc.path == str(path) and os.path.isabs(proc.path)
    assert proc.pid == proc.tid == 4242
    assert proc.uc.reg_read(UC_X86_REG_RIP) == proc.entry == proc.elf.entry
    assert proc.uc.reg_read(UC_X86_REG_RDX) == 0                          # no rtld_fini
    assert proc.uc.reg_read(UC_X86_REG_MXCSR) == 0x1F80
    assert proc.uc.reg_read(UC_X86_REG_RSP) % 16 == 0


def test_stack_holds_argc_argv_envp_then_auxv() -> None:
    path = build("args")
    proc = LinuxProcess.spawn(path, ["prog", "a b", "c"], ["HOME=/h", "X=1"], io.BytesIO())
    sp = proc.uc.reg_read(UC_X86_REG_RSP)
    assert STACK_TOP - (8 << 20) < sp < STACK_TOP
    assert read_u64(proc, sp) == 3
    argv = [read_cstr(proc, read_u64(proc, sp + 8 * (1 + i))) for i in range(3)]
    assert argv == [b"prog", b"a b", b"c"] and read_u64(proc, sp + 32) == 0
    envp = [read_cstr(proc, read_u64(proc, sp + 40 + 8 * i)) for i in range(2)]
    assert envp == [b"HOME=/h", b"X=1"] and read_u64(proc, sp + 56) == 0
    assert bytes(proc.uc.mem_read(sp + 64, len(proc.auxv))) == proc.auxv


def test_default_argv_is_the_path_and_env_is_small() -> None:
    path = build("args")
    proc = LinuxProcess.spawn(path, stdout=io.BytesIO())
    sp = proc.uc.reg_read(UC_X86_REG_RSP)
    assert read_u64(proc, sp) == 1
    assert read_cstr(proc, read_u64(proc, sp + 8)) == os.fsencode(path)
    result = run_emulated(path, argv0=str(path))      # env={} -> no HOME
    assert b"HOME=(unset)" in result.stdout


def auxv_pairs(proc: LinuxProcess) -> list[tuple[int, int]]:
    words = struct.unpack(f"<{len(proc.auxv) // 8}Q", proc.auxv)
    return list(zip(words[::2], words[1::2]))


@pytest.mark.parametrize("name", ["hello", "pie"])
def test_auxv_fields(name: str) -> None:
    proc = spawn(name)
    raw = Path(proc.path).read_bytes()
    e_entry, e_phoff = struct.unpack_from("<QQ", raw, 24)
    e_phentsize, e_phnum = struct.unpack_from("<HH", raw, 54)
    pairs = auxv_pairs(proc)
    aux = dict(pairs)
    assert pairs[-1] == (AT_NULL, 0) and len(aux) == len(pairs)    # each key once, AT_NULL last
    assert aux[AT_PHENT] == e_phentsize == 56
    assert aux[AT_PHNUM] == e_phnum
    headers = raw[e_phoff : e_phoff + e_phnum * e_phentsize]
    assert bytes(proc.uc.mem_read(aux[AT_PHDR], len(headers))) == headers
    assert aux[AT_ENTRY] == proc.entry == proc.elf.load_base + e_entry
    assert aux[AT_PAGESZ] == 4096 and aux[AT_CLKTCK] == 100
    assert aux[AT_BASE] == 0 and aux[AT_FLAGS] == 0 and aux[AT_SECURE] == 0
    assert (aux[AT_UID], aux[AT_EUID], aux[AT_GID], aux[AT_EGID]) == (
        os.getuid(), os.geteuid(), os.getgid(), os.getegid())
    assert aux[AT_HWCAP] & (1 << 25) and aux[AT_HWCAP] & (1 << 26)   # CPUID.1:EDX SSE, SSE2
    assert read_cstr(proc, aux[AT_PLATFORM]) == b"x86_64"
    assert read_cstr(proc, aux[AT_EXECFN]) == os.fsencode(proc.path)
    random_addr = aux[AT_RANDOM]
    assert proc.page_perms(random_addr) == proc.page_perms(random_addr + 15) == UC_PROT_READ | UC_PROT_WRITE
    assert len(bytes(proc.uc.mem_read(random_addr, 16))) == 16


@pytest.mark.skipif(shutil.which("setarch") is None, reason="setarch turns ASLR off for the native run")
def test_static_pie_loads_where_linux_puts_it_with_aslr_off() -> None:
    path = build("pie")
    native = subprocess.run(["setarch", "-R", str(path)], capture_output=True, timeout=10, env={})
    emulated = run_emulated(path)
    assert native.returncode == 0 and b"main at 0x7ff" in native.stdout
    assert (emulated.stdout, emulated.status) == (native.stdout, 0)


def test_static_pie_is_placed_just_below_the_mmap_base() -> None:
    proc = spawn("pie")
    image = proc.elf
    assert image.is_static_pie
    assert image.start == image.load_base and image.end == MMAP_BASE
    assert proc.mmap_top == image.start       # later mmaps go below the image


def test_page_perms_follow_the_segments_and_stack() -> None:
    proc = spawn("hello")
    for seg in proc.elf.segments:
        assert proc.page_perms(seg.vaddr + seg.memsz - 1) is not None
    text = proc.elf.symbols["main"].addr
    assert proc.page_perms(text) == UC_PROT_READ | UC_PROT_EXEC
    data = proc.elf.symbols["_IO_2_1_stdout_"].addr
    assert proc.page_perms(data) == UC_PROT_READ | UC_PROT_WRITE
    assert proc.page_perms(STACK_TOP - 1) == UC_PROT_READ | UC_PROT_WRITE
    assert proc.page_perms(STACK_TOP) is None and proc.page_perms(0) is None
    assert proc.page_perms(proc.brk) is None                       # nothing allocated yet


def test_mapping_listeners_run_after_brk_and_mmap() -> None:
    proc = spawn("malloc")
    seen: list[int | None] = []
    proc.mapping_listeners.append(lambda: seen.append(proc.page_perms(proc.brk - 1)))
    while proc.take_event() is None:
        proc.uc.emu_start(proc.uc.reg_read(UC_X86_REG_RIP), 0, timeout=10_000_000)
    assert len(seen) >= 4                     # brk growth, mmap and munmap of the big block...
    assert seen[-1] == UC_PROT_READ | UC_PROT_WRITE   # the heap is mapped when the listener runs


def test_dynamically_linked_program_is_refused() -> None:
    path = build("hello", flags=["-g", "-O0"])
    with pytest.raises(ElfLoadError, match="dynamic loader"):
        LinuxProcess.spawn(path)
