"""System calls: each handler on a real process (a freestanding program, so nothing else has run),
called through `dispatch` and, for the hook path, through real `syscall` instructions."""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
import time

import pytest
from unicorn import UC_PROT_EXEC, UC_PROT_NONE, UC_PROT_READ, UC_PROT_WRITE, UcError
from unicorn.x86_const import (
    UC_X86_REG_FS_BASE,
    UC_X86_REG_R11,
    UC_X86_REG_RAX,
    UC_X86_REG_RCX,
    UC_X86_REG_RIP,
)

from gdbstub.target.elf import MMAP_BASE
from gdbstub.target.process import STACK_TOP, LinuxProcess, ProcessExit, ProcessSignal
from gdbstub.target.syscalls import SYSCALL_NAMES, dispatch
from tests.programs.build import build, have_compiler

pytestmark = pytest.mark.skipif(not have_compiler(), reason="gcc is needed to build the test programs")

NR = {name: nr for nr, name in SYSCALL_NAMES.items()}
SCRATCH = STACK_TOP - (4 << 20)          # deep in the 8 MiB stack mapping: RW and unused
UNMAPPED = 0x1234_0000
RW, RX = UC_PROT_READ | UC_PROT_WRITE, UC_PROT_READ | UC_PROT_EXEC
PAGE = 0x1000
SIGABRT, SIGUSR1, SIGCHLD, SIGTERM, SIGKILL = 6, 10, 17, 15, 9


@pytest.fixture
def proc() -> LinuxProcess:
    return LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), stderr=io.BytesIO())


def call(p: LinuxProcess, name: str, *args: int) -> int:
    return dispatch(p, NR[name], tuple(a & (2**64 - 1) for a in args) + (0,) * (6 - len(args)))


def put(p: LinuxProcess, addr: int, data: bytes) -> int:
    p.uc.mem_write(addr, data)
    return addr


def get(p: LinuxProcess, addr: int, n: int) -> bytes:
    return bytes(p.uc.mem_read(addr, n))


def mmap_anon(p: LinuxProcess, length: int, prot: int = 3, addr: int = 0, extra_flags: int = 0) -> int:
    return call(p, "mmap", addr, length, prot, 0x22 | extra_flags, -1, 0)   # MAP_PRIVATE|MAP_ANONYMOUS


# ----------------------------------------------------------------------------- files
def test_write_goes_to_the_stream_and_flushes(proc: LinuxProcess) -> None:
    buf = put(proc, SCRATCH, b"out!err?")
    assert call(proc, "write", 1, buf, 4) == 4
    assert call(proc, "write", 2, buf + 4, 4) == 4
    assert proc.stdout.getvalue() == b"out!" and proc.stderr.getvalue() == b"err?"


def test_write_errors(proc: LinuxProcess) -> None:
    assert call(proc, "write", 7, SCRATCH, 1) == -errno.EBADF
    assert call(proc, "write", 1, UNMAPPED, 1) == -errno.EFAULT
    guard = mmap_anon(proc, PAGE, prot=0)                 # PROT_NONE: Unicorn could read it, the program can't
    assert call(proc, "write", 1, guard, 1) == -errno.EFAULT
    assert call(proc, "close", 1) == 0
    assert call(proc, "write", 1, SCRATCH, 1) == -errno.EBADF
    assert call(proc, "close", 1) == -errno.EBADF


def test_writev_gathers(proc: LinuxProcess) -> None:
    a, b = put(proc, SCRATCH, b"hello "), put(proc, SCRATCH + 0x100, b"world\n")
    iov = put(proc, SCRATCH + 0x200, struct.pack("<4Q", a, 6, b, 6))
    assert call(proc, "writev", 1, iov, 2) == 12
    assert proc.stdout.getvalue() == b"hello world\n"
    assert call(proc, "writev", 1, iov, 1025) == -errno.EINVAL
    bad = put(proc, SCRATCH + 0x300, struct.pack("<2Q", UNMAPPED, 1))
    assert call(proc, "writev", 1, bad, 1) == -errno.EFAULT


def test_read_gives_stdin_data_then_eof() -> None:
    p = LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), stdin=b"abcdef")
    assert call(p, "read", 0, SCRATCH, 4) == 4 and get(p, SCRATCH, 4) == b"abcd"
    assert call(p, "read", 0, SCRATCH, 100) == 2 and get(p, SCRATCH, 2) == b"ef"
    assert call(p, "read", 0, SCRATCH, 100) == 0
    assert call(p, "read", 1, SCRATCH, 1) == -errno.EBADF


def test_read_into_a_read_only_page_is_efault() -> None:
    p = LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), stdin=b"x")
    text = p.entry & ~0xFFF
    assert p.page_perms(text) == RX
    assert call(p, "read", 0, text, 1) == -errno.EFAULT
    assert p.stdin_data == b"x"                          # nothing consumed


def test_fstat_describes_a_pipe_or_a_terminal() -> None:
    for terminal, kind in ((False, 0o010000), (True, 0o020000)):    # S_IFIFO, S_IFCHR
        p = LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), terminal=terminal)
        put(p, SCRATCH + 144, b"\xee" * 8)
        assert call(p, "fstat", 1, SCRATCH) == 0
        st_mode, st_uid = struct.unpack_from("<II", get(p, SCRATCH, 144), 24)
        assert st_mode & 0o170000 == kind and st_uid == os.getuid()
        assert get(p, SCRATCH + 144, 8) == b"\xee" * 8    # exactly 144 bytes written
        empty = put(p, SCRATCH + 0x400, b"\0")
        assert call(p, "newfstatat", 2, empty, SCRATCH, 0x1000) == 0           # AT_EMPTY_PATH
        assert call(p, "newfstatat", -100, put(p, SCRATCH + 0x500, b"/etc\0"), SCRATCH, 0) == -errno.ENOENT
        assert call(p, "fstat", 5, SCRATCH) == -errno.EBADF


def test_tcgets_only_on_a_terminal() -> None:
    pipe = LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), terminal=False)
    assert call(pipe, "ioctl", 1, 0x5401, SCRATCH) == -errno.ENOTTY
    tty = LinuxProcess.spawn(build("freestanding"), stdout=io.BytesIO(), terminal=True)
    assert call(tty, "ioctl", 1, 0x5401, SCRATCH) == 0
    c_lflag = struct.unpack_from("<I", get(tty, SCRATCH, 36), 12)[0]
    assert c_lflag & 0o2                                 # ICANON: a cooked terminal
    assert call(tty, "ioctl", 1, 0x5413, SCRATCH) == 0
    assert struct.unpack_from("<HH", get(tty, SCRATCH, 4)) == (24, 80)
    assert call(tty, "ioctl", 9, 0x5401, SCRATCH) == -errno.EBADF


def test_open_finds_no_files(proc: LinuxProcess) -> None:
    path = put(proc, SCRATCH, b"/etc/passwd\0")
    assert call(proc, "openat", -100, path, 0, 0) == -errno.ENOENT
    assert call(proc, "open", UNMAPPED, 0, 0) == -errno.EFAULT


def test_at_calls_check_dirfd_as_linux_does(proc: LinuxProcess) -> None:
    """A relative path starts at dirfd: AT_FDCWD, or an open directory (stdio is none: ENOTDIR),
    else EBADF. An absolute path ignores dirfd; an empty one is ENOENT without AT_EMPTY_PATH."""
    relative, absolute, empty = (put(proc, SCRATCH + 0x100 * i, name)
                                 for i, name in enumerate((b"etc\0", b"/etc\0", b"\0"), 1))
    for name, dirfd, expected in ((relative, -100, errno.ENOENT), (relative, 1, errno.ENOTDIR),
                                  (relative, 9, errno.EBADF), (absolute, 9, errno.ENOENT),
                                  (empty, 9, errno.ENOENT)):
        assert call(proc, "openat", dirfd, name, 0, 0) == -expected
        assert call(proc, "faccessat", dirfd, name, 0) == -expected
        assert call(proc, "newfstatat", dirfd, name, SCRATCH, 0) == -expected
    # readlinkat: an empty path names dirfd itself, so a closed one is EBADF there.
    for name, dirfd, expected in ((relative, -100, errno.ENOENT), (relative, 1, errno.ENOTDIR),
                                  (relative, 9, errno.EBADF), (absolute, 9, errno.ENOENT),
                                  (empty, -100, errno.ENOENT), (empty, 1, errno.ENOENT),
                                  (empty, 9, errno.EBADF)):
        assert call(proc, "readlinkat", dirfd, name, SCRATCH, 64) == -expected
    # Bad modes and flags are EINVAL before anything else is looked at.
    assert call(proc, "faccessat", 9, relative, 8) == -errno.EINVAL
    assert call(proc, "access", absolute, 8) == -errno.EINVAL
    assert call(proc, "access", absolute, 4) == -errno.ENOENT
    assert call(proc, "newfstatat", 9, relative, SCRATCH, 0x80000) == -errno.EINVAL
    # AT_EMPTY_PATH: dirfd itself. AT_FDCWD is the current directory, not found like any path here.
    assert call(proc, "newfstatat", 1, empty, SCRATCH, 0x1000) == 0
    assert call(proc, "newfstatat", 9, empty, SCRATCH, 0x1000) == -errno.EBADF
    assert call(proc, "newfstatat", -100, empty, SCRATCH, 0x1000) == -errno.ENOENT


def test_readlink_proc_self_exe(proc: LinuxProcess) -> None:
    link = put(proc, SCRATCH, b"/proc/self/exe\0")
    target = os.fsencode(proc.path)
    assert call(proc, "readlink", link, SCRATCH + 0x100, 4096) == len(target)
    assert get(proc, SCRATCH + 0x100, len(target)) == target
    assert call(proc, "readlink", link, SCRATCH + 0x100, 4) == 4                 # truncated, no NUL
    other = put(proc, SCRATCH + 0x200, b"/proc/self/cwd\0")
    assert call(proc, "readlinkat", -100, other, SCRATCH + 0x100, 64) == -errno.ENOENT
    pid_link = put(proc, SCRATCH + 0x300, b"/proc/4242/exe\0")
    assert call(proc, "readlinkat", -100, pid_link, SCRATCH + 0x100, 4096) == len(target)


# ----------------------------------------------------------------------------- memory
def test_mmap_anonymous_is_zeroed_page_aligned_and_top_down(proc: LinuxProcess) -> None:
    calls = []
    proc.mapping_listeners.append(lambda: calls.append(1))
    first = mmap_anon(proc, 10000)
    second = mmap_anon(proc, PAGE)
    assert first == MMAP_BASE - 3 * PAGE and second == first - PAGE
    assert get(proc, first, 3 * PAGE) == bytes(3 * PAGE)
    assert proc.page_perms(first) == proc.page_perms(first + 3 * PAGE - 1) == RW
    assert len(calls) == 2


def test_mmap_flags_and_errors(proc: LinuxProcess) -> None:
    addr = mmap_anon(proc, 2 * PAGE)
    put(proc, addr, b"old data")
    fixed = mmap_anon(proc, PAGE, prot=1, addr=addr, extra_flags=0x10)        # MAP_FIXED replaces
    assert fixed == addr and get(proc, addr, 8) == bytes(8)
    assert proc.page_perms(addr) == UC_PROT_READ and proc.page_perms(addr + PAGE) == RW
    assert mmap_anon(proc, PAGE, addr=addr, extra_flags=0x100000) == -errno.EEXIST   # FIXED_NOREPLACE
    hint = 0x2000_0000
    assert mmap_anon(proc, PAGE, addr=hint) == hint                            # free hint honoured
    assert mmap_anon(proc, 0) == -errno.EINVAL
    assert mmap_anon(proc, PAGE, addr=addr + 1, extra_flags=0x10) == -errno.EINVAL
    assert call(proc, "mmap", 0, PAGE, 3, 2, 1, 0) == -errno.ENODEV             # file mapping of fd 1
    assert call(proc, "mmap", 0, PAGE, 3, 2, 9, 0) == -errno.EBADF
    write_only = mmap_anon(proc, PAGE, prot=2)
    assert proc.page_perms(write_only) == RW                                   # x86: write implies read


def test_munmap_splits_and_unmaps_for_real(proc: LinuxProcess) -> None:
    addr = mmap_anon(proc, 3 * PAGE)
    assert call(proc, "munmap", addr + PAGE, PAGE) == 0
    assert proc.page_perms(addr) == RW and proc.page_perms(addr + PAGE) is None
    assert proc.page_perms(addr + 2 * PAGE) == RW
    with pytest.raises(UcError):
        proc.uc.mem_read(addr + PAGE, 1)
    assert call(proc, "munmap", addr + 1, PAGE) == -errno.EINVAL
    assert call(proc, "munmap", UNMAPPED, PAGE) == 0                           # nothing there: fine


def test_mprotect(proc: LinuxProcess) -> None:
    addr = mmap_anon(proc, 2 * PAGE)
    seen = []
    proc.mapping_listeners.append(lambda: seen.append(proc.page_perms(addr)))
    assert call(proc, "mprotect", addr, PAGE, 0) == 0
    assert seen == [UC_PROT_NONE] and proc.page_perms(addr + PAGE) == RW
    assert [r for r in proc.uc.mem_regions() if r[0] == addr][0][2] == UC_PROT_NONE
    assert call(proc, "mprotect", addr, 3 * PAGE, 1) == -errno.ENOMEM          # runs past the mapping
    assert call(proc, "mprotect", addr + 8, PAGE, 1) == -errno.EINVAL
    assert call(proc, "mprotect", addr, PAGE, 5) == 0 and proc.page_perms(addr) == RX


def test_brk_grows_and_shrinks(proc: LinuxProcess) -> None:
    start = call(proc, "brk", 0)
    assert start == proc.elf.end and proc.page_perms(start) is None
    assert call(proc, "brk", start + 0x2100) == start + 0x2100
    assert proc.page_perms(start) == proc.page_perms(start + 0x2fff) == RW
    assert get(proc, start, 0x3000) == bytes(0x3000)
    assert call(proc, "brk", start + 0x800) == start + 0x800
    assert proc.page_perms(start) == RW and proc.page_perms(start + PAGE) is None
    assert call(proc, "brk", start - PAGE) == start + 0x800                    # below the start: refused
    blocker = mmap_anon(proc, PAGE, addr=start + 0x10000, extra_flags=0x10)
    assert call(proc, "brk", blocker + PAGE) == start + 0x800                  # would collide: refused


def test_mremap_grows_in_place_or_moves(proc: LinuxProcess) -> None:
    addr = mmap_anon(proc, PAGE)
    put(proc, addr, b"payload")
    grown = call(proc, "mremap", addr, PAGE, 2 * PAGE, 1)       # above addr is free (top-down): in place
    assert grown == addr and proc.page_perms(addr + PAGE) == RW
    mmap_anon(proc, PAGE, addr=addr + 2 * PAGE, extra_flags=0x10)             # block further growth
    assert call(proc, "mremap", addr, 2 * PAGE, 4 * PAGE, 0) == -errno.ENOMEM
    moved = call(proc, "mremap", addr, 2 * PAGE, 4 * PAGE, 1)
    assert moved != addr and get(proc, moved, 7) == b"payload"
    assert proc.page_perms(addr) is None and proc.page_perms(moved + 4 * PAGE - 1) == RW


# ----------------------------------------------------------------------------- process
def test_identity_calls(proc: LinuxProcess) -> None:
    assert call(proc, "getpid") == call(proc, "gettid") == 4242
    assert call(proc, "getppid") == os.getpid()
    assert (call(proc, "getuid"), call(proc, "geteuid")) == (os.getuid(), os.geteuid())
    assert (call(proc, "getgid"), call(proc, "getegid")) == (os.getgid(), os.getegid())
    assert call(proc, "set_tid_address", SCRATCH) == 4242
    assert call(proc, "set_robust_list", SCRATCH, 24) == 0
    assert call(proc, "set_robust_list", SCRATCH, 16) == -errno.EINVAL
    assert call(proc, "rseq", SCRATCH, 32, 0, 0) == -errno.ENOSYS


def test_arch_prctl_sets_and_gets_fs_and_gs(proc: LinuxProcess) -> None:
    assert call(proc, "arch_prctl", 0x1002, 0x7000_1000) == 0
    assert proc.uc.reg_read(UC_X86_REG_FS_BASE) == 0x7000_1000
    assert call(proc, "arch_prctl", 0x1003, SCRATCH) == 0
    assert get(proc, SCRATCH, 8) == (0x7000_1000).to_bytes(8, "little")
    assert call(proc, "arch_prctl", 0x1001, 0x6000) == 0 and call(proc, "arch_prctl", 0x1004, SCRATCH) == 0
    assert get(proc, SCRATCH, 8) == (0x6000).to_bytes(8, "little")
    assert call(proc, "arch_prctl", 0x3001, SCRATCH) == -errno.EINVAL
    assert call(proc, "arch_prctl", 0x1002, 1 << 47) == -errno.EPERM


def test_uname(proc: LinuxProcess) -> None:
    assert call(proc, "uname", SCRATCH) == 0
    fields = [get(proc, SCRATCH + 65 * i, 65).split(b"\0")[0] for i in range(6)]
    assert fields[0] == b"Linux" and fields[4] == b"x86_64"
    assert tuple(int(x) for x in fields[2].split(b".")[:2]) >= (3, 2)   # glibc's minimum kernel


def test_time_calls_follow_the_host_clock(proc: LinuxProcess) -> None:
    before = time.time_ns()
    assert call(proc, "clock_gettime", 0, SCRATCH) == 0
    after = time.time_ns()
    sec, nsec = struct.unpack("<qq", get(proc, SCRATCH, 16))
    assert before <= sec * 10**9 + nsec <= after and 0 <= nsec < 10**9
    assert call(proc, "clock_gettime", 1, SCRATCH) == 0
    assert abs(struct.unpack("<q", get(proc, SCRATCH, 8))[0] - time.monotonic()) < 2
    assert call(proc, "clock_gettime", 99, SCRATCH) == -errno.EINVAL
    assert call(proc, "gettimeofday", SCRATCH, 0) == 0
    assert abs(struct.unpack("<q", get(proc, SCRATCH, 8))[0] - time.time()) < 2
    assert abs(call(proc, "time", 0) - time.time()) < 2


def test_getrandom_prlimit_affinity_futex(proc: LinuxProcess) -> None:
    put(proc, SCRATCH, bytes(64))
    assert call(proc, "getrandom", SCRATCH, 64, 0) == 64 and get(proc, SCRATCH, 64) != bytes(64)
    assert call(proc, "prlimit64", 0, 3, 0, SCRATCH) == 0                      # RLIMIT_STACK
    assert struct.unpack("<QQ", get(proc, SCRATCH, 16)) == (8 << 20, 2**64 - 1)
    assert call(proc, "prlimit64", 1, 3, 0, SCRATCH) == -errno.ESRCH
    assert call(proc, "sched_getaffinity", 0, 128, SCRATCH) == 8
    assert get(proc, SCRATCH, 8) == (1).to_bytes(8, "little")
    futex = put(proc, SCRATCH + 0x100, (5).to_bytes(4, "little"))
    assert call(proc, "futex", futex, 0x81, 1) == 0                            # FUTEX_WAKE_PRIVATE
    assert call(proc, "futex", futex, 0x80, 6, 0) == -errno.EAGAIN             # value changed
    assert call(proc, "futex", UNMAPPED, 0x80, 6, 0) == -errno.EFAULT


# ----------------------------------------------------------------------------- signals
def test_rt_sigaction_records_and_returns_the_old_action(proc: LinuxProcess) -> None:
    act = put(proc, SCRATCH, struct.pack("<4Q", 0x401000, 0x04000000, 0x401100, 0))
    assert call(proc, "rt_sigaction", SIGUSR1, act, 0, 8) == 0
    assert call(proc, "rt_sigaction", SIGUSR1, 0, SCRATCH + 0x100, 8) == 0
    assert get(proc, SCRATCH + 0x100, 32) == get(proc, SCRATCH, 32)
    assert call(proc, "rt_sigaction", SIGKILL, act, 0, 8) == -errno.EINVAL
    assert call(proc, "rt_sigaction", SIGUSR1, act, 0, 16) == -errno.EINVAL


def test_rt_sigprocmask_keeps_the_mask(proc: LinuxProcess) -> None:
    put(proc, SCRATCH, (1 << (SIGUSR1 - 1) | 1 << (SIGKILL - 1)).to_bytes(8, "little"))
    assert call(proc, "rt_sigprocmask", 0, SCRATCH, 0, 8) == 0                  # SIG_BLOCK
    assert call(proc, "rt_sigprocmask", 0, 0, SCRATCH + 8, 8) == 0
    assert get(proc, SCRATCH + 8, 8) == (1 << (SIGUSR1 - 1)).to_bytes(8, "little")   # SIGKILL unblockable
    assert call(proc, "rt_sigprocmask", 7, SCRATCH, 0, 8) == -errno.EINVAL


def test_signal_to_self_stops_the_run(proc: LinuxProcess) -> None:
    assert call(proc, "tgkill", 4242, 4242, SIGABRT) == 0
    assert proc.take_event() == ProcessSignal(SIGABRT)
    assert call(proc, "kill", 4242, 0) == 0 and proc.take_event() is None       # signal 0: a probe
    assert call(proc, "kill", 999, SIGTERM) == -errno.ESRCH
    assert call(proc, "tgkill", 4242, 777, SIGTERM) == -errno.ESRCH
    assert call(proc, "tkill", 4242, 65) == -errno.EINVAL


def test_blocked_signal_waits_until_unblocked(proc: LinuxProcess) -> None:
    put(proc, SCRATCH, (1 << (SIGUSR1 - 1)).to_bytes(8, "little"))
    call(proc, "rt_sigprocmask", 0, SCRATCH, 0, 8)
    assert call(proc, "tkill", 4242, SIGUSR1) == 0
    assert proc.take_event() is None
    call(proc, "rt_sigprocmask", 1, SCRATCH, 0, 8)                              # SIG_UNBLOCK
    assert proc.take_event() == ProcessSignal(SIGUSR1)


def test_deliver_signal_applies_the_default_action(proc: LinuxProcess) -> None:
    assert proc.deliver_signal(SIGCHLD) is None and not proc.exited            # ignored by default
    put(proc, SCRATCH, struct.pack("<4Q", 1, 0, 0, 0))                          # SIG_IGN
    call(proc, "rt_sigaction", SIGTERM, SCRATCH, 0, 8)
    assert proc.deliver_signal(SIGTERM) is None and not proc.exited
    assert proc.deliver_signal(SIGUSR1) == ProcessSignal(SIGUSR1, killed=True)
    assert proc.exited


def test_sigkill_to_self_kills(proc: LinuxProcess) -> None:
    call(proc, "kill", 0, SIGKILL)
    assert proc.take_event() == ProcessSignal(SIGKILL, killed=True) and proc.exited


def test_exit_group_keeps_the_low_byte(proc: LinuxProcess) -> None:
    call(proc, "exit_group", 0x1234)
    assert proc.take_event() == ProcessExit(0x34) and proc.exited


def test_unknown_syscall_is_enosys_with_one_log_line(proc: LinuxProcess, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="gdbstub.target"):
        assert call(proc, "clone") == -errno.ENOSYS
        assert call(proc, "clone") == -errno.ENOSYS
        assert dispatch(proc, 9999, (0,) * 6) == -errno.ENOSYS
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "56 (clone)" in messages[0] and "9999 (unknown)" in messages[1]


# ----------------------------------------------------------------------------- the hook path
def run_code(p: LinuxProcess, code: bytes) -> int:
    """Put `code` on a fresh RX page and run it until the program stops (or it runs off the end)."""
    page = mmap_anon(p, PAGE, prot=7)
    put(p, page, code + b"\xf4")              # hlt after it: must never be reached by a stopping call
    try:
        p.uc.emu_start(page, page + len(code), timeout=5_000_000)
    except UcError:
        pass
    return page


def mov_imm(reg: int, value: int) -> bytes:
    """mov r64, imm64 for rax(0) rdi(7) rsi(6) rdx(2)."""
    return bytes([0x48, 0xB8 + reg]) + value.to_bytes(8, "little")


SYSCALL = b"\x0f\x05"


def test_hook_sets_rax_rcx_r11_like_the_kernel(proc: LinuxProcess) -> None:
    code = mov_imm(0, NR["getpid"]) + SYSCALL + b"\x90"
    page = run_code(proc, code)
    assert proc.uc.reg_read(UC_X86_REG_RAX) == 4242
    assert proc.uc.reg_read(UC_X86_REG_RCX) == page + len(code) - 1          # after the syscall
    assert proc.uc.reg_read(UC_X86_REG_R11) & 0x2                            # RFLAGS (bit 1 is always set)
    assert proc.uc.reg_read(UC_X86_REG_RIP) == page + len(code)


def test_bad_pointer_through_the_hook_returns_efault(proc: LinuxProcess) -> None:
    code = mov_imm(0, 1) + mov_imm(7, 1) + mov_imm(6, UNMAPPED) + mov_imm(2, 8) + SYSCALL
    run_code(proc, code)
    assert proc.uc.reg_read(UC_X86_REG_RAX) == 2**64 - errno.EFAULT


def test_exit_stops_emulation_right_after_the_syscall(proc: LinuxProcess) -> None:
    code = mov_imm(0, NR["exit_group"]) + mov_imm(7, 7) + SYSCALL
    tail = mov_imm(0, 0xDEAD)                 # never runs
    page = run_code(proc, code + tail)
    assert proc.take_event() == ProcessExit(7)
    assert proc.uc.reg_read(UC_X86_REG_RIP) == page + len(code)
    assert proc.uc.reg_read(UC_X86_REG_RAX) != 0xDEAD


def test_freestanding_program_runs_its_raw_syscalls(proc: LinuxProcess) -> None:
    proc.uc.emu_start(proc.entry, 0, timeout=5_000_000)
    assert proc.take_event() == ProcessExit(3)
    assert proc.stdout.getvalue() == b"freestanding hello\n"
