"""Linux x86-64 system calls for one emulated single-threaded process.

`SYSCALLS` maps a syscall number to a small function `handler(proc, a0, ..., a5) -> int`; the result goes
to RAX, and errors are `-errno` as the kernel returns them. `install_syscall_hook(proc)` adds the only
hook this module owns: UC_HOOK_INSN on the `syscall` instruction.

Scope: what a static glibc (or freestanding) program needs to print, allocate, and exit. There is no
file system: fds 0-2 are the only files, and open() says ENOENT. Choices worth knowing:
- fds 0-2 look like a terminal iff the process was spawned with `terminal=True` (by default: iff the
  server's stdout is a tty). Then TCGETS succeeds and glibc line-buffers stdout, so output appears
  promptly; otherwise TCGETS says ENOTTY and fstat reports a pipe, exactly what the program would see
  run natively with its output piped, so buffering (and output lost at a crash) matches a native run.
- Page permissions follow x86 page tables: PROT_WRITE or PROT_EXEC imply PROT_READ.
- nanosleep returns at once (blocking inside a Unicorn hook would make Ctrl-C ineffective).
- rseq returns ENOSYS (glibc then runs without it); a futex wait that could only block forever returns
  EINTR/ETIMEDOUT with one warning, since no other thread exists to wake it.
- An unknown syscall returns -ENOSYS and logs one line per number per process on "gdbstub.target".
"""

from __future__ import annotations

import errno as E
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from construct import Bytes, Int8ul, Int16ul, Int32sl, Int32ul, Int64sl, Int64ul, Padding, Struct
from unicorn import UC_HOOK_INSN, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE, Uc
from unicorn.x86_const import (
    UC_X86_INS_SYSCALL,
    UC_X86_REG_EFLAGS,
    UC_X86_REG_FS_BASE,
    UC_X86_REG_GS_BASE,
    UC_X86_REG_R8,
    UC_X86_REG_R9,
    UC_X86_REG_R10,
    UC_X86_REG_R11,
    UC_X86_REG_RAX,
    UC_X86_REG_RCX,
    UC_X86_REG_RDI,
    UC_X86_REG_RDX,
    UC_X86_REG_RIP,
    UC_X86_REG_RSI,
)

from .elf import MMAP_MIN_ADDR, PAGE_SIZE, USER_TOP, page_down, page_up
from .events import SIGKILL

if TYPE_CHECKING:
    from gdbstub.target.process import LinuxProcess

__all__ = ["GuestFault", "SYSCALLS", "SYSCALL_NAMES", "install_syscall_hook", "syscall_name"]

log = logging.getLogger("gdbstub.target")

MASK64 = (1 << 64) - 1
MAX_RW_COUNT = 0x7FFFF000          # Linux caps one read/write at INT_MAX rounded down to a page
UIO_MAXIOV = 1024


class GuestFault(Exception):
    """A syscall argument points at memory the program may not access: the syscall returns -EFAULT."""

    def __init__(self, addr: int) -> None:
        super().__init__(f"bad guest address {addr:#x}")
        self.addr = addr


Handler = Callable[..., int]
SYSCALLS: dict[int, Handler] = {}


def syscall(*numbers: int) -> Callable[[Handler], Handler]:
    """Register `fn` for each syscall number: calls that differ only in number share one handler."""
    def register(fn: Handler) -> Handler:
        for nr in numbers:
            SYSCALLS[nr] = fn
        return fn

    return register


# --------------------------------------------------------------------------- kernel structures
STAT = Struct(                      # struct stat, arch/x86/include/uapi/asm/stat.h (x86-64): 144 bytes
    "st_dev" / Int64ul, "st_ino" / Int64ul, "st_nlink" / Int64ul,
    "st_mode" / Int32ul, "st_uid" / Int32ul, "st_gid" / Int32ul, Padding(4),
    "st_rdev" / Int64ul, "st_size" / Int64sl, "st_blksize" / Int64sl, "st_blocks" / Int64sl,
    "st_atime" / Int64sl, "st_atime_nsec" / Int64ul,
    "st_mtime" / Int64sl, "st_mtime_nsec" / Int64ul,
    "st_ctime" / Int64sl, "st_ctime_nsec" / Int64ul,
    Padding(24),
)
TIMESPEC = Struct("tv_sec" / Int64sl, "tv_nsec" / Int64sl)
TIMEVAL = Struct("tv_sec" / Int64sl, "tv_usec" / Int64sl)
IOVEC = Struct("iov_base" / Int64ul, "iov_len" / Int64ul)
RLIMIT = Struct("rlim_cur" / Int64ul, "rlim_max" / Int64ul)
TERMIOS = Struct(                   # the kernel's struct termios that TCGETS fills: 36 bytes
    "c_iflag" / Int32ul, "c_oflag" / Int32ul, "c_cflag" / Int32ul, "c_lflag" / Int32ul,
    "c_line" / Int8ul, "c_cc" / Bytes(19),
)
WINSIZE = Struct("ws_row" / Int16ul, "ws_col" / Int16ul, "ws_xpixel" / Int16ul, "ws_ypixel" / Int16ul)
STACK_T = Struct("ss_sp" / Int64ul, "ss_flags" / Int32sl, Padding(4), "ss_size" / Int64ul)
UTSNAME_FIELD = 65                  # struct new_utsname: six char[65]
K_SIGACTION_SIZE = 32               # handler, flags, restorer, mask: 4 x u64
SIGSET_SIZE = 8

S_IFCHR, S_IFIFO = 0o020000, 0o010000
PTS0_RDEV = (136 << 8) | 0          # /dev/pts/0
# A cooked-mode pty as `stty -a` shows it: ICRNL|IXON, OPOST|ONLCR, B38400|CS8|CREAD, ISIG|ICANON|ECHO...
TTY_TERMIOS = dict(c_iflag=0x500, c_oflag=0x5, c_cflag=0xBF, c_lflag=0x8A3B, c_line=0,
                   c_cc=bytes([0x03, 0x1C, 0x7F, 0x15, 0x04, 0, 1, 0, 0x11, 0x13, 0x1A, 0, 0x12, 0x0F, 0x17, 0x16,
                               0, 0, 0]))
UNAME = (b"Linux", b"gdbstub", b"6.1.0", b"#1 SMP PREEMPT_DYNAMIC trio-gdbstub", b"x86_64", b"(none)")

RLIM_INFINITY = MASK64
RLIMIT_STACK, RLIMIT_CORE, RLIMIT_NOFILE, RLIM_NLIMITS = 3, 4, 7, 16


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


# --------------------------------------------------------------------------- dispatch
_ARG_REGS = [UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX,
             UC_X86_REG_R10, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_RIP, UC_X86_REG_EFLAGS]


def install_syscall_hook(proc: LinuxProcess) -> int:
    """Route every `syscall` instruction of `proc.uc` to SYSCALLS; returns the hook handle."""
    return proc.uc.hook_add(UC_HOOK_INSN, _on_syscall, proc, 1, 0, UC_X86_INS_SYSCALL)


def _on_syscall(uc: Uc, proc: LinuxProcess) -> None:
    nr, a0, a1, a2, a3, a4, a5, rip, rflags = uc.reg_read_batch(_ARG_REGS)
    result = dispatch(proc, nr, (a0, a1, a2, a3, a4, a5), rip)
    # What the kernel leaves behind: the result in RAX, RCX = return address, R11 = RFLAGS.
    # (Inside this hook RIP still reads the syscall's own address; Unicorn then moves past it.)
    uc.reg_write(UC_X86_REG_RAX, result & MASK64)
    uc.reg_write(UC_X86_REG_RCX, rip + 2)
    uc.reg_write(UC_X86_REG_R11, rflags)


def dispatch(proc: LinuxProcess, nr: int, args: tuple[int, ...], rip: int = 0) -> int:
    """Run syscall `nr`; -errno on failure. Only a GuestFault is turned into an errno here:
    any other exception is a bug and propagates out of emu_start."""
    handler = SYSCALLS.get(nr)
    if handler is None:
        proc.warn_once(f"nosys{nr}", "unimplemented syscall %d (%s) at %#x: returning -ENOSYS",
                       nr, syscall_name(nr), rip)
        return -E.ENOSYS
    try:
        result = handler(proc, *args)
    except GuestFault:
        result = -E.EFAULT
    if log.isEnabledFor(logging.DEBUG):    # an strace-like line per call, only when asked for
        log.debug("%s(%s) = %s", syscall_name(nr), ", ".join(f"{a:#x}" for a in args[:3]),
                  f"{result:#x}" if result > 0xFFFF else result)
    return result


# --------------------------------------------------------------------------- files: fds 0-2 only
@syscall(0)
def sys_read(p: LinuxProcess, fd: int, buf: int, count: int, *_: int) -> int:
    fd = s32(fd)
    if fd not in p.open_fds or fd != 0:
        return -E.EBADF
    data = p.stdin_data[: min(count, MAX_RW_COUNT)]
    p.write_memory(buf, data)
    p.stdin_data = p.stdin_data[len(data):]
    return len(data)


@syscall(19)
def sys_readv(p: LinuxProcess, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    vectors = _read_iovecs(p, iov, s32(iovcnt))
    if isinstance(vectors, int):
        return vectors
    total = 0
    for base, length in vectors:
        got = sys_read(p, fd, base, length)
        if got < 0:
            return got if total == 0 else total
        total += got
        if got < length:
            break
    return total


@syscall(1)
def sys_write(p: LinuxProcess, fd: int, buf: int, count: int, *_: int) -> int:
    data = p.read_memory(buf, min(count, MAX_RW_COUNT))
    return _write_fd(p, s32(fd), data)


@syscall(20)
def sys_writev(p: LinuxProcess, fd: int, iov: int, iovcnt: int, *_: int) -> int:
    vectors = _read_iovecs(p, iov, s32(iovcnt))
    if isinstance(vectors, int):
        return vectors
    data = b"".join(p.read_memory(base, length) for base, length in vectors)
    return _write_fd(p, s32(fd), data[:MAX_RW_COUNT])


def _read_iovecs(p: LinuxProcess, iov: int, iovcnt: int) -> list[tuple[int, int]] | int:
    if iovcnt < 0 or iovcnt > UIO_MAXIOV:
        return -E.EINVAL
    raw = p.read_memory(iov, IOVEC.sizeof() * iovcnt)
    vectors = []
    for i in range(iovcnt):
        v = IOVEC.parse(raw[i * 16:(i + 1) * 16])
        if v.iov_len > MAX_RW_COUNT:
            return -E.EINVAL
        vectors.append((v.iov_base, v.iov_len))
    return vectors


def _write_fd(p: LinuxProcess, fd: int, data: bytes) -> int:
    if fd not in p.open_fds or fd not in (1, 2):
        return -E.EBADF
    stream = p.stdout if fd == 1 else p.stderr
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        return -E.EPIPE
    except (OSError, ValueError):           # ValueError: the stream was closed
        return -E.EIO
    return len(data)


@syscall(3)
def sys_close(p: LinuxProcess, fd: int, *_: int) -> int:
    fd = s32(fd)
    if fd not in p.open_fds:
        return -E.EBADF
    p.open_fds.discard(fd)
    return 0


@syscall(8)
def sys_lseek(p: LinuxProcess, fd: int, *_: int) -> int:
    return -E.ESPIPE if s32(fd) in p.open_fds else -E.EBADF


@syscall(2, 4, 6)                           # open, stat, lstat: no file system to look in
def sys_open(p: LinuxProcess, path: int, *_: int) -> int:
    p.read_cstring(path)                    # EFAULT before ENOENT, like the kernel
    return -E.ENOENT


AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT, AT_EMPTY_PATH, AT_STATX_SYNC_TYPE = 0x100, 0x800, 0x1000, 0x6000
_FSTATAT_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE
_ACCESS_MODES = 0o7                         # R_OK | W_OK | X_OK; F_OK is 0


def _dirfd_error(p: LinuxProcess, dirfd: int, name: bytes) -> int:
    """The *at calls' error for `dirfd`, or 0: it names where a relative path starts, so it must be
    AT_FDCWD or an open directory (the only open files here are stdio: never a directory)."""
    if not name or name.startswith(b"/") or s32(dirfd) == AT_FDCWD:
        return 0                            # an empty name is ENOENT before dirfd is looked at
    return -E.ENOTDIR if s32(dirfd) in p.open_fds else -E.EBADF


@syscall(257)
def sys_openat(p: LinuxProcess, dirfd: int, path: int, *_: int) -> int:
    return _dirfd_error(p, dirfd, p.read_cstring(path)) or -E.ENOENT


@syscall(269)
def sys_faccessat(p: LinuxProcess, dirfd: int, path: int, mode: int, *_: int) -> int:
    if mode & 0xFFFF_FFFF & ~_ACCESS_MODES:
        return -E.EINVAL                    # before the path is read, as the kernel does
    return sys_openat(p, dirfd, path)


@syscall(21)
def sys_access(p: LinuxProcess, path: int, mode: int, *_: int) -> int:
    return sys_faccessat(p, AT_FDCWD, path, mode)


def stat_of_fd(p: LinuxProcess, fd: int) -> bytes:
    now = time.time_ns()
    sec, nsec = divmod(now, 1_000_000_000)
    if p.terminal:
        mode, rdev, blksize, ino = S_IFCHR | 0o620, PTS0_RDEV, 1024, 3
    else:
        mode, rdev, blksize, ino = S_IFIFO | 0o600, 0, 4096, 1000 + fd
    return STAT.build(dict(
        st_dev=0x17 if p.terminal else 0xC, st_ino=ino, st_nlink=1, st_mode=mode,
        st_uid=os.getuid(), st_gid=os.getgid(), st_rdev=rdev, st_size=0, st_blksize=blksize,
        st_blocks=0, st_atime=sec, st_atime_nsec=nsec, st_mtime=sec, st_mtime_nsec=nsec,
        st_ctime=sec, st_ctime_nsec=nsec,
    ))


@syscall(5)
def sys_fstat(p: LinuxProcess, fd: int, statbuf: int, *_: int) -> int:
    fd = s32(fd)
    if fd not in p.open_fds:
        return -E.EBADF
    p.write_memory(statbuf, stat_of_fd(p, fd))
    return 0


@syscall(262)
def sys_newfstatat(p: LinuxProcess, dirfd: int, path: int, statbuf: int, flags: int, *_: int) -> int:
    name = p.read_cstring(path)
    if flags & 0xFFFF_FFFF & ~_FSTATAT_FLAGS:
        return -E.EINVAL
    if name == b"" and flags & AT_EMPTY_PATH and s32(dirfd) != AT_FDCWD:
        return sys_fstat(p, dirfd, statbuf)
    # AT_FDCWD with AT_EMPTY_PATH is the current directory: like every path, not found here.
    return _dirfd_error(p, dirfd, name) or -E.ENOENT


TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGPGRP, TIOCGWINSZ = 0x5401, 0x5402, 0x5403, 0x5404, 0x540F, 0x5413


@syscall(16)
def sys_ioctl(p: LinuxProcess, fd: int, request: int, arg: int, *_: int) -> int:
    if s32(fd) not in p.open_fds:
        return -E.EBADF
    if not p.terminal:
        return -E.ENOTTY
    request &= 0xFFFFFFFF
    if request == TCGETS:
        p.write_memory(arg, TERMIOS.build(TTY_TERMIOS))
        return 0
    if request in (TCSETS, TCSETSW, TCSETSF):
        p.read_memory(arg, TERMIOS.sizeof())
        return 0
    if request == TIOCGWINSZ:
        p.write_memory(arg, WINSIZE.build(dict(ws_row=24, ws_col=80, ws_xpixel=0, ws_ypixel=0)))
        return 0
    if request == TIOCGPGRP:
        p.write_memory(arg, p.pid.to_bytes(4, "little"))
        return 0
    return -E.ENOTTY


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2


@syscall(72)
def sys_fcntl(p: LinuxProcess, fd: int, cmd: int, *_: int) -> int:
    fd = s32(fd)
    if fd not in p.open_fds:
        return -E.EBADF
    cmd = s32(cmd)
    if cmd == F_GETFL:
        if p.terminal:
            return O_RDWR
        return O_RDONLY if fd == 0 else O_WRONLY
    if cmd in (F_GETFD, F_SETFD, F_SETFL):
        return 0
    return -E.EINVAL


@syscall(79)
def sys_getcwd(p: LinuxProcess, buf: int, size: int, *_: int) -> int:
    cwd = b"/\0"                            # consistent with the default PWD=/
    if size < len(cwd):
        return -E.ERANGE
    p.write_memory(buf, cwd)
    return len(cwd)


@syscall(89)
def sys_readlink(p: LinuxProcess, path: int, buf: int, bufsiz: int, *_: int) -> int:
    return sys_readlinkat(p, AT_FDCWD, path, buf, bufsiz)


@syscall(267)
def sys_readlinkat(p: LinuxProcess, dirfd: int, path: int, buf: int, bufsiz: int, *_: int) -> int:
    bufsiz = s32(bufsiz)
    if bufsiz <= 0:
        return -E.EINVAL
    name = p.read_cstring(path)
    if error := _dirfd_error(p, dirfd, name):
        return error
    if name == b"" and s32(dirfd) != AT_FDCWD and s32(dirfd) not in p.open_fds:
        return -E.EBADF                     # an empty path names dirfd itself (not a link: ENOENT)
    if name not in (b"/proc/self/exe", b"/proc/%d/exe" % p.pid, b"/proc/thread-self/exe"):
        return -E.ENOENT
    target = os.fsencode(p.path)[:bufsiz]   # readlink does not NUL-terminate
    p.write_memory(buf, target)
    return len(target)


# --------------------------------------------------------------------------- memory
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_TYPE = 0x1, 0x2, 0xF
MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x10, 0x20, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2


def uc_prot(prot: int) -> int:
    """Linux PROT_* to UC_PROT_*, with x86's implied read access."""
    result = 0
    if prot & PROT_WRITE:
        result |= UC_PROT_WRITE | UC_PROT_READ
    if prot & PROT_EXEC:
        result |= UC_PROT_EXEC | UC_PROT_READ
    if prot & PROT_READ:
        result |= UC_PROT_READ
    return result


def _valid_range(addr: int, length: int) -> bool:
    return addr % PAGE_SIZE == 0 and 0 < length and addr + length <= USER_TOP


@syscall(9)
def sys_mmap(p: LinuxProcess, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    if length == 0 or length > USER_TOP or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x03000000):
        return -E.EINVAL
    if flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE, 0x3):
        return -E.EINVAL
    if not flags & MAP_ANONYMOUS:
        return -E.ENODEV if s32(fd) in p.open_fds else -E.EBADF
    size = page_up(length)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr % PAGE_SIZE:
            return -E.EINVAL
        if addr + size > USER_TOP:
            return -E.ENOMEM
        if addr < MMAP_MIN_ADDR:
            return -E.EPERM
        if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and not p.memory.is_free(addr, addr + size):
            return -E.EEXIST
        start = addr
    elif _hint_usable(p, page_down(addr), size):
        start = page_down(addr)             # a free hint is honoured, like Linux
    else:
        found = p.memory.find_free(size, p.mmap_top)
        if found is None:
            return -E.ENOMEM
        start = found
    p.memory.map(start, start + size, uc_prot(prot))
    p.notify_mappings_changed()
    return start


def _hint_usable(p: LinuxProcess, start: int, size: int) -> bool:
    return MMAP_MIN_ADDR <= start and start + size <= p.mmap_top and p.memory.is_free(start, start + size)


@syscall(11)
def sys_munmap(p: LinuxProcess, addr: int, length: int, *_: int) -> int:
    if not _valid_range(addr, page_up(length)):
        return -E.EINVAL
    p.memory.unmap(addr, addr + page_up(length))
    p.notify_mappings_changed()
    return 0


@syscall(10)
def sys_mprotect(p: LinuxProcess, addr: int, length: int, prot: int, *_: int) -> int:
    if addr % PAGE_SIZE or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | 0x03000000):
        return -E.EINVAL
    if length == 0:
        return 0
    end = addr + page_up(length)
    if end > USER_TOP:
        return -E.ENOMEM
    if not p.memory.allows(addr, end - addr, 0):
        return -E.ENOMEM
    p.memory.protect(addr, end, uc_prot(prot))
    p.notify_mappings_changed()
    return 0


@syscall(12)
def sys_brk(p: LinuxProcess, new_brk: int, *_: int) -> int:
    """Linux mm/mmap.c brk(): return the new break, or the old one if the request can't be met."""
    if new_brk < p.brk_start:
        return p.brk
    old_top, new_top = page_up(p.brk), page_up(new_brk)
    if new_top < old_top:
        p.memory.unmap(new_top, old_top)
        p.notify_mappings_changed()
    elif new_top > old_top:
        if new_top > USER_TOP or not p.memory.is_free(old_top, new_top + PAGE_SIZE):   # keep a guard page
            return p.brk
        p.memory.map(old_top, new_top, UC_PROT_READ | UC_PROT_WRITE)
        p.notify_mappings_changed()
    p.brk = new_brk
    return p.brk


@syscall(25)
def sys_mremap(p: LinuxProcess, old: int, old_size: int, new_size: int, flags: int, *_: int) -> int:
    if old % PAGE_SIZE or new_size == 0 or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED):
        return -E.EINVAL
    if flags & MREMAP_FIXED:
        return -E.EINVAL                    # not needed by glibc's realloc; not emulated
    old_size, new_size = page_up(old_size), page_up(new_size)
    prot = p.memory.prot_at(old)
    if prot is None or not p.memory.allows(old, old_size, 0):
        return -E.EFAULT
    if new_size <= old_size:
        if new_size < old_size:
            p.memory.unmap(old + new_size, old + old_size)
            p.notify_mappings_changed()
        return old
    if p.memory.is_free(old + old_size, old + new_size) and old + new_size <= USER_TOP:
        p.memory.map(old + old_size, old + new_size, prot)
        p.notify_mappings_changed()
        return old
    if not flags & MREMAP_MAYMOVE:
        return -E.ENOMEM
    start = p.memory.find_free(new_size, p.mmap_top)
    if start is None:
        return -E.ENOMEM
    data = bytes(p.uc.mem_read(old, old_size))     # the program's data, whatever the page protections
    p.memory.map(start, start + new_size, prot)
    p.uc.mem_write(start, data)
    p.memory.unmap(old, old + old_size)
    p.notify_mappings_changed()
    return start


@syscall(28)
def sys_madvise(p: LinuxProcess, *_: int) -> int:
    return 0


# --------------------------------------------------------------------------- process and threads
@syscall(60, 231)                           # exit, exit_group
def sys_exit(p: LinuxProcess, status: int, *_: int) -> int:
    p.exit(status)                          # single-threaded: ending the thread ends the process
    return 0


@syscall(39)
def sys_getpid(p: LinuxProcess, *_: int) -> int:
    return p.pid


@syscall(186)
def sys_gettid(p: LinuxProcess, *_: int) -> int:
    return p.tid


@syscall(110)
def sys_getppid(p: LinuxProcess, *_: int) -> int:
    return os.getpid()                      # the stub is the parent that "forked" the program


@syscall(111)
def sys_getpgrp(p: LinuxProcess, *_: int) -> int:
    return p.pid


@syscall(102)
def sys_getuid(p: LinuxProcess, *_: int) -> int:
    return os.getuid()


@syscall(107)
def sys_geteuid(p: LinuxProcess, *_: int) -> int:
    return os.geteuid()


@syscall(104)
def sys_getgid(p: LinuxProcess, *_: int) -> int:
    return os.getgid()


@syscall(108)
def sys_getegid(p: LinuxProcess, *_: int) -> int:
    return os.getegid()


ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004


@syscall(158)
def sys_arch_prctl(p: LinuxProcess, code: int, addr: int, *_: int) -> int:
    if code in (ARCH_SET_FS, ARCH_SET_GS):
        if addr >= USER_TOP:
            return -E.EPERM
        p.uc.reg_write(UC_X86_REG_FS_BASE if code == ARCH_SET_FS else UC_X86_REG_GS_BASE, addr)
        if code == ARCH_SET_FS:
            p.fs_base = addr
        return 0
    if code in (ARCH_GET_FS, ARCH_GET_GS):
        value = p.uc.reg_read(UC_X86_REG_FS_BASE if code == ARCH_GET_FS else UC_X86_REG_GS_BASE)
        p.write_memory(addr, value.to_bytes(8, "little"))
        return 0
    return -E.EINVAL                        # includes the CET queries, as on a kernel without CET


@syscall(218)
def sys_set_tid_address(p: LinuxProcess, tidptr: int, *_: int) -> int:
    p.clear_child_tid = tidptr
    return p.tid


@syscall(273)
def sys_set_robust_list(p: LinuxProcess, head: int, length: int, *_: int) -> int:
    if length != 24:                        # sizeof(struct robust_list_head)
        return -E.EINVAL
    p.robust_list = (head, length)
    return 0


@syscall(334)
def sys_rseq(p: LinuxProcess, *_: int) -> int:
    return -E.ENOSYS                        # glibc 2.35+ then sets __rseq_size = 0 and carries on


FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_CMD_MASK = ~(128 | 256)               # FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME


@syscall(202)
def sys_futex(p: LinuxProcess, uaddr: int, op: int, val: int, timeout: int, *_: int) -> int:
    cmd = s32(op) & FUTEX_CMD_MASK
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return 0                            # nobody else is waiting
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        current = int.from_bytes(p.read_memory(uaddr, 4), "little")
        if current != val & 0xFFFFFFFF:
            return -E.EAGAIN
        p.warn_once("futex", "futex wait at %#x with no other thread to wake it", uaddr)
        return -E.ETIMEDOUT if timeout else -E.EINTR
    return -E.ENOSYS


@syscall(24)
def sys_sched_yield(p: LinuxProcess, *_: int) -> int:
    return 0


@syscall(204)
def sys_sched_getaffinity(p: LinuxProcess, pid: int, length: int, mask: int, *_: int) -> int:
    if s32(pid) not in (0, p.pid):
        return -E.ESRCH
    if length < 8 or length % 8:
        return -E.EINVAL
    p.write_memory(mask, (1).to_bytes(8, "little"))    # one CPU: cpu 0
    return 8


def _limit_of(resource: int) -> tuple[int, int]:
    return {RLIMIT_STACK: (8 << 20, RLIM_INFINITY), RLIMIT_CORE: (0, RLIM_INFINITY),
            RLIMIT_NOFILE: (1024, 1 << 20)}.get(resource, (RLIM_INFINITY, RLIM_INFINITY))


@syscall(302)
def sys_prlimit64(p: LinuxProcess, pid: int, resource: int, new: int, old: int, *_: int) -> int:
    if s32(pid) not in (0, p.pid):
        return -E.ESRCH
    if resource >= RLIM_NLIMITS:
        return -E.EINVAL
    if new:
        p.read_memory(new, RLIMIT.sizeof())   # accepted but not enforced
    if old:
        cur, maximum = _limit_of(resource)
        p.write_memory(old, RLIMIT.build(dict(rlim_cur=cur, rlim_max=maximum)))
    return 0


@syscall(97)
def sys_getrlimit(p: LinuxProcess, resource: int, rlim: int, *_: int) -> int:
    return sys_prlimit64(p, 0, resource, 0, rlim)


@syscall(63)
def sys_uname(p: LinuxProcess, buf: int, *_: int) -> int:
    p.write_memory(buf, b"".join(field.ljust(UTSNAME_FIELD, b"\0") for field in UNAME))
    return 0


@syscall(318)
def sys_getrandom(p: LinuxProcess, buf: int, length: int, flags: int, *_: int) -> int:
    if flags & ~0x7:                        # GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE
        return -E.EINVAL
    length = min(length, 0x1FFFFFF)         # the kernel's per-call cap
    p.write_memory(buf, os.urandom(length))
    return length


# --------------------------------------------------------------------------- time
CLOCK_IDS = range(0, 8)                     # REALTIME .. BOOTTIME: the host has the same ids


@syscall(228)
def sys_clock_gettime(p: LinuxProcess, clock: int, tp: int, *_: int) -> int:
    clock = s32(clock)
    if clock not in CLOCK_IDS:
        return -E.EINVAL
    try:
        ns = time.clock_gettime_ns(clock)
    except OSError:
        return -E.EINVAL
    sec, nsec = divmod(ns, 1_000_000_000)
    p.write_memory(tp, TIMESPEC.build(dict(tv_sec=sec, tv_nsec=nsec)))
    return 0


@syscall(229)
def sys_clock_getres(p: LinuxProcess, clock: int, res: int, *_: int) -> int:
    if s32(clock) not in CLOCK_IDS:
        return -E.EINVAL
    if res:
        p.write_memory(res, TIMESPEC.build(dict(tv_sec=0, tv_nsec=1)))
    return 0


@syscall(96)
def sys_gettimeofday(p: LinuxProcess, tv: int, tz: int, *_: int) -> int:
    if tv:
        sec, nsec = divmod(time.time_ns(), 1_000_000_000)
        p.write_memory(tv, TIMEVAL.build(dict(tv_sec=sec, tv_usec=nsec // 1000)))
    if tz:
        p.write_memory(tz, bytes(8))        # struct timezone: UTC, no DST
    return 0


@syscall(201)
def sys_time(p: LinuxProcess, tloc: int, *_: int) -> int:
    now = int(time.time())
    if tloc:
        p.write_memory(tloc, now.to_bytes(8, "little"))
    return now


@syscall(35)
def sys_nanosleep(p: LinuxProcess, req: int, *_: int) -> int:
    TIMESPEC.parse(p.read_memory(req, TIMESPEC.sizeof()))
    return 0                                # returns at once: see the module docstring


@syscall(230)
def sys_clock_nanosleep(p: LinuxProcess, clock: int, flags: int, req: int, *_: int) -> int:
    if s32(clock) not in CLOCK_IDS:
        return -E.EINVAL
    return sys_nanosleep(p, req)


# --------------------------------------------------------------------------- signals
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SIGSTOP, NSIG = 19, 64
SS_DISABLE = 2


@syscall(13)
def sys_rt_sigaction(p: LinuxProcess, sig: int, act: int, oldact: int, sigsetsize: int, *_: int) -> int:
    sig = s32(sig)
    if sigsetsize != SIGSET_SIZE or not 1 <= sig <= NSIG or (act and sig in (SIGKILL, SIGSTOP)):
        return -E.EINVAL
    new = p.read_memory(act, K_SIGACTION_SIZE) if act else None
    if oldact:
        p.write_memory(oldact, p.sigactions.get(sig, bytes(K_SIGACTION_SIZE)))
    if new is not None:
        p.sigactions[sig] = new             # recorded only: handlers are never run
    return 0


@syscall(14)
def sys_rt_sigprocmask(p: LinuxProcess, how: int, set_: int, oldset: int, sigsetsize: int, *_: int) -> int:
    if sigsetsize != SIGSET_SIZE:
        return -E.EINVAL
    old = p.sigmask
    new = old
    if set_:
        requested = int.from_bytes(p.read_memory(set_, SIGSET_SIZE), "little")
        how = s32(how)
        if how == SIG_BLOCK:
            new = old | requested
        elif how == SIG_UNBLOCK:
            new = old & ~requested
        elif how == SIG_SETMASK:
            new = requested
        else:
            return -E.EINVAL
    if oldset:
        p.write_memory(oldset, old.to_bytes(SIGSET_SIZE, "little"))
    if set_:
        p.set_sigmask(new)                  # may report a pending signal that is now unblocked
    return 0


@syscall(131)
def sys_sigaltstack(p: LinuxProcess, ss: int, old_ss: int, *_: int) -> int:
    if ss:
        p.read_memory(ss, STACK_T.sizeof())
    if old_ss:
        p.write_memory(old_ss, STACK_T.build(dict(ss_sp=0, ss_flags=SS_DISABLE, ss_size=0)))
    return 0


def _signal_self(p: LinuxProcess, sig: int) -> int:
    sig = s32(sig)
    if not 0 <= sig <= NSIG:
        return -E.EINVAL
    if sig:
        p.send_self_signal(sig)
    return 0


@syscall(62)
def sys_kill(p: LinuxProcess, pid: int, sig: int, *_: int) -> int:
    if s32(pid) not in (p.pid, 0, -1, -p.pid):     # 0 / -pgid / -1 all include ourselves
        return -E.ESRCH
    return _signal_self(p, sig)


@syscall(200)
def sys_tkill(p: LinuxProcess, tid: int, sig: int, *_: int) -> int:
    if s32(tid) != p.tid:
        return -E.ESRCH if s32(tid) > 0 else -E.EINVAL
    return _signal_self(p, sig)


@syscall(234)
def sys_tgkill(p: LinuxProcess, tgid: int, tid: int, sig: int, *_: int) -> int:
    if s32(tgid) != p.pid or s32(tid) != p.tid:
        return -E.ESRCH if s32(tid) > 0 and s32(tgid) > 0 else -E.EINVAL
    return _signal_self(p, sig)


# --------------------------------------------------------------------------- names (for log lines)
# From <asm/unistd_64.h>: numbers 0..334 are contiguous, then 424..450.
_NAMES_FROM_0 = """
read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select sched_yield
mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep getitimer alarm setitimer
getpid sendfile socket connect accept sendto recvfrom sendmsg recvmsg shutdown bind listen
getsockname getpeername socketpair setsockopt getsockopt clone fork vfork execve exit wait4 kill
uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock fsync fdatasync truncate
ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link unlink symlink readlink chmod
fchmod chown fchown lchown umask gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog
getgid setuid setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups
setgroups setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid capget capset
rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib
personality ustat statfs fstatfs sysfs getpriority setpriority sched_setparam sched_getparam
sched_setscheduler sched_getscheduler sched_get_priority_max sched_get_priority_min
sched_rr_get_interval mlock munlock mlockall munlockall vhangup modify_ldt pivot_root _sysctl prctl
arch_prctl adjtimex setrlimit chroot sync acct settimeofday mount umount2 swapon swapoff reboot
sethostname setdomainname iopl ioperm create_module init_module delete_module get_kernel_syms
query_module quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead
setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
removexattr lremovexattr fremovexattr tkill time futex sched_setaffinity sched_getaffinity
set_thread_area io_setup io_destroy io_getevents io_submit io_cancel get_thread_area
lookup_dcookie epoll_create epoll_ctl_old epoll_wait_old remap_file_pages getdents64
set_tid_address restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime
timer_getoverrun timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group
epoll_wait epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink
mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl
ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat
mknodat fchownat futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat fchmodat
faccessat pselect6 ppoll unshare set_robust_list get_robust_list splice tee sync_file_range
vmsplice move_pages utimensat epoll_pwait signalfd timerfd_create eventfd fallocate timerfd_settime
timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev
rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64 name_to_handle_at
open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu process_vm_readv process_vm_writev kcmp
finit_module sched_setattr sched_getattr renameat2 seccomp getrandom memfd_create kexec_file_load
bpf execveat userfaultfd membarrier mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect
pkey_alloc pkey_free statx io_pgetevents rseq
"""
_NAMES_FROM_424 = """
pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount fsopen
fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2 process_madvise
epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset landlock_add_rule
landlock_restrict_self memfd_secret process_mrelease futex_waitv set_mempolicy_home_node
"""
SYSCALL_NAMES: dict[int, str] = {
    **dict(enumerate(_NAMES_FROM_0.split())),
    **{424 + i: name for i, name in enumerate(_NAMES_FROM_424.split())},
}


def syscall_name(nr: int) -> str:
    return SYSCALL_NAMES.get(nr, "unknown")

