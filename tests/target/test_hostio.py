"""vFile host I/O: read-only, confined to the allowed real paths, gdb's numbers."""

from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path

import pytest

from gdbstub.target import hostio
from gdbstub.target.hostio import HostIO, HostIOError

PID = 4242
CONTENT = bytes(range(256)) * 40 + b"tail"


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    """The served program: tmp/bin/prog, plus a secret file next to bin/."""
    (tmp_path / "bin").mkdir()
    path = tmp_path / "bin" / "prog"
    path.write_bytes(CONTENT)
    path.chmod(0o750)
    (tmp_path / "secret").write_bytes(b"not for gdb")
    return path


@pytest.fixture
def hio(prog: Path):
    io = HostIO(allowed={str(prog)}, pid=PID)
    yield io
    io.close_all()


def errno_of(call, *args) -> int:
    with pytest.raises(HostIOError) as caught:
        call(*args)
    return caught.value.errno


def b(path: Path | str) -> bytes:
    return os.fsencode(str(path))


# --- reading the program ------------------------------------------------------------

def test_part_rest_is_what_is_left_of_the_part_a_read_starts_in(prog: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.write_bytes(CONTENT)
    io = HostIO(allowed={str(prog), str(other)}, pid=PID, exe=str(prog),
                file_parts={str(prog): [(0, 64), (64, 624), (1000, 5000)]})
    fd, other_fd = io.open(b(prog), hostio.FILEIO_O_RDONLY, 0), io.open(b(other), hostio.FILEIO_O_RDONLY, 0)
    assert [io.part_rest(fd, offset) for offset in (0, 63, 64, 623, 700, 1000, 4999, 5000)] == \
        [64, 1, 560, 1, 0, 4000, 1, 0]
    assert io.part_rest(other_fd, 0) == 0                 # its parts are not known
    assert io.part_rest(99, 0) == 0                       # not open: pread will say EBADF
    io.close_all()


def test_open_pread_close(hio: HostIO, prog: Path):
    fd = hio.open(b(prog), hostio.FILEIO_O_RDONLY, 0)
    assert hio.pread(fd, 16, 0) == CONTENT[:16]
    assert hio.pread(fd, 0x47FF, 100) == CONTENT[100:100 + 0x47FF]
    assert hio.pread(fd, 100, len(CONTENT) - 4) == b"tail"
    assert hio.pread(fd, 100, len(CONTENT) + 10) == b""            # past the end: EOF, not an error
    hio.close(fd)
    assert errno_of(hio.pread, fd, 1, 0) == hostio.EBADF


def test_fstat_is_gdbs_64_byte_big_endian_struct(hio: HostIO, prog: Path):
    fd = hio.open(b(prog), 0, 0)
    raw = hio.fstat(fd)
    host = os.stat(prog)
    assert len(raw) == 64
    # the manual's layout, read with struct rather than the construct under test
    (dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks,
     atime, mtime, ctime) = struct.unpack(">7I3Q3I", raw)
    assert size == len(CONTENT) == host.st_size
    assert mode == stat.S_IFREG | 0o750
    assert (ino, nlink, uid, gid) == (host.st_ino & 0xFFFFFFFF, host.st_nlink, host.st_uid, host.st_gid)
    assert mtime == int(host.st_mtime) & 0xFFFFFFFF
    assert blocks == host.st_blocks and blksize == host.st_blksize
    assert hostio.FILEIO_STAT.parse(raw).st_size == size


def test_gdb_fileio_flag_values_match_the_manual():
    # GDB manual, "Open Flags" (hex)
    assert (hostio.FILEIO_O_RDONLY, hostio.FILEIO_O_WRONLY, hostio.FILEIO_O_RDWR) == (0, 1, 2)
    assert (hostio.FILEIO_O_APPEND, hostio.FILEIO_O_CREAT) == (0x8, 0x200)
    assert (hostio.FILEIO_O_TRUNC, hostio.FILEIO_O_EXCL) == (0x400, 0x800)


# --- read-only ------------------------------------------------------------------------

@pytest.mark.parametrize("flags", [
    hostio.FILEIO_O_WRONLY, hostio.FILEIO_O_RDWR, hostio.FILEIO_O_APPEND,
    hostio.FILEIO_O_CREAT, hostio.FILEIO_O_TRUNC,
    hostio.FILEIO_O_WRONLY | hostio.FILEIO_O_CREAT | hostio.FILEIO_O_TRUNC,
])
def test_any_write_flag_is_eacces_and_nothing_changes(hio: HostIO, prog: Path, flags: int):
    before = os.stat(prog)
    assert errno_of(hio.open, b(prog), flags, 0o644) == hostio.EACCES
    after = os.stat(prog)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert prog.read_bytes() == CONTENT


def test_create_is_refused_before_the_path_is_even_looked_at(hio: HostIO, prog: Path):
    new = prog.parent / "created-by-gdb"
    flags = hostio.FILEIO_O_CREAT | hostio.FILEIO_O_WRONLY
    assert errno_of(hio.open, b(new), flags, 0o700) == hostio.EACCES
    assert not new.exists()


def test_unknown_flag_bits_are_ignored_as_the_manual_says(hio: HostIO, prog: Path):
    fd = hio.open(b(prog), 0x10000, 0)
    assert hio.pread(fd, 4, 0) == CONTENT[:4]


# --- confinement -------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    b"just probing",
    b"/proc/4242/task/4242/maps",
    b"/usr/lib/debug/.build-id/ab/cdef0123456789.debug",
    b"/etc/passwd",
    b"",
    b"/bin/../etc/passwd",
])
def test_everything_else_is_enoent(hio: HostIO, path: bytes):
    assert errno_of(hio.open, path, 0, 0) == hostio.ENOENT


def test_path_traversal_out_of_the_allowed_dir(hio: HostIO, prog: Path):
    escaping = b(prog.parent) + b"/../secret"
    assert os.path.exists(escaping)
    assert errno_of(hio.open, escaping, 0, 0) == hostio.ENOENT
    deep = b(prog.parent) + b"/../../../../../../../../etc/passwd"
    assert errno_of(hio.open, deep, 0, 0) == hostio.ENOENT


def test_a_detour_that_lands_on_the_program_is_the_program(hio: HostIO, prog: Path):
    detour = b(prog.parent) + b"/../bin/./prog"
    fd = hio.open(detour, 0, 0)
    assert hio.pread(fd, 4, 0) == CONTENT[:4]


def test_symlink_to_the_allowed_file_is_allowed(hio: HostIO, prog: Path, tmp_path: Path):
    link = tmp_path / "link-to-prog"
    link.symlink_to(prog)
    fd = hio.open(b(link), 0, 0)
    assert hio.pread(fd, 8, 0) == CONTENT[:8]


def test_allowed_name_that_is_a_symlink_to_elsewhere_is_not_followed(tmp_path: Path):
    (tmp_path / "secret").write_bytes(b"not for gdb")
    disguised = tmp_path / "prog"
    disguised.symlink_to(tmp_path / "secret")
    io = HostIO(allowed={str(disguised)}, pid=PID)
    assert errno_of(io.open, b(disguised), 0, 0) == hostio.ENOENT
    assert errno_of(io.open, b(tmp_path / "secret"), 0, 0) == hostio.ENOENT


def test_probes_are_answered_quickly(hio: HostIO):
    started = time.perf_counter()
    for n in range(200):
        with pytest.raises(HostIOError):
            hio.open(b"/usr/lib/debug/.build-id/%02x/0123.debug" % (n % 256), 0, 0)
    assert time.perf_counter() - started < 2.0        # generous: ~10 us each measured


def test_allowed_paths_must_be_absolute():
    with pytest.raises(ValueError):
        HostIO(allowed={"relative/prog"}, pid=PID)


def test_a_directory_is_eisdir(tmp_path: Path):
    io = HostIO(allowed={str(tmp_path)}, pid=PID)
    assert errno_of(io.open, b(tmp_path), 0, 0) == hostio.EISDIR
    assert io.open_count == 0


def test_host_errno_is_mapped_to_gdbs(prog: Path):
    io = HostIO(allowed={str(prog)}, pid=PID)
    prog.unlink()                                  # allowed, but gone on the host
    assert errno_of(io.open, b(prog), 0, 0) == hostio.ENOENT


# --- descriptors ----------------------------------------------------------------------------

def test_bad_fds_are_ebadf(hio: HostIO):
    for call, args in ((hio.pread, (7, 1, 0)), (hio.close, (7,)), (hio.fstat, (7,))):
        assert errno_of(call, *args) == hostio.EBADF


def test_negative_count_or_offset_is_einval(hio: HostIO, prog: Path):
    fd = hio.open(b(prog), 0, 0)
    assert errno_of(hio.pread, fd, -1, 0) == hostio.EINVAL
    assert errno_of(hio.pread, fd, 1, -1) == hostio.EINVAL


def test_at_most_sixteen_open_files(hio: HostIO, prog: Path):
    fds = [hio.open(b(prog), 0, 0) for _ in range(hostio.MAX_OPEN_FILES)]
    assert len(set(fds)) == 16
    assert errno_of(hio.open, b(prog), 0, 0) == hostio.EMFILE
    hio.close(fds[5])
    assert hio.open(b(prog), 0, 0) == fds[5]             # lowest free number again


def _host_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_close_all_releases_every_host_descriptor(prog: Path):
    io = HostIO(allowed={str(prog)}, pid=PID)
    before = _host_fds()
    fds = [io.open(b(prog), 0, 0) for _ in range(5)]
    assert len(_host_fds() - before) == 5
    io.close_all()
    assert _host_fds() == before
    assert io.open_count == 0
    assert errno_of(io.pread, fds[0], 1, 0) == hostio.EBADF


# --- setfs and readlink ------------------------------------------------------------------------

def test_setfs_accepts_ours_and_the_programs(hio: HostIO):
    assert hio.setfs(0) == 0
    assert hio.setfs(PID) == 0
    assert errno_of(hio.setfs, 1) == hostio.EINVAL


def test_readlink_proc_exe_names_the_program(hio: HostIO, prog: Path):
    assert hio.readlink(b"/proc/%d/exe" % PID) == b(prog)
    assert errno_of(hio.readlink, b"/proc/1/exe") == hostio.ENOENT
    assert errno_of(hio.readlink, b"/proc/self/exe") == hostio.ENOENT
    assert errno_of(hio.readlink, b(prog)) == hostio.EINVAL        # a real path is not a link


def test_readlink_needs_to_know_which_file_is_the_program(prog: Path, tmp_path: Path):
    other = tmp_path / "libfoo.so"
    other.write_bytes(b"\x7fELF")
    ambiguous = HostIO(allowed={str(prog), str(other)}, pid=PID)
    assert errno_of(ambiguous.readlink, b"/proc/%d/exe" % PID) == hostio.ENOENT
    explicit = HostIO(allowed={str(prog), str(other)}, pid=PID, exe=str(prog))
    assert explicit.readlink(b"/proc/%d/exe" % PID) == b(prog)


def test_errno_values_are_gdbs():
    # GDB manual, "Errno Values"
    assert (hostio.EPERM, hostio.ENOENT, hostio.EINTR, hostio.EBADF, hostio.EACCES) == (1, 2, 4, 9, 13)
    assert (hostio.EMFILE, hostio.ENAMETOOLONG, hostio.EUNKNOWN) == (24, 91, 9999)
