"""One emulated single-threaded Linux x86-64 process: its address space, initial stack and signal state.

`LinuxProcess.spawn()` maps a static executable into a fresh Unicorn instance, builds the stack the
kernel would build (argc, argv, envp, auxv), points RIP at the entry and installs the syscall hook
(syscalls.py). It never runs the CPU: the CPU engine calls `uc.emu_start` and, after every return, asks
`take_event()` whether a syscall ended the run (exit, or a signal the program sent itself).

Memory: `AddressSpace` is the program's own view of its mappings (what mmap/mprotect/brk asked for).
It is the source of truth for `page_perms()`, for -EFAULT checks on syscall buffers, and for finding
free space; Unicorn's real protections may differ on pages the debug unit watches.

Signals: there are no user signal handlers. rt_sigaction is recorded; a signal the program sends
itself stops the run (`ProcessSignal(signo)`, as ptrace would show it to gdb), and when gdb resumes with
that signal `deliver_signal()` applies the default action (terminate, ignore, or no-op for job-control
stops). A signal with a recorded user handler is discarded with a warning, since the handler cannot run.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from unicorn import (
    UC_ARCH_X86,
    UC_MODE_64,
    UC_PROT_READ,
    UC_PROT_WRITE,
    Uc,
    UcError,
)
from unicorn.x86_const import (
    UC_X86_REG_EFLAGS,
    UC_X86_REG_FPCW,
    UC_X86_REG_MXCSR,
    UC_X86_REG_R11,
    UC_X86_REG_RAX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSP,
)

from gdbstub.target.elf import MMAP_BASE, MMAP_MIN_ADDR, PAGE_SIZE, USER_TOP, ElfImage, ElfLoadError, page_up
from gdbstub.target.events import SIGKILL
from gdbstub.target.syscalls import NSIG, SIGSTOP, GuestFault, install_syscall_hook

__all__ = [
    "AddressSpace",
    "ElfLoadError",
    "LinuxProcess",
    "ProcessExit",
    "ProcessSignal",
    "DEFAULT_ENV",
    "STACK_TOP",
    "STACK_SIZE",
]

log = logging.getLogger("gdbstub.target")

# Linux x86-64 user address space with ASLR off (what a program sees under real gdb).
STACK_TOP = 0x7FFFFFFFF000
STACK_SIZE = 8 << 20                       # RLIMIT_STACK default; prlimit64 reports the same
STATIC_PIE_BRK = page_up(STACK_TOP // 3 * 2)   # ELF_ET_DYN_BASE: Linux moves a static-pie's brk here

DEFAULT_ENV = ("PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "LANG=C", "PWD=/")
DEFAULT_PID = 4242

# Initial FPU/SSE state Linux gives a new process (fninit / MXCSR reset); Unicorn starts with 0 (= all
# exceptions unmasked), which would make the first inexact float operation trap.
_FPU_CONTROL_WORD = 0x037F
_MXCSR_DEFAULT = 0x1F80
_RFLAGS_USER = 0x202                       # IF set, reserved bit 1
# Linux's user data selector (__USER_DS), gdbserver's ss; sysret makes cs 8 more (__USER_CS, 0x33).
USER_SS = 0x2B
_MSR_EFER, _MSR_STAR, _EFER_SCE = 0xC0000080, 0xC0000081, 1
_SYSRETQ = b"\x48\x0f\x07"

# auxv keys (include/uapi/linux/auxvec.h, arch/x86/include/uapi/asm/auxvec.h)
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN = 23, 25, 26, 31

_IGNORED_BY_DEFAULT = frozenset({17, 18, 23, 28})          # SIGCHLD SIGCONT SIGURG SIGWINCH
_STOP_BY_DEFAULT = frozenset({19, 20, 21, 22})             # SIGSTOP SIGTSTP SIGTTIN SIGTTOU: no job control
_UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
SIG_DFL, SIG_IGN = 0, 1


@dataclass(frozen=True)
class ProcessExit:
    """The program called exit/exit_group: `status` is the low 8 bits, as wait(2) reports them."""

    status: int


@dataclass(frozen=True)
class ProcessSignal:
    """A signal for the program. `killed=False`: a stop to show the debugger (like a ptrace
    signal-delivery stop). `killed=True`: the program was terminated by it."""

    signo: int
    killed: bool = False


ProcessEvent = ProcessExit | ProcessSignal


# ----------------------------------------------------------------------------- address space
class AddressSpace:
    """The program's mappings as it asked for them, kept in step with the Unicorn instance.

    Regions are disjoint page-aligned [start, end) intervals, sorted by start, each with UC_PROT_* bits.
    """

    def __init__(self, uc: Uc) -> None:
        self._uc = uc
        self._starts: list[int] = []
        self._regions: list[tuple[int, int, int]] = []

    def regions(self) -> list[tuple[int, int, int]]:
        return list(self._regions)

    def prot_at(self, addr: int) -> int | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, end, prot = self._regions[i]
            if start <= addr < end:
                return prot
        return None

    def is_free(self, start: int, end: int) -> bool:
        return not self._overlapping(start, end)

    def allows(self, addr: int, length: int, need: int) -> bool:
        """True if every byte of [addr, addr+length) is mapped with at least the `need` permissions."""
        if length <= 0:
            return True
        if addr < 0 or addr + length > USER_TOP:
            return False
        cursor = addr
        for start, end, prot in self._overlapping(addr, addr + length):
            if start > cursor or prot & need != need:
                return False
            cursor = end
        return cursor >= addr + length

    def find_free(self, length: int, top: int) -> int | None:
        """Highest page-aligned start of a free gap of `length` bytes ending at or below `top`."""
        limit = top
        for start, end, _ in reversed(self._regions):
            if start >= limit:
                continue
            if end <= limit - length:
                break
            limit = start
        candidate = limit - length
        return candidate if candidate >= MMAP_MIN_ADDR else None

    def map(self, start: int, end: int, prot: int) -> None:
        """Map fresh zeroed pages over [start, end), replacing whatever was there (MAP_FIXED)."""
        self.unmap(start, end)
        self._uc.mem_map(start, end - start, prot)
        self._insert(start, end, prot)

    def unmap(self, start: int, end: int) -> None:
        for s, e, _ in self._overlapping(start, end):
            self._uc.mem_unmap(max(s, start), min(e, end) - max(s, start))
        self._carve(start, end)

    def protect(self, start: int, end: int, prot: int) -> None:
        """Change permissions; the caller has checked that the range is fully mapped."""
        self._uc.mem_protect(start, end - start, prot)
        self._carve(start, end)
        self._insert(start, end, prot)

    # ---- bookkeeping
    def _overlapping(self, start: int, end: int) -> list[tuple[int, int, int]]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        found = []
        while i < len(self._regions) and self._regions[i][0] < end:
            s, e, p = self._regions[i]
            if e > start:
                found.append((s, e, p))
            i += 1
        return found

    def _carve(self, start: int, end: int) -> None:
        """Remove [start, end) from the bookkeeping, splitting regions that stick out."""
        kept: list[tuple[int, int, int]] = []
        for s, e, p in self._regions:
            if e <= start or s >= end:
                kept.append((s, e, p))
                continue
            if s < start:
                kept.append((s, start, p))
            if e > end:
                kept.append((end, e, p))
        self._set(kept)

    def _insert(self, start: int, end: int, prot: int) -> None:
        self._set(sorted(self._regions + [(start, end, prot)]))

    def _set(self, regions: list[tuple[int, int, int]]) -> None:
        self._regions = regions
        self._starts = [r[0] for r in regions]


# ----------------------------------------------------------------------------- initial stack
@dataclass(frozen=True)
class InitialStack:
    sp: int                 # RSP at the entry point: points at argc, 16-byte aligned
    image: bytes            # bytes from sp up to STACK_TOP
    auxv: bytes             # the auxiliary vector exactly as placed (pairs of u64, ending with AT_NULL)
    execfn_addr: int


def build_initial_stack(
    argv: Sequence[bytes],
    envp: Sequence[bytes],
    execfn: bytes,
    aux_before_random: Sequence[tuple[int, int]],
    random16: bytes,
    top: int = STACK_TOP,
) -> InitialStack:
    """Lay out the stack as Linux's fs/exec.c + create_elf_tables() do: strings at the top
    (execfn highest, then envp, then argv strings), then "x86_64" and the AT_RANDOM bytes, then the
    16-byte aligned argc/argv/envp/auxv block. AT_PLATFORM, AT_RANDOM and AT_EXECFN are filled here."""
    blob = bytearray()

    def push(data: bytes) -> int:
        blob[:0] = data                     # grows downward: newest data at the lowest address
        return top - len(blob)

    push(b"\0" * 8)                          # the end marker word at the very top
    execfn_addr = push(execfn + b"\0")
    env_addrs = [push(s + b"\0") for s in reversed(envp)][::-1]
    arg_addrs = [push(s + b"\0") for s in reversed(argv)][::-1]
    _pad_to(blob, top, 16, push)
    platform_addr = push(b"x86_64\0")
    random_addr = push(random16)

    aux = list(aux_before_random) + [
        (AT_RANDOM, random_addr),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn_addr),
        (AT_PLATFORM, platform_addr),
        (AT_NULL, 0),
    ]
    auxv = b"".join(k.to_bytes(8, "little") + v.to_bytes(8, "little") for k, v in aux)
    words = [len(argv), *arg_addrs, 0, *env_addrs, 0]
    table = b"".join(w.to_bytes(8, "little") for w in words) + auxv
    sp = (top - len(blob) - len(table)) & ~0xF
    blob[:0] = table + b"\0" * (top - len(blob) - len(table) - sp)
    return InitialStack(sp=sp, image=bytes(blob), auxv=auxv, execfn_addr=execfn_addr)


def _pad_to(blob: bytearray, top: int, align: int, push: Callable[[bytes], int]) -> None:
    misalign = (top - len(blob)) % align
    if misalign:
        push(b"\0" * misalign)


@functools.cache
def _cpuid_leaf1_edx() -> int:
    """AT_HWCAP on x86 is CPUID.1:EDX; ask the emulated CPU model rather than guess."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0x1000, PAGE_SIZE)
    uc.mem_write(0x1000, b"\x0f\xa2")        # cpuid
    uc.reg_write(UC_X86_REG_RAX, 1)
    uc.emu_start(0x1000, 0x1002)
    return uc.reg_read(UC_X86_REG_RDX)


def enter_user_mode(uc: Uc) -> None:
    """Drop a fresh CPU (nothing mapped yet) to privilege level 3, as the kernel's sysret does.

    Unicorn starts at CPL 0, where `hlt`, `cli` or `rdmsr` simply run (and `hlt` ends emulation as
    quietly as the end of a counted run does).  At CPL 3 they raise #GP, and Linux delivers SIGSEGV.
    """
    scratch = PAGE_SIZE
    uc.mem_map(scratch, PAGE_SIZE)
    uc.mem_write(scratch, _SYSRETQ)
    uc.msr_write(_MSR_EFER, uc.msr_read(_MSR_EFER) | _EFER_SCE)
    # sysretq loads CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8, each with RPL 3.
    uc.msr_write(_MSR_STAR, (USER_SS - 3 - 8) << 48)
    uc.reg_write(UC_X86_REG_RCX, scratch + len(_SYSRETQ))     # where sysretq returns to
    uc.reg_write(UC_X86_REG_R11, _RFLAGS_USER)                # and the flags it loads
    uc.emu_start(scratch, 0, count=1)
    uc.mem_unmap(scratch, PAGE_SIZE)
    uc.reg_write(UC_X86_REG_RCX, 0)
    uc.reg_write(UC_X86_REG_R11, 0)


def _to_bytes(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else os.fsencode(s)


# ----------------------------------------------------------------------------- the process
class LinuxProcess:
    """A loaded program on its own Unicorn instance. Create with `LinuxProcess.spawn()`."""

    def __init__(
        self,
        uc: Uc,
        elf: ElfImage,
        *,
        stdout: BinaryIO,
        stderr: BinaryIO,
        stdin_data: bytes,
        terminal: bool,
        pid: int = DEFAULT_PID,
    ) -> None:
        self.uc = uc
        self.elf = elf
        self.path = elf.path
        self.entry = elf.entry
        self.pid = pid
        self.tid = pid
        self.auxv = b""
        self.memory = AddressSpace(uc)
        self.mapping_listeners: list[Callable[[], None]] = []
        self.stdout = stdout
        self.stderr = stderr
        self.stdin_data = stdin_data
        self.terminal = terminal            # fds 0-2 behave like a tty (line-buffered stdout)
        self.open_fds = {0, 1, 2}
        self.exited = False
        self._event: ProcessEvent | None = None
        # brk area: [brk_start, brk) is mapped up to page_up(brk)
        self.brk_start = self.brk = 0
        self.mmap_top = MMAP_BASE
        # signal state (no handlers are ever run; see module docstring)
        self.sigactions: dict[int, bytes] = {}      # signo -> raw struct k_sigaction (32 bytes)
        self.sigmask = 0
        self.pending_signals = 0
        self.fs_base = 0
        self.clear_child_tid = 0
        self.robust_list = (0, 0)
        self.warned: set[str] = set()               # one log line per kind of oddity

    # ---------------------------------------------------------------- creation
    @classmethod
    def spawn(
        cls,
        path: str | os.PathLike[str],
        argv: Sequence[str | bytes] | None = None,
        envp: Sequence[str | bytes] | None = None,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
        *,
        stdin: bytes | None = None,
        terminal: bool | None = None,
    ) -> LinuxProcess:
        """Load `path` and stop at its first instruction.

        stdin: bytes the program reads from fd 0 (default: none, read() returns 0 = EOF).
        terminal: whether fds 0-2 look like a tty (TCGETS succeeds, glibc line-buffers stdout);
        default: whether `stdout` itself is a terminal, i.e. what the program would see natively.
        """
        elf = ElfImage.open(path)
        out = stdout if stdout is not None else _binary(sys.stdout, sys.__stdout__)
        err = stderr if stderr is not None else _binary(sys.stderr, sys.__stderr__)
        if terminal is None:
            terminal = _isatty(out)
        uc = Uc(UC_ARCH_X86, UC_MODE_64)
        enter_user_mode(uc)
        proc = cls(uc, elf, stdout=out, stderr=err, stdin_data=stdin or b"", terminal=terminal)
        proc._load_image()
        argv_b = [_to_bytes(a) for a in (argv if argv is not None else [elf.path])]
        envp_b = [_to_bytes(e) for e in (envp if envp is not None else DEFAULT_ENV)]
        proc._build_stack(argv_b, envp_b)
        install_syscall_hook(proc)
        return proc

    def _load_image(self) -> None:
        elf = self.elf
        pages = elf.page_protections()
        for start, end, prot in _runs(pages):
            self.memory.map(start, end, prot)
        for seg in elf.segments:
            self.uc.mem_write(seg.vaddr, seg.data)   # mem_write ignores page protections
        if elf.is_static_pie:
            self.brk_start = self.brk = STATIC_PIE_BRK
            self.mmap_top = elf.start
        else:
            self.brk_start = self.brk = elf.end

    def _build_stack(self, argv: list[bytes], envp: list[bytes]) -> None:
        elf = self.elf
        aux = [
            (AT_HWCAP, _cpuid_leaf1_edx()),
            (AT_PAGESZ, PAGE_SIZE),
            (AT_CLKTCK, 100),
            (AT_PHDR, elf.phdr_addr),
            (AT_PHENT, elf.phentsize),
            (AT_PHNUM, elf.phnum),
            (AT_BASE, 0),
            (AT_FLAGS, 0),
            (AT_ENTRY, elf.entry),
            (AT_UID, os.getuid()),
            (AT_EUID, os.geteuid()),
            (AT_GID, os.getgid()),
            (AT_EGID, os.getegid()),
            (AT_SECURE, 0),
        ]
        stack = build_initial_stack(argv, envp, os.fsencode(elf.path), aux, os.urandom(16))
        self.memory.map(STACK_TOP - STACK_SIZE, STACK_TOP, UC_PROT_READ | UC_PROT_WRITE)
        self.uc.mem_write(stack.sp, stack.image)
        self.auxv = stack.auxv
        uc = self.uc
        uc.reg_write(UC_X86_REG_RSP, stack.sp)
        uc.reg_write(UC_X86_REG_RIP, elf.entry)
        uc.reg_write(UC_X86_REG_RDX, 0)          # rtld_fini for _start: none in a static program
        uc.reg_write(UC_X86_REG_EFLAGS, _RFLAGS_USER)
        uc.reg_write(UC_X86_REG_FPCW, _FPU_CONTROL_WORD)
        uc.reg_write(UC_X86_REG_MXCSR, _MXCSR_DEFAULT)

    # ---------------------------------------------------------------- events for the CPU loop
    def take_event(self) -> ProcessEvent | None:
        """The exit or signal a syscall recorded (it also called emu_stop); cleared by reading."""
        event, self._event = self._event, None
        return event

    def deliver_signal(self, signo: int) -> ProcessEvent | None:
        """gdb resumed with C<signo>: apply what Linux would do with no handler running.
        Returns ProcessSignal(signo, killed=True) if that terminates the program, else None."""
        if self.exited or signo == 0:
            return None
        action = self._handler_of(signo)
        if signo != SIGKILL and action == SIG_IGN:
            return None
        if signo != SIGKILL and action != SIG_DFL:
            self.warn_once(f"handler{signo}", "signal %d has a user handler, which is not emulated: "
                           "the signal is discarded", signo)
            return None
        if signo in _IGNORED_BY_DEFAULT or signo in _STOP_BY_DEFAULT:
            return None
        self.exited = True
        return ProcessSignal(signo, killed=True)

    # ---------------------------------------------------------------- used by syscalls.py
    def exit(self, status: int) -> None:
        self.exited = True
        self._stop_with(ProcessExit(status & 0xFF))

    def send_self_signal(self, signo: int) -> None:
        """kill/tkill/tgkill aimed at this process. Blocked signals wait in `pending_signals`."""
        if signo == SIGKILL:
            self.exited = True
            self._stop_with(ProcessSignal(SIGKILL, killed=True))
            return
        bit = 1 << (signo - 1)
        if self.sigmask & bit:
            self.pending_signals |= bit
        else:
            self._stop_with(ProcessSignal(signo))

    def set_sigmask(self, mask: int) -> None:
        """New blocked set; a pending signal that becomes unblocked is reported now (lowest first)."""
        self.sigmask = mask & ~_UNBLOCKABLE & ((1 << NSIG) - 1)
        ready = self.pending_signals & ~self.sigmask
        if ready and self._event is None:
            signo = (ready & -ready).bit_length()
            self.pending_signals &= ~(1 << (signo - 1))
            self._stop_with(ProcessSignal(signo))

    def notify_mappings_changed(self) -> None:
        for listener in list(self.mapping_listeners):
            listener()

    def page_perms(self, addr: int) -> int | None:
        """The program's own UC_PROT_* for the page holding `addr`, or None if it is unmapped."""
        return self.memory.prot_at(addr)

    def read_memory(self, addr: int, length: int) -> bytes:
        """Read a syscall buffer with the program's permissions; GuestFault (-> EFAULT) if it can't."""
        if not self.memory.allows(addr, length, UC_PROT_READ):
            raise GuestFault(addr)
        if length == 0:
            return b""
        try:
            return bytes(self.uc.mem_read(addr, length))
        except UcError as exc:
            raise GuestFault(addr) from exc

    def write_memory(self, addr: int, data: bytes) -> None:
        if not self.memory.allows(addr, len(data), UC_PROT_WRITE):
            raise GuestFault(addr)
        if not data:
            return
        try:
            self.uc.mem_write(addr, data)
        except UcError as exc:
            raise GuestFault(addr) from exc

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (without the NUL), read page by page so a short string near the
        end of a mapping is fine."""
        out = bytearray()
        while len(out) < limit:
            chunk_len = min(PAGE_SIZE - (addr + len(out)) % PAGE_SIZE, limit - len(out))
            chunk = self.read_memory(addr + len(out), chunk_len)
            nul = chunk.find(b"\0")
            if nul >= 0:
                return bytes(out + chunk[:nul])
            out += chunk
        raise GuestFault(addr)          # ENAMETOOLONG in Linux; -EFAULT is close enough here

    def warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message, *args)

    def regions(self) -> list[tuple[int, int, int]]:
        """(start, end, UC_PROT_*) of every mapping, as the program asked for them."""
        return self.memory.regions()

    # ---------------------------------------------------------------- internals
    def _stop_with(self, event: ProcessEvent) -> None:
        self._event = event
        self.uc.emu_stop()

    def _handler_of(self, signo: int) -> int:
        raw = self.sigactions.get(signo)
        return int.from_bytes(raw[:8], "little") if raw else SIG_DFL

    def __repr__(self) -> str:
        return f"<LinuxProcess pid={self.pid} {self.path!r} exited={self.exited}>"


def _runs(pages: dict[int, int]) -> list[tuple[int, int, int]]:
    """Coalesce {page: prot} into maximal (start, end, prot) runs of contiguous equal pages."""
    runs: list[tuple[int, int, int]] = []
    for page in sorted(pages):
        prot = pages[page]
        if runs and runs[-1][1] == page and runs[-1][2] == prot:
            runs[-1] = (runs[-1][0], page + PAGE_SIZE, prot)
        else:
            runs.append((page, page + PAGE_SIZE, prot))
    return runs


def _binary(stream: object, original: object) -> BinaryIO:
    """The binary side of a text stream; a replacement without one (a StringIO) falls back to the
    interpreter's original stream."""
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else original.buffer   # type: ignore[union-attr]


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False
