"""x86-64 register numbering, blobs and target.xml, checked against Unicorn
state and against gdb 13 itself."""

from __future__ import annotations

import io
import re
import shutil
import socket
import struct
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as X

from gdbstub.target import regs_x86_64 as regs
from gdbstub.cli import demo_program
from gdbstub.target.process import LinuxProcess

GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")
GDB_TIMEOUT = 30

CODE = 0x1000


def new_uc() -> Uc:
    return Uc(UC_ARCH_X86, UC_MODE_64)


def run(uc: Uc, code: bytes) -> None:
    uc.mem_map(CODE, 0x1000, UC_PROT_ALL)
    uc.mem_write(CODE, code)
    uc.emu_start(CODE, CODE + len(code))


def offset_of(name: str) -> int:
    n = regs.number_of(name)
    return sum(r.size for r in regs.REGISTERS[:n])


def blob_field(blob: bytes, name: str) -> bytes:
    start = offset_of(name)
    return blob[start:start + regs.REGISTERS[regs.number_of(name)].size]


# --- numbering and layout ----------------------------------------------------

def test_numbering_follows_gdbserver_amd64_linux():
    names = [r.name for r in regs.REGISTERS]
    assert names[:17] == ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                          *(f"r{i}" for i in range(8, 16)), "rip"]
    assert names[17:24] == ["eflags", "cs", "ss", "ds", "es", "fs", "gs"]
    assert names[24:32] == [f"st{i}" for i in range(8)]
    assert names[32:40] == ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
    assert names[40:57] == [*(f"xmm{i}" for i in range(16)), "mxcsr"]
    assert names[57:] == ["orig_rax", "fs_base", "gs_base"]


def test_expedited_registers_are_rbp_rsp_rip():
    assert regs.EXPEDITED == (6, 7, 16)
    assert (regs.FP, regs.SP, regs.PC) == (6, 7, 16)
    assert [regs.REGISTERS[n].name for n in regs.EXPEDITED] == ["rbp", "rsp", "rip"]


def test_blob_is_all_registers_back_to_back():
    assert regs.BLOB_SIZE == sum(r.bitsize // 8 for r in regs.REGISTERS)
    assert len(regs.read_all(new_uc())) == regs.BLOB_SIZE


# --- single registers ----------------------------------------------------------

def test_general_registers_round_trip_at_their_blob_offsets():
    uc = new_uc()
    values = {name: (0x1111111111111111 * (i + 1)) & (2**64 - 1)
              for i, name in enumerate(["rax", "rbx", "r8", "r15", "rip", "rsp"])}
    for name, value in values.items():
        regs.write_register(uc, regs.number_of(name), value.to_bytes(8, "little"))
    assert uc.reg_read(X.UC_X86_REG_R15) == values["r15"]
    assert uc.reg_read(X.UC_X86_REG_RIP) == values["rip"]
    blob = regs.read_all(uc)
    for name, value in values.items():
        assert blob_field(blob, name) == value.to_bytes(8, "little")


def test_eflags_after_xor_shows_zf_and_pf():
    uc = new_uc()
    run(uc, bytes.fromhex("31c0"))             # xor eax, eax: result 0 sets ZF and PF
    eflags = int.from_bytes(regs.read_register(uc, regs.number_of("eflags")), "little")
    assert eflags & (1 << 6) and eflags & (1 << 2)        # ZF, PF (SDM vol.1 3.4.3)
    assert not eflags & 1                                   # CF clear
    assert eflags & (1 << 1)                                # bit 1 always reads 1


def test_xmm_round_trip_is_little_endian_128_bits():
    uc = new_uc()
    value = 0x0F0E0D0C0B0A09080706050403020100
    regs.write_register(uc, regs.number_of("xmm9"), value.to_bytes(16, "little"))
    assert uc.reg_read(X.UC_X86_REG_XMM9) == value
    assert blob_field(regs.read_all(uc), "xmm9") == bytes(range(16))


def test_fs_base_and_gs_base_map_to_unicorn():
    uc = new_uc()
    regs.write_register(uc, regs.number_of("fs_base"), (0x7FFFF7D8A740).to_bytes(8, "little"))
    uc.reg_write(X.UC_X86_REG_GS_BASE, 0x123000)
    assert uc.reg_read(X.UC_X86_REG_FS_BASE) == 0x7FFFF7D8A740
    assert blob_field(regs.read_all(uc), "gs_base") == (0x123000).to_bytes(8, "little")


def test_x87_state_after_fninit_fld1_fldz():
    uc = new_uc()
    run(uc, bytes.fromhex("dbe3" "d9e8" "d9ee"))   # fninit; fld1; fldz (SDM opcodes)
    read = lambda name: regs.read_register(uc, regs.number_of(name))
    assert int.from_bytes(read("fctrl"), "little") == 0x037F      # FNINIT's control word
    fstat = int.from_bytes(read("fstat"), "little")
    assert (fstat >> 11) & 7 == 6                                   # two pushes: TOP 0 -> 6
    # st0 = +0.0, st1 = +1.0 in the 80-bit format: 64-bit mantissa, then sign/exponent
    assert read("st0") == bytes(10)
    assert read("st1") == struct.pack("<QH", 1 << 63, 0x3FFF)
    # gdb wants the full tag word (FSTENV layout, 2 bits per *physical* register):
    # physical 6 = st0 holds zero (01), physical 7 = st1 is valid (00), the rest empty (11)
    assert int.from_bytes(read("ftag"), "little") == 0b00_01_11_11_11_11_11_11


def test_st_registers_follow_top_of_stack():
    uc = new_uc()
    regs.write_register(uc, regs.number_of("fstat"), (5 << 11).to_bytes(4, "little"))
    value = struct.pack("<QH", 0xC000000000000000, 0x4000)           # 3.0
    regs.write_register(uc, regs.number_of("st2"), value)
    assert uc.reg_read(X.UC_X86_REG_FP7) == (0xC000000000000000, 0x4000)   # (5 + 2) & 7


def test_fop_is_eleven_bits_and_fioff_keeps_the_upper_half_of_fip():
    uc = new_uc()
    regs.write_register(uc, regs.number_of("fop"), (0xFFFF).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_FOP) == 0x7FF
    uc.reg_write(X.UC_X86_REG_FIP, 0x1122334455667788)
    assert regs.read_register(uc, regs.number_of("fioff")) == (0x55667788).to_bytes(4, "little")
    regs.write_register(uc, regs.number_of("fioff"), (0xAABBCCDD).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_FIP) == 0x11223344AABBCCDD


def test_mxcsr_round_trip():
    uc = new_uc()
    regs.write_register(uc, regs.number_of("mxcsr"), (0x1F80).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_MXCSR) == 0x1F80


def test_orig_rax_defaults_to_minus_one_and_is_per_cpu():
    first, second = new_uc(), new_uc()
    n = regs.number_of("orig_rax")
    assert regs.read_register(first, n) == b"\xff" * 8
    regs.write_register(first, n, (60).to_bytes(8, "little"))
    assert regs.read_register(first, n) == (60).to_bytes(8, "little")
    assert regs.read_register(second, n) == b"\xff" * 8


def test_writing_fs_selector_keeps_fs_base():
    uc = new_uc()
    uc.reg_write(X.UC_X86_REG_FS_BASE, 0x4000)
    regs.write_register(uc, regs.number_of("fs"), (0).to_bytes(4, "little"))   # unchanged: a no-op
    assert uc.reg_read(X.UC_X86_REG_FS_BASE) == 0x4000
    with pytest.raises(ValueError):          # no GDT behind a non-null selector
        regs.write_register(uc, regs.number_of("fs"), (0x2B).to_bytes(4, "little"))
    assert uc.reg_read(X.UC_X86_REG_FS_BASE) == 0x4000


def test_cs_and_ss_are_linuxs_and_can_only_be_written_back_unchanged():
    proc = LinuxProcess.spawn(demo_program(), stdout=io.BytesIO())
    uc = proc.uc
    for name, value in (("cs", 0x33), ("ss", 0x2B), ("ds", 0), ("es", 0)):
        n = regs.number_of(name)
        assert regs.read_register(uc, n) == value.to_bytes(4, "little")
        regs.write_register(uc, n, value.to_bytes(4, "little"))      # what every `G` does: a no-op
        with pytest.raises(ValueError, match="keeps"):
            regs.write_register(uc, n, (value ^ 8).to_bytes(4, "little"))
    # the CPU still runs at CPL 3: `hlt` is a #GP there (at CPL 0 it would just end the run)
    uc.mem_write(proc.entry, b"\xf4")
    seen = []
    uc.hook_add(UC_HOOK_INTR, lambda uc, vector, _: (seen.append(vector), uc.emu_stop()))
    uc.emu_start(proc.entry, 0, count=1)
    assert seen == [13]


def test_bad_register_number_or_size():
    uc = new_uc()
    for bad in (-1, len(regs.REGISTERS), 1000):
        with pytest.raises(KeyError):
            regs.read_register(uc, bad)
        with pytest.raises(KeyError):
            regs.write_register(uc, bad, bytes(8))
    with pytest.raises(ValueError):
        regs.write_register(uc, regs.number_of("rax"), bytes(4))
    with pytest.raises(ValueError):
        regs.write_register(uc, regs.number_of("st0"), bytes(8))


# --- whole blobs -----------------------------------------------------------------

def test_writing_back_what_g_returned_changes_nothing():
    uc = new_uc()
    run(uc, bytes.fromhex("dbe3" "d9e8" "31c0"))
    uc.reg_write(X.UC_X86_REG_FS_BASE, 0x7000)
    uc.reg_write(X.UC_X86_REG_XMM3, 0xDEADBEEF << 64)
    before = regs.read_all(uc)
    regs.write_all(uc, before)
    assert regs.read_all(uc) == before


def test_full_blob_sets_every_plain_register():
    uc = new_uc()
    fields = dict(regs.REGISTER_BLOB.parse(regs.read_all(uc)))
    fields.pop("_io", None)
    fields["rdx"] = (0xABCDEF).to_bytes(8, "little")
    fields["xmm15"] = bytes(range(100, 116))
    fields["orig_rax"] = (231).to_bytes(8, "little")
    fields["gs_base"] = (0x9000).to_bytes(8, "little")
    regs.write_all(uc, regs.REGISTER_BLOB.build(fields))
    assert uc.reg_read(X.UC_X86_REG_RDX) == 0xABCDEF
    assert uc.reg_read(X.UC_X86_REG_XMM15) == int.from_bytes(bytes(range(100, 116)), "little")
    assert uc.reg_read(X.UC_X86_REG_GS_BASE) == 0x9000
    assert regs.read_register(uc, regs.number_of("orig_rax")) == (231).to_bytes(8, "little")


def test_blob_st_registers_use_the_blobs_own_top():
    uc = new_uc()                                    # TOP is 0 now
    fields = dict(regs.REGISTER_BLOB.parse(regs.read_all(uc)))
    fields.pop("_io", None)
    fields["fstat"] = (3 << 11).to_bytes(4, "little")
    fields["st0"] = struct.pack("<QH", 1 << 63, 0x3FFF)
    regs.write_all(uc, regs.REGISTER_BLOB.build(fields))
    assert uc.reg_read(X.UC_X86_REG_FP3) == (1 << 63, 0x3FFF)


def test_short_blob_writes_only_what_it_covers():
    uc = new_uc()
    uc.reg_write(X.UC_X86_REG_RCX, 0x1122334455667788)
    uc.reg_write(X.UC_X86_REG_RDX, 0x99)
    blob = (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + b"\xaa\xbb"
    regs.write_all(uc, blob)                    # rax, rbx, and the first two bytes of rcx
    assert uc.reg_read(X.UC_X86_REG_RAX) == 1
    assert uc.reg_read(X.UC_X86_REG_RBX) == 2
    assert uc.reg_read(X.UC_X86_REG_RCX) == 0x112233445566BBAA
    assert uc.reg_read(X.UC_X86_REG_RDX) == 0x99


def test_too_long_blob_is_refused():
    with pytest.raises(ValueError):
        regs.write_all(new_uc(), bytes(regs.BLOB_SIZE + 1))


# --- target.xml ----------------------------------------------------------------------

def test_target_xml_is_one_document_in_register_order():
    assert "xi:include" not in regs.TARGET_XML
    root = ET.fromstring(regs.TARGET_XML)
    assert root.findtext("architecture") == "i386:x86-64"
    assert root.findtext("osabi") == "GNU/Linux"
    features = [f.get("name") for f in root.findall("feature")]
    assert features == ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse",
                        "org.gnu.gdb.i386.linux", "org.gnu.gdb.i386.segments"]
    xml_regs = root.findall("feature/reg")
    assert [(r.get("name"), int(r.get("bitsize"))) for r in xml_regs] == \
        [(r.name, r.bitsize) for r in regs.REGISTERS]
    assert [int(r.get("regnum")) for r in xml_regs] == list(range(len(regs.REGISTERS)))


def _gdb(*commands: str) -> subprocess.CompletedProcess[str]:
    argv = [GDB, "-batch", "-nx"]
    for command in commands:
        argv += ["-ex", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=GDB_TIMEOUT)


@pytest.mark.gdb
@needs_gdb
def test_gdb_accepts_the_xml_with_our_numbers_and_offsets(tmp_path: Path):
    xml = tmp_path / "target.xml"
    xml.write_text(regs.TARGET_XML)
    done = _gdb("set architecture i386:x86-64", f"set tdesc filename {xml}",
                "maint print remote-registers")
    assert "warning" not in done.stderr.lower(), done.stderr
    # columns: Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset (rows without a remote number are pseudo registers)
    remote = {}
    for line in done.stdout.splitlines():
        cols = line.split()
        if len(cols) == 8 and cols[6].isdigit():
            remote[cols[0]] = (int(cols[6]), int(cols[7]), int(cols[4]), cols[5])
    assert len(remote) == len(regs.REGISTERS)
    for n, reg in enumerate(regs.REGISTERS):
        assert remote[reg.name][:3] == (n, offset_of(reg.name), reg.size), reg.name
    assert remote["eflags"][3] == "i386_eflags"
    assert remote["mxcsr"][3] == "i386_mxcsr"
    assert remote["xmm0"][3] == "vec128"


# --- gdb reading and writing registers through a minimal stub --------------------------

class MiniStub(threading.Thread):
    """Just enough RSP for gdb to fetch target.xml and use g/p/P/G against one Uc.

    It stands in for the real session layer so the register code can be
    checked against gdb's own decoding; memory reads answer E01."""

    def __init__(self, uc: Uc) -> None:
        super().__init__(daemon=True)
        self.uc = uc
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(GDB_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(GDB_TIMEOUT)
                self._serve(conn)
        except (OSError, ConnectionError) as exc:
            self.error = exc
        finally:
            self.listener.close()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                buf = buf.lstrip(b"+")
                match = re.match(rb"\$([^#]*)#..", buf, re.S)
                if not match:
                    break
                buf = buf[match.end():]
                reply = self._answer(match.group(1).decode())
                if reply is None:
                    conn.sendall(b"+")
                    return
                payload = reply.encode()
                conn.sendall(b"+$%s#%02x" % (payload, sum(payload) % 256))

    def _answer(self, packet: str) -> str | None:
        if packet.startswith("qSupported"):
            return "PacketSize=4000;qXfer:features:read+"
        if packet.startswith("qXfer:features:read:target.xml:"):
            offset, length = (int(x, 16) for x in packet.rsplit(":", 1)[1].split(","))
            chunk = regs.TARGET_XML[offset:offset + length]
            return ("m" if offset + length < len(regs.TARGET_XML) else "l") + chunk
        if packet == "?":
            return "S05"
        if packet == "g":
            return regs.read_all(self.uc).hex()
        if packet.startswith("G"):
            regs.write_all(self.uc, bytes.fromhex(packet[1:]))
            return "OK"
        if packet.startswith("p"):
            return regs.read_register(self.uc, int(packet[1:], 16)).hex()
        if packet.startswith("P"):
            number, value = packet[1:].split("=")
            regs.write_register(self.uc, int(number, 16), bytes.fromhex(value))
            return "OK"
        if packet.startswith(("Hg", "Hc")):
            return "OK"
        if packet == "qAttached":
            return "1"
        if packet.startswith(("m", "qTStatus", "qOffsets", "vMustReplyEmpty", "qSymbol")):
            return "E01" if packet.startswith("m") else ""
        if packet == "D" or packet.startswith("D;") or packet == "k":
            return None if packet == "k" else "OK"
        return ""


def _gdb_against(uc: Uc, *commands: str) -> str:
    stub = MiniStub(uc)
    stub.start()
    done = _gdb("set confirm off", f"target remote 127.0.0.1:{stub.port}", *commands, "detach")
    stub.join(GDB_TIMEOUT)
    assert stub.error is None, stub.error
    return done.stdout + done.stderr


@pytest.mark.gdb
@needs_gdb
def test_gdb_prints_our_registers():
    uc = new_uc()
    run(uc, bytes.fromhex("dbe3" "d9e8" "31c0"))          # fninit; fld1; xor eax,eax
    uc.reg_write(X.UC_X86_REG_RIP, 0x401136)
    uc.reg_write(X.UC_X86_REG_FS_BASE, 0x7FFFF7D8A740)
    uc.reg_write(X.UC_X86_REG_XMM0, (4 << 96) | (3 << 64) | (2 << 32) | 1)
    out = _gdb_against(uc, "p $eflags", "p $xmm0.v4_int32", "p/x $fs_base", "p $st0",
                       "p $orig_rax", "p/x $pc", "info registers mxcsr")
    assert "[ PF ZF ]" in out
    assert "{1, 2, 3, 4}" in out
    assert "0x7ffff7d8a740" in out
    assert "= 1\n" in out                                  # st0 = 1.0 after fld1
    assert "= -1\n" in out                                 # orig_rax: no syscall
    assert "0x401136" in out
    assert "Architecture rejected" not in out and "Truncated register" not in out


@pytest.mark.gdb
@needs_gdb
def test_gdb_writes_reach_the_cpu():
    uc = new_uc()
    _gdb_against(uc, "set $rax = 0x1234", "set $xmm1.v2_int64[1] = 77",
                 "set $fs_base = 0x5000", "set $eflags = 0x202")
    assert uc.reg_read(X.UC_X86_REG_RAX) == 0x1234
    assert uc.reg_read(X.UC_X86_REG_XMM1) >> 64 == 77
    assert uc.reg_read(X.UC_X86_REG_FS_BASE) == 0x5000
    assert uc.reg_read(X.UC_X86_REG_EFLAGS) == 0x202
