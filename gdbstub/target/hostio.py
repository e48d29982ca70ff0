"""gdb's host I/O (`vFile:*`), read-only and confined to the served program.

gdb reads the executable through `vFile:open/pread/fstat/close` and probes a
few other paths along the way ("just probing", /proc/PID/task/PID/maps,
/usr/lib/debug/.build-id/...).  This object answers all of them from a fixed
allow-list of real paths: anything else is ENOENT, any write is EACCES, and
nothing on the host is ever created or changed.

Numbers on the wire are gdb's File-I/O values (GDB manual, "Protocol-specific
Representation of Datatypes"), not the host's: the open flags and errno
constants below, and the 64-byte big-endian `struct stat`.
"""

from __future__ import annotations

import contextlib
import errno as host_errno
import os
import stat
from typing import Iterable, Mapping, Sequence

from construct import Int32ub, Int64ub, Struct

__all__ = [
    "HostIO", "HostIOError", "FILEIO_STAT", "MAX_OPEN_FILES",
    "FILEIO_O_RDONLY", "FILEIO_O_WRONLY", "FILEIO_O_RDWR", "FILEIO_O_APPEND",
    "FILEIO_O_CREAT", "FILEIO_O_TRUNC", "FILEIO_O_EXCL",
    "EPERM", "ENOENT", "EINTR", "EBADF", "EACCES", "EFAULT", "EBUSY", "EEXIST",
    "ENODEV", "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE", "EFBIG",
    "ENOSPC", "ESPIPE", "EROFS", "ENAMETOOLONG", "EUNKNOWN",
]

# gdb File-I/O open flags ("Open Flags"); they differ from Linux's O_CREAT etc.
FILEIO_O_RDONLY = 0x0
FILEIO_O_WRONLY = 0x1
FILEIO_O_RDWR = 0x2
FILEIO_O_APPEND = 0x8
FILEIO_O_CREAT = 0x200
FILEIO_O_TRUNC = 0x400
FILEIO_O_EXCL = 0x800
_WRITE_FLAGS = FILEIO_O_WRONLY | FILEIO_O_RDWR | FILEIO_O_APPEND | FILEIO_O_CREAT | FILEIO_O_TRUNC

# gdb File-I/O errno values ("Errno Values")
EPERM, ENOENT, EINTR, EBADF, EACCES, EFAULT, EBUSY, EEXIST = 1, 2, 4, 9, 13, 14, 16, 17
ENODEV, ENOTDIR, EISDIR, EINVAL, ENFILE, EMFILE, EFBIG = 19, 20, 21, 22, 23, 24, 27
ENOSPC, ESPIPE, EROFS, ENAMETOOLONG, EUNKNOWN = 28, 29, 30, 91, 9999

_FROM_HOST_ERRNO = {
    host_errno.EPERM: EPERM, host_errno.ENOENT: ENOENT, host_errno.EINTR: EINTR,
    host_errno.EBADF: EBADF, host_errno.EACCES: EACCES, host_errno.EFAULT: EFAULT,
    host_errno.EBUSY: EBUSY, host_errno.EEXIST: EEXIST, host_errno.ENODEV: ENODEV,
    host_errno.ENOTDIR: ENOTDIR, host_errno.EISDIR: EISDIR, host_errno.EINVAL: EINVAL,
    host_errno.ENFILE: ENFILE, host_errno.EMFILE: EMFILE, host_errno.EFBIG: EFBIG,
    host_errno.ENOSPC: ENOSPC, host_errno.ESPIPE: ESPIPE, host_errno.EROFS: EROFS,
    host_errno.ENAMETOOLONG: ENAMETOOLONG,
    # the O_NOFOLLOW refusal: for gdb the file is simply not there
    host_errno.ELOOP: ENOENT,
}

# gdb's `struct stat` on the wire: fixed sizes, big-endian, 64 bytes
FILEIO_STAT = Struct(
    "st_dev" / Int32ub, "st_ino" / Int32ub, "st_mode" / Int32ub, "st_nlink" / Int32ub,
    "st_uid" / Int32ub, "st_gid" / Int32ub, "st_rdev" / Int32ub,
    "st_size" / Int64ub, "st_blksize" / Int64ub, "st_blocks" / Int64ub,
    "st_atime" / Int32ub, "st_mtime" / Int32ub, "st_ctime" / Int32ub,
)

MAX_OPEN_FILES = 16            # per connection; EMFILE beyond
MAX_PREAD = 1 << 20            # gdb asks for PacketSize at a time; cap what one request may allocate
_FIRST_FD = 3                  # look like a process whose stdio is taken, as gdbserver's replies do
_MASK32 = 0xFFFF_FFFF
_MASK64 = (1 << 64) - 1


class HostIOError(Exception):
    """A vFile request failed; `errno` is gdb's File-I/O number (`F-1,errno`)."""

    def __init__(self, errno: int, message: str = "") -> None:
        super().__init__(errno, message or f"host I/O error {errno}")
        self.errno = errno


def _fileio_errno(exc: OSError) -> int:
    return _FROM_HOST_ERRNO.get(exc.errno or 0, EUNKNOWN)


def _fileio_mode(host_mode: int) -> int:
    # gdb's File-I/O knows regular files, directories and character devices,
    # and the nine permission bits; its values coincide with Linux's.
    kind = 0
    for is_kind, bits in ((stat.S_ISREG, stat.S_IFREG), (stat.S_ISDIR, stat.S_IFDIR),
                          (stat.S_ISCHR, stat.S_IFCHR)):
        if is_kind(host_mode):
            kind = bits
    return kind | (host_mode & 0o777)


class HostIO:
    """One connection's vFile state: the files gdb has open, and the fs pid."""

    def __init__(self, allowed: Iterable[str | bytes], pid: int, *, exe: str | bytes | None = None,
                 file_parts: Mapping[str | bytes, Sequence[tuple[int, int]]] | None = None) -> None:
        """`allowed` are the real paths gdb may open (realpath them first: a
        path that is itself a symlink can never match, since requests are
        compared after realpath).  `exe` is what readlink("/proc/PID/exe")
        answers; it defaults to the only allowed path.  `file_parts` gives,
        for an allowed path, the (start, end) ranges its reader reads one at
        a time (ElfImage.file_parts); see `part_rest`."""
        self._allowed = frozenset(os.path.normpath(os.fsencode(p)) for p in allowed)
        self._parts = {os.path.normpath(os.fsencode(path)): tuple(parts)
                       for path, parts in (file_parts or {}).items()}
        for path in self._allowed:
            if not os.path.isabs(path):
                raise ValueError(f"allowed path {path!r} is not absolute")
        if exe is None and len(self._allowed) == 1:
            exe = next(iter(self._allowed))
        self._exe = os.fsencode(exe) if exe is not None else None
        self.pid = pid
        self._files: dict[int, tuple[int, bytes]] = {}   # our fd -> (host fd, real path)

    # vFile:setfs
    def setfs(self, pid: int) -> int:
        """Choose whose filesystem later paths name: 0 (ours) or the program's,
        which is the same one here.  Any other pid is EINVAL."""
        if pid not in (0, self.pid):
            raise HostIOError(EINVAL, f"no process {pid}")
        return 0

    # vFile:open
    def open(self, path: bytes, flags: int, mode: int) -> int:
        """Open an allowed file read-only; return our fd for it."""
        del mode                                 # only meaningful with O_CREAT, which is refused
        if flags & _WRITE_FLAGS:
            raise HostIOError(EACCES, "host I/O is read-only")
        if len(self._files) >= MAX_OPEN_FILES:
            raise HostIOError(EMFILE)
        real = self._resolve(path)
        try:
            # O_NOFOLLOW: a symlink swapped in after the realpath check is refused
            host_fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise HostIOError(_fileio_errno(exc), str(exc)) from exc
        try:
            kind = os.fstat(host_fd).st_mode
            if stat.S_ISDIR(kind):
                raise HostIOError(EISDIR, "is a directory")
            if not stat.S_ISREG(kind):
                raise HostIOError(ENODEV, "not a regular file")   # the manual's word for devices, pipes, sockets
        except BaseException:
            os.close(host_fd)
            raise
        fd = next(n for n in range(_FIRST_FD, _FIRST_FD + MAX_OPEN_FILES) if n not in self._files)
        self._files[fd] = (host_fd, real)
        return fd

    def _resolve(self, path: bytes) -> bytes:
        """The real path behind `path` if it is allowed; ENOENT otherwise."""
        # gdb always sends absolute paths; a relative one would depend on our cwd
        if b"\0" in path or not os.path.isabs(path):
            raise HostIOError(ENOENT)
        real = os.path.realpath(path)
        if real not in self._allowed:
            raise HostIOError(ENOENT)
        return real

    def _host_fd(self, fd: int) -> int:
        try:
            return self._files[fd][0]
        except KeyError:
            raise HostIOError(EBADF, f"fd {fd} is not open") from None

    # vFile:pread
    def pread(self, fd: int, count: int, offset: int) -> bytes:
        """Up to `count` bytes at `offset` (b"" at or past the end)."""
        host_fd = self._host_fd(fd)
        if count < 0 or offset < 0:
            raise HostIOError(EINVAL)
        try:
            return os.pread(host_fd, min(count, MAX_PREAD), offset)
        except OSError as exc:
            raise HostIOError(_fileio_errno(exc), str(exc)) from exc

    def part_rest(self, fd: int, offset: int) -> int:
        """Bytes from `offset` to the end of the file part that holds it; 0
        where none does (or the file's parts are not known)."""
        _, path = self._files.get(fd, (None, b""))
        return max((end - offset for start, end in self._parts.get(path, ()) if start <= offset < end),
                   default=0)

    # vFile:close
    def close(self, fd: int) -> None:
        host_fd = self._host_fd(fd)
        del self._files[fd]         # the fd is gone even if the host reports an error
        try:
            os.close(host_fd)
        except OSError as exc:
            raise HostIOError(_fileio_errno(exc), str(exc)) from exc

    # vFile:fstat
    def fstat(self, fd: int) -> bytes:
        """gdb's 64-byte big-endian `struct stat` for an open fd.  Fields too
        wide for gdb's format keep their low bits, as gdbserver's do."""
        try:
            st = os.fstat(self._host_fd(fd))
        except OSError as exc:
            raise HostIOError(_fileio_errno(exc), str(exc)) from exc
        return FILEIO_STAT.build(dict(
            st_dev=st.st_dev & _MASK32, st_ino=st.st_ino & _MASK32,
            st_mode=_fileio_mode(st.st_mode), st_nlink=st.st_nlink & _MASK32,
            st_uid=st.st_uid & _MASK32, st_gid=st.st_gid & _MASK32, st_rdev=st.st_rdev & _MASK32,
            st_size=st.st_size & _MASK64, st_blksize=st.st_blksize & _MASK64,
            st_blocks=st.st_blocks & _MASK64,
            st_atime=int(st.st_atime) & _MASK32, st_mtime=int(st.st_mtime) & _MASK32,
            st_ctime=int(st.st_ctime) & _MASK32,
        ))

    # vFile:readlink
    def readlink(self, path: bytes) -> bytes:
        """Only /proc/PID/exe is a link gdb may read: it names the program.
        An allowed file is a real path, hence not a link (EINVAL, as
        readlink(2) says); anything else does not exist."""
        if self._exe is not None and path == b"/proc/%d/exe" % self.pid:
            return self._exe
        if b"\0" not in path and os.path.normpath(path) in self._allowed:
            raise HostIOError(EINVAL, "not a symbolic link")
        raise HostIOError(ENOENT)

    def close_all(self) -> None:
        """Close every file gdb left open (on disconnect)."""
        files, self._files = self._files, {}
        for host_fd, _ in files.values():
            # cleanup on disconnect: a host close error has no one to report to
            with contextlib.suppress(OSError):
                os.close(host_fd)

    @property
    def open_count(self) -> int:
        return len(self._files)
