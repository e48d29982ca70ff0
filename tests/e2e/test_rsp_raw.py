"""The real server, in-process, over a real TCP socket, judged byte by byte against the RSP.

Each test builds a Machine, serves it with `Server.serve_tcp` on 127.0.0.1 port 0 and talks to it
with RspClient: through its codec (`request`) where only the payload matters, and through `Wire`
(raw bytes on the client's socket) where the protocol fixes the exact bytes. Frames sent by `Wire`
and the decoding of what it receives are written here from the GDB manual ("Overview"), not taken
from the project's codec, so the codec is checked rather than trusted. Addresses come from the
test program's own ELF file (pyelftools), instruction lengths from capstone.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import capstone
import pytest
import trio
from elftools.elf.elffile import ELFFile

from gdbstub.rsp.client import RspClient
from gdbstub.rsp.server import Server
from gdbstub.target.machine import Machine
from gdbstub.target.regs_x86_64 import REGISTERS, number_of
from tests.programs.build import build, have_compiler

from .oracle import code_bytes

TEST_SECONDS = 10          # every test body runs under trio.fail_after(TEST_SECONDS)
QUIET_SECONDS = 0.3        # "nothing more arrives" means nothing within this long
PROMPT_SECONDS = 2.0       # an answer the server should give "at once"

# GDB File-I/O values (GDB manual, "Open Flags" and "Errno Values").
FILEIO_O_WRONLY, FILEIO_O_CREAT, FILEIO_O_TRUNC = 0x1, 0x200, 0x400
FILEIO_ENOENT, FILEIO_EACCES = 2, 13
FILEIO_STAT_SIZE = 64
# Linux auxv tags (include/uapi/linux/auxvec.h).
AT_NULL, AT_PAGESZ, AT_ENTRY = 0, 6, 9
# x86-64 register numbers in gdb's order: rbp, rsp, rip are what gdbserver expedites.
RBP, RSP, RIP = 0x06, 0x07, 0x10

ERROR_REPLY = re.compile(rb"E[0-9a-fA-F]{2}")


# ----------------------------------------------------------------------------- wire helpers

def frame(payload: bytes) -> bytes:
    """`$payload#cs`, the checksum being the payload's byte sum modulo 256 (GDB manual, Overview)."""
    return b"$%b#%02x" % (payload, sum(payload) & 0xFF)


def escape_binary(data: bytes) -> bytes:
    """What gdb does to binary data: '#', '$', '}' and '*' become '}' + byte^0x20."""
    out = bytearray()
    for byte in data:
        if byte in b"#$}*":
            out += bytes((0x7D, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def decode_reply(wire: bytes) -> bytes:
    """A stub's payload as it appeared on the wire -> data: expand `c*N` runs, then undo escapes."""
    expanded = bytearray()
    i = 0
    while i < len(wire):
        if wire[i] == ord("*"):
            expanded += expanded[-1:] * (wire[i + 1] - 29)
            i += 2
        else:
            expanded.append(wire[i])
            i += 1
    data = bytearray()
    bytes_iter = iter(expanded)
    for byte in bytes_iter:
        data.append(next(bytes_iter) ^ 0x20 if byte == 0x7D else byte)
    return bytes(data)


def split_frame(raw: bytes) -> bytes:
    """The wire payload of one complete frame (`$...#cs`), after checking its checksum."""
    match = re.fullmatch(rb"\$([^#$]*)#([0-9a-f]{2})", raw, re.DOTALL)
    assert match, f"not one frame: {raw!r}"
    assert int(match[2], 16) == sum(match[1]) & 0xFF, f"bad checksum in {raw!r}"
    return match[1]


class Wire:
    """Raw bytes over an RspClient's socket: what was sent is exactly what is checked."""

    def __init__(self, client: RspClient) -> None:
        self.client = client
        self.pending = bytearray()

    async def send(self, data: bytes) -> None:
        await self.client.send_raw(data)

    async def _fill(self) -> None:
        data = await self.client.receive_raw()
        if not data:
            raise EOFError(f"the server closed the connection; unread: {bytes(self.pending)!r}")
        self.pending += data

    async def read(self, count: int) -> bytes:
        while len(self.pending) < count:
            await self._fill()
        out = bytes(self.pending[:count])
        del self.pending[:count]
        return out

    async def read_frame(self) -> bytes:
        """Everything up to the end of the next frame: any '+'/'-' before it, then `$...#cs`."""
        while True:
            start = self.pending.find(b"$")
            end = self.pending.find(b"#", start + 1) if start >= 0 else -1
            if end >= 0 and len(self.pending) >= end + 3:
                return await self.read(end + 3)
            await self._fill()

    async def request_wire(self, payload: bytes) -> bytes:
        """One exchange in ack mode: our frame, the server's '+', its reply frame, our '+'.
        Returns the reply's payload as it was on the wire (runs and escapes left in)."""
        await self.send(frame(payload))
        raw = await self.read_frame()
        assert raw[:1] == b"+", f"no ack before the reply to {payload[:30]!r}: {raw!r}"
        await self.send(b"+")
        return split_frame(raw[1:])

    async def request(self, payload: bytes) -> bytes:
        """request_wire, with the reply decoded."""
        return decode_reply(await self.request_wire(payload))

    async def silence(self, seconds: float = QUIET_SECONDS) -> bytes:
        """Whatever arrives within `seconds` (b"" when the server keeps quiet), unread bytes first."""
        with trio.move_on_after(seconds):
            while True:
                await self._fill()
        out = bytes(self.pending)
        self.pending.clear()
        return out

    async def until_eof(self) -> bytes:
        """All bytes up to the server closing the connection (bounded by the test's deadline)."""
        while True:
            data = await self.client.receive_raw()
            if not data:
                out = bytes(self.pending)
                self.pending.clear()
                return out
            self.pending += data


def stop_fields(reply: bytes) -> tuple[int, dict[bytes, bytes]]:
    """`T<sig>n:r;n:r;...` -> (signal, {n: r}); asserts the T shape."""
    match = re.fullmatch(rb"T([0-9a-f]{2})((?:[0-9a-zA-Z]+:[0-9a-f]*;)*)", reply)
    assert match, f"not a T stop reply: {reply!r}"
    pairs = dict(pair.split(b":", 1) for pair in match[2].split(b";") if pair)
    return int(match[1], 16), pairs


def assert_expedited(fields: dict[bytes, bytes]) -> None:
    """rbp, rsp and rip ride along in the stop reply, 8 bytes each, as gdbserver sends them."""
    for regnum in (RBP, RSP, RIP):
        register(fields, regnum)


def register(fields: dict[bytes, bytes], regnum: int) -> int:
    value = fields[b"%02x" % regnum]
    assert len(value) == 16, f"register {regnum:#x} is not 8 bytes: {value!r}"
    return int.from_bytes(bytes.fromhex(value.decode()), "little")


# ----------------------------------------------------------------------------- program facts

@dataclass(frozen=True)
class Program:
    path: str
    entry: int
    symbols: dict[str, tuple[int, int]]   # name -> (address, size), functions and objects
    data_end: int          # end of the last PT_LOAD, page-rounded: the empty brk area begins here

    def addr(self, name: str) -> int:
        return self.symbols[name][0]

    def contains(self, name: str, addr: int) -> bool:
        start, size = self.symbols[name]
        return start <= addr < start + size

    @classmethod
    def load(cls, name: str) -> Program:
        path = str(build(name))
        with open(path, "rb") as f:
            elf = ELFFile(f)
            assert elf["e_type"] == "ET_EXEC", "the raw tests assume a non-PIE static program"
            symbols = {sym.name: (sym["st_value"], sym["st_size"])
                       for sym in elf.get_section_by_name(".symtab").iter_symbols()
                       if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")}
            loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
            end = max(seg["p_vaddr"] + seg["p_memsz"] for seg in loads)
            return cls(path, elf["e_entry"], symbols, (end + 0xFFF) & ~0xFFF)


def built_program(name: str) -> Program:
    if not have_compiler():
        pytest.skip("gcc is not installed (.ci/run installs it)")
    return Program.load(name)


@pytest.fixture(scope="module")
def counter() -> Program:
    return built_program("counter")


@pytest.fixture(scope="module")
def spin() -> Program:
    return built_program("spin")


# ----------------------------------------------------------------------------- the served machine

@dataclass
class Served:
    machine: Machine
    server: Server
    port: int
    clients: list[RspClient] = field(default_factory=list)

    async def connect(self) -> RspClient:
        client = await RspClient.connect("127.0.0.1", self.port)
        self.clients.append(client)
        return client

    async def wire(self) -> Wire:
        return Wire(await self.connect())

    async def wait_idle(self) -> None:
        """Until the server has finished with its client (it closed, or we did)."""
        while self.server.busy:
            await trio.sleep(0.01)

    async def shutdown(self) -> None:
        for client in self.clients:
            await client.aclose()
        # The connection sees EOF and stops the CPU itself; bounded, then stop it regardless,
        # because a CPU thread that never returns would keep the cancelled nursery waiting.
        with trio.move_on_after(5):
            await self.wait_idle()
        if self.server.busy:
            self.machine.detach_stop()
        self.server.done.set()


@pytest.fixture
async def serve(nursery):
    """`await serve(program, *args, debug_arch=...)` -> Served: a Machine behind a real listening socket."""
    started: list[Served] = []

    async def start(program: Program, *args: str, debug_arch: str = "x86", log_packets: bool = False) -> Served:
        machine = Machine(program.path, [program.path, *args], debug_arch=debug_arch,
                          stdout=io.BytesIO(), stderr=io.BytesIO())
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        server = Server(machine, log_packets=log_packets)
        await nursery.start(server.serve_tcp, listeners)
        served = Served(machine, server, port)
        started.append(served)
        return served

    yield start
    for served in started:
        await served.shutdown()


async def monitor_hwbp(client: RspClient) -> tuple[list[tuple[str, int, int, str]], int]:
    """`monitor hwbp` -> ([(slot, addr, len, type) held by gdb], DR7's count of enabled slots)."""
    text = await client.monitor("hwbp")
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+0x([0-9a-f]+)\s+(\d+)\s+(\S+)\s+gdb\s+\d+\s*$", text, re.MULTILINE)
    held = [(slot, int(addr, 16), int(length), kind) for slot, addr, length, kind in rows if slot != "-"]
    dr7 = re.search(r"DR7=0x([0-9a-f]+)", text)
    assert dr7, f"no DR7 in monitor hwbp output:\n{text}"
    enabled = sum(1 for n in range(4) if int(dr7[1], 16) >> (2 * n) & 0b11)   # Ln/Gn pairs
    return held, enabled


async def step_rip(client: RspClient, tid: int) -> int:
    signal, fields = stop_fields(await client.request(b"vCont;s:%x" % tid))
    assert signal == 5
    return register(fields, RIP)


async def packet_size(wire: Wire) -> int:
    features = await wire.request(b"qSupported")
    match = re.search(rb"(?:^|;)PacketSize=([0-9a-f]+)(?:;|$)", features)
    assert match, f"no PacketSize in {features!r}"
    return int(match[1], 16)


async def stack_scratch(client: RspClient | Wire, below: int = 0x200) -> int:
    """An address in the mapped stack, below the initial rsp (nothing the program has used yet)."""
    _, fields = stop_fields(await client.request(b"?"))
    return (register(fields, RSP) - below) & ~0xF


def rss_kib(field_name: str) -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, f"no {field_name} in /proc/self/status"
    return int(match[1])


# ============================================================================= framing and acks

async def test_bad_checksum_gets_minus_is_not_executed_and_the_next_packet_works(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        addr = counter.addr("counter")
        write = b"M%x,4:2a000000" % addr
        await wire.send(b"$%b#%02x" % (write, (sum(write) + 1) & 0xFF))
        assert await wire.read(1) == b"-"
        await wire.send(b"$%b#zz" % write)                  # checksum digits that are not hex
        assert await wire.read(1) == b"-"
        assert await wire.silence() == b"", "a refused packet must get no reply"
        assert await wire.request(b"m%x,4" % addr) == b"00000000", "the refused M was executed"
        # The resend gdb would make after the '-' goes through.
        await wire.send(frame(write))
        assert await wire.read_frame() == b"+" + frame(b"OK")
        await wire.send(b"+")
        assert await wire.request(b"m%x,4" % addr) == b"2a000000"


async def test_nack_makes_the_server_resend_the_same_reply_bytes(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        await wire.send(frame(b"m%x,20" % counter.entry))
        raw = await wire.read_frame()
        assert raw[:1] == b"+"
        reply = raw[1:]
        split_frame(reply)
        for _ in range(2):
            await wire.send(b"-")
            with trio.fail_after(PROMPT_SECONDS):
                assert await wire.read(len(reply)) == reply
        await wire.send(b"+")
        assert await wire.silence() == b""


@pytest.mark.parametrize("before", [[], [b"qSupported:swbreak+;hwbreak+", b"vMustReplyEmpty"]],
                         ids=["first-packet-like-lldb", "after-qSupported-like-gdb"])
async def test_no_ack_mode_ok_is_acked_then_no_more_plus(serve, counter, before):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        await wire.send(b"+")                                # gdb's unsolicited ack on connecting
        for payload in before:
            await wire.request(payload)
        await wire.send(frame(b"QStartNoAckMode"))
        assert await wire.read_frame() == b"+" + frame(b"OK")
        await wire.send(b"+")                                # the OK itself is still acknowledged
        await wire.send(frame(b"qC"))
        raw = await wire.read_frame()
        assert raw == frame(b"QC%x" % served.machine.tid), f"expected a bare frame, got {raw!r}"
        await wire.send(frame(b"m%x,4" % counter.addr("counter")))
        raw = await wire.read_frame()
        assert raw[:1] == b"$", f"an ack in no-ack mode: {raw!r}"
        assert decode_reply(split_frame(raw)) == b"00000000"
        assert await wire.silence() == b"", "nothing may follow the reply in no-ack mode"


# ============================================================================= binary data and RLE

async def test_X_with_escaped_bytes_writes_exactly_those_bytes(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        addr = await stack_scratch(wire)
        data = b"a#b$c}d*e\x03f\x00g"
        escaped = escape_binary(data)
        assert escaped.count(b"}") == 4                      # '#', '$', '}', '*' went out escaped
        assert await wire.request(b"X%x,%x:%b" % (addr, len(data), escaped)) == b"OK"
        assert await wire.request(b"m%x,%x" % (addr, len(data))) == data.hex().encode()
        # The 0x03 inside the packet was data, not a Ctrl-C: a step stops with SIGTRAP, not SIGINT.
        signal, _ = stop_fields(await wire.request(b"vCont;s"))
        assert signal == 5


async def test_a_long_read_is_answered_ahead_for_exactly_its_next_request(serve, counter, caplog):
    """gdb reads a large block as `m` packets of one length, each where the last reply ended. The
    stub makes the next reply while gdb decodes one. It must hold the same bytes as a fresh read,
    answer exactly that request, be the frame a '-' asks for again, and be thrown away by any other
    packet in between (here a write into that block)."""
    caplog.set_level(logging.INFO, logger="gdbstub.server")
    start = counter.entry                           # in .text: file-backed far beyond 5 packets
    file_bytes = partial(code_bytes, Path(counter.path))

    def answered_ahead() -> int:
        return sum("(read ahead)" in record.getMessage() for record in caplog.records)

    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter, log_packets=True)
        wire = await served.wire()

        async def read(addr: int, length: int) -> bytes:
            return bytes.fromhex((await wire.request(b"m%x,%x" % (addr, length))).decode())

        n = len(await read(start, 0x8000))               # a packet's worth: less than asked
        assert 0x1000 <= n < 0x8000
        for k in (1, 2, 3):                              # a chain, each answered ahead
            assert await read(start + k * n, 0x8000) == file_bytes(start + k * n, n)
        assert answered_ahead() == 3
        # The next address with another length: a fresh reply, of that length.
        assert await read(start + 4 * n, 0x100) == file_bytes(start + 4 * n, 0x100)
        assert answered_ahead() == 3
        # A '-' after a reply made ahead gets that same frame again.
        await read(start, 0x8000)
        await wire.send(frame(b"m%x,8000" % (start + n)))
        sent = await wire.read_frame()
        await wire.send(b"-")
        assert await wire.read_frame() == sent[1:] and sent[:1] == b"+"
        await wire.send(b"+")
        assert decode_reply(split_frame(sent[1:])) == file_bytes(start + n, n).hex().encode()
        assert answered_ahead() == 4
        # A write into the block made ahead is seen: the write threw the made reply away.
        assert await wire.request(b"M%x,1:5a" % (start + 2 * n + 5)) == b"OK"
        expected = bytearray(file_bytes(start + 2 * n, n))
        expected[5] = 0x5A
        assert await read(start + 2 * n, 0x8000) == expected
        assert answered_ahead() == 4


async def test_m_reply_is_run_length_encoded_on_the_wire(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        addr = await stack_scratch(wire)
        assert await wire.request(b"M%x,40:%b" % (addr, b"00" * 64)) == b"OK"
        payload = await wire.request_wire(b"m%x,40" % addr)
        assert b"*" in payload and len(payload) < 128, f"not run-length encoded: {payload!r}"
        assert decode_reply(payload) == b"0" * 128
        # Runs of 7 and 8 characters need counts 6 and 7, which would be '#' and '$' (GDB manual,
        # Overview): the stub must write them another way.
        data = bytes.fromhex("11111112" "00" "11111111" "22")
        assert await wire.request(b"M%x,%x:%b" % (addr, len(data), data.hex().encode())) == b"OK"
        payload = await wire.request_wire(b"m%x,%x" % (addr, len(data)))
        assert not re.search(rb"\*[#$]", payload)
        assert decode_reply(payload) == data.hex().encode()


# ============================================================================= packet size

async def test_largest_packet_is_taken_one_more_byte_is_refused_and_the_server_goes_on(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        size = await packet_size(wire)
        # A frame of exactly PacketSize bytes ('$' and '#cs' included) is within every reading of
        # the manual; a payload of PacketSize + 1 bytes is beyond every reading.
        fits = b"qFooBar:" + b"z" * (size - 4 - len(b"qFooBar:"))
        assert len(frame(fits)) == size
        assert await wire.request(fits) == b""
        too_big = b"qFooBar:" + b"z" * (size + 1 - len(b"qFooBar:"))
        await wire.send(frame(too_big))
        assert await wire.read(1) == b"-"
        assert await wire.silence() == b""
        assert await wire.request(b"qC") == b"QC%x" % served.machine.tid


async def test_payload_of_exactly_packet_size_bytes_is_accepted(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        size = await packet_size(wire)
        payload = b"qFooBar:" + b"z" * (size - len(b"qFooBar:"))
        await wire.send(frame(payload))
        assert await wire.read(1) == b"+", "refused"
        assert await wire.read_frame() == frame(b"")


async def test_multi_megabyte_flood_is_drained_without_buffering_and_the_server_answers(serve, counter):
    flood_bytes = 32 << 20
    chunk = b"a" * 65536
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        await packet_size(wire)
        try:
            Path("/proc/self/clear_refs").write_text("5")    # reset VmHWM to the current RSS
            peak_known = True
        except OSError:
            peak_known = False
        rss_before = rss_kib("VmRSS")
        started = trio.current_time()
        await wire.send(b"$")
        for _ in range(flood_bytes // len(chunk)):
            await wire.send(chunk)
        await wire.send(b"#00")
        assert await wire.read(1) == b"-"
        with trio.fail_after(PROMPT_SECONDS):
            assert await wire.request(b"qC") == b"QC%x" % served.machine.tid
        elapsed = trio.current_time() - started
        grown_kib = (rss_kib("VmHWM") if peak_known else rss_kib("VmRSS")) - rss_before
        print(f"flood of {flood_bytes >> 20} MiB drained in {elapsed:.2f} s; "
              f"peak RSS grew {grown_kib} KiB (peak measured: {peak_known})")
        assert grown_kib < (flood_bytes >> 10) // 4, f"the server buffered the flood: +{grown_kib} KiB"


# ============================================================================= replies to odd packets

@pytest.mark.parametrize("packet, expected", [
    (b"qFooBar", b""),
    (b"vMustReplyEmpty", b""),
    (b"m zz", b"E16"),
    (b"Z2,xyz", b"E16"),
])
async def test_unknown_packets_reply_empty_and_malformed_ones_E16(serve, counter, packet, expected):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        assert await wire.request(packet) == expected
        assert await wire.request(b"qC") == b"QC%x" % served.machine.tid


async def test_unmapped_memory_reads_and_writes(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        assert ERROR_REPLY.fullmatch(await client.request(b"m0,4"))
        hole = counter.data_end                 # the brk area: nothing mapped before the first brk()
        assert ERROR_REPLY.fullmatch(await client.request(b"m%x,1" % hole))
        readable = await client.request(b"m%x,4" % (hole - 4))
        assert len(readable) == 8
        assert await client.request(b"m%x,8" % (hole - 4)) == readable, "not the readable prefix"
        assert ERROR_REPLY.fullmatch(await client.request(b"M0,1:00"))
        assert ERROR_REPLY.fullmatch(await client.request(b"M%x,2:0000" % hole))
        assert ERROR_REPLY.fullmatch(await client.write_memory_binary(0, b"\x00"))
        assert ERROR_REPLY.fullmatch(await client.write_memory_binary(hole, b"\x01\x02"))
        assert await client.request(b"m%x,4" % (hole - 4)) == readable


# ============================================================================= queries

async def test_qSupported_lists_exactly_what_is_implemented(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        offer = (b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;"
                 b"exec-events+;vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386")
        features = (await client.request(offer)).split(b";")
        sizes = [f for f in features if f.startswith(b"PacketSize=")]
        assert len(sizes) == 1 and re.fullmatch(rb"PacketSize=[0-9a-f]+", sizes[0])
        assert int(sizes[0].split(b"=")[1], 16) >= 0x1000
        assert sorted(f for f in features if f not in sizes) == sorted([
            b"QStartNoAckMode+", b"qXfer:features:read+", b"qXfer:exec-file:read+",
            b"qXfer:auxv:read+", b"qXfer:threads:read+", b"qXfer:siginfo:read+", b"qXfer:libraries-svr4:read+",
            b"swbreak+", b"hwbreak+", b"vContSupported+",
        ])


async def test_thread_list_through_qxfer(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        reply = await client.request(b"qXfer:threads:read::0,1000")
        assert reply.startswith(b"l<?xml")
        threads = re.findall(rb'<thread id="([0-9a-f]+)" core="0" name="([^"]+)"/>', reply)
        name = os.path.basename(served.machine.exec_path)[:15].encode()   # a Linux comm is 15 chars
        assert threads == [(b"%x" % served.machine.tid, name)]


async def test_status_thread_and_misc_queries(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        tid = served.machine.tid
        question = await client.request(b"?")
        assert question.startswith(b"T05")
        signal, fields = stop_fields(question)
        assert signal == 5
        assert fields[b"thread"] == b"%x" % tid
        assert question.endswith(b"thread:%x;" % tid)
        assert register(fields, RIP) == counter.entry
        assert_expedited(fields)
        assert await client.request(b"vCont?") == b"vCont;c;C;s;S;t"
        assert await client.request(b"qC") == b"QC%x" % tid
        assert await client.request(b"qfThreadInfo") == b"m%x" % tid
        assert await client.request(b"qsThreadInfo") == b"l"
        assert await client.request(b"qAttached") == b"0"    # we started the program
        assert await client.request(b"qOffsets") == b"Text=0;Data=0;Bss=0"   # non-PIE: no bias
        assert await client.request(b"qSymbol::") == b"OK"
        assert await client.request(b"qTStatus") == b""


async def test_the_remaining_packets_answer_as_gdbserver_does(serve, counter):
    """p/P, Hg/Hc, T, s, S, vCont;S and vCont;t, vFile:readlink, and a fatal C: each once, as gdbserver
    answers them (gdb sends P for `set $rax`, T for `thread 1`, Hg/Hc around resumes)."""
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        tid = served.machine.tid
        value = (0x1122334455667788).to_bytes(8, "little").hex().encode()
        assert await client.request(b"P%x=%b" % (number_of("rax"), value)) == b"OK"
        assert await client.request(b"p%x" % number_of("rax")) == value
        assert ERROR_REPLY.fullmatch(await client.request(b"p999"))
        for packet in (b"Hg%x" % tid, b"Hc-1", b"Hg0", b"T%x" % tid):
            assert await client.request(packet) == b"OK", packet
        for packet in (b"Hg%x" % (tid + 1), b"T%x" % (tid + 1)):
            assert ERROR_REPLY.fullmatch(await client.request(packet)), packet
        disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        disassembler.detail = True
        pc = counter.entry
        for step in (b"s", b"S11", b"vCont;S11:%x" % tid):   # SIGCHLD is ignored: a plain step
            code = bytes.fromhex((await client.request(b"m%x,10" % pc)).decode())
            insn = next(disassembler.disasm(code, pc))
            assert not insn.group(capstone.CS_GRP_JUMP) and not insn.group(capstone.CS_GRP_CALL)
            signal, fields = stop_fields(await client.request(step))
            assert (signal, register(fields, RIP)) == (5, pc + insn.size), step
            pc += insn.size
        assert await client.request(b"vCont;t") == b"OK"       # nothing runs: stopping is a no-op
        link = b"/proc/%d/exe" % served.machine.pid
        assert await client.request(b"vFile:readlink:%b" % link.hex().encode()) == \
            b"F%x;%b" % (len(counter.path), counter.path.encode())
        assert await client.request(b"C05") == b"X05"          # SIGTRAP's default action kills it


# ============================================================================= qXfer

async def test_target_xml_read_in_small_chunks_reassembles(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        chunk, offset, parts, markers = 0x40, 0, [], []
        while True:
            reply = await client.request(b"qXfer:features:read:target.xml:%x,%x" % (offset, chunk))
            assert reply[:1] in (b"m", b"l") and len(reply) - 1 <= chunk, reply[:40]
            markers.append(reply[:1])
            parts.append(reply[1:])
            offset += len(reply) - 1
            if reply[:1] == b"l":
                break
            assert len(reply) > 1, "an 'm' reply must carry data"
        assert len(markers) > 2 and set(markers[:-1]) == {b"m"}
        document = b"".join(parts)
        root = ET.fromstring(document)
        assert root.tag == "target"
        assert root.findtext("architecture") == "i386:x86-64"
        regs = {reg.get("name"): int(reg.get("regnum")) for reg in root.iter("reg")}
        # The expedited registers of a stop reply are numbered as the description numbers them.
        assert (regs["rbp"], regs["rsp"], regs["rip"]) == (RBP, RSP, RIP)
        assert ERROR_REPLY.fullmatch(await client.request(b"qXfer:features:read:nosuch.xml:0,40"))


async def test_auxv_exec_file_and_an_empty_library_list(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        reply = await client.request(b"qXfer:auxv:read::0,1000")
        assert reply[:1] == b"l"
        auxv = reply[1:]
        assert len(auxv) % 16 == 0
        pairs = list(struct.iter_unpack("<QQ", auxv))
        assert pairs[-1] == (AT_NULL, 0)
        entries = dict(pairs)
        assert entries[AT_ENTRY] == counter.entry
        assert entries[AT_PAGESZ] == 4096
        reply = await client.request(b"qXfer:exec-file:read::0,1000")
        assert reply[:1] == b"l"
        assert os.path.realpath(reply[1:].decode()) == os.path.realpath(counter.path)
        reply = await client.request(b"qXfer:libraries-svr4:read::0,1000")
        assert reply[:1] == b"l"
        root = ET.fromstring(reply[1:])
        assert (root.tag, root.attrib, list(root)) == ("library-list-svr4", {"version": "1.0"}, [])


# ============================================================================= host I/O

async def test_vfile_reads_the_program_and_nothing_else(serve, counter, tmp_path):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        program = Path(counter.path)
        contents = program.read_bytes()
        assert await client.request(b"vFile:setfs:0") == b"F0"
        reply = await client.request(b"vFile:open:%b,0,0" % program_hex(program))
        fd = int(re.fullmatch(rb"F([0-9a-f]+)", reply)[1], 16)
        assert await client.request(b"vFile:pread:%x,100,0" % fd) == b"F100;" + contents[:0x100]
        assert await client.request(b"vFile:pread:%x,40,1000" % fd) == b"F40;" + contents[0x1000:0x1040]
        # gdb asks for a whole PacketSize at every miss of its read cache; it gets the rest of the
        # ELF part the read starts in, and at least 1 KiB: here the 64-byte header, then .symtab.
        assert await client.request(b"vFile:pread:%x,10000,0" % fd) == b"F400;" + contents[:0x400]
        with open(program, "rb") as f:
            elf = ELFFile(f)
            symtab = elf.get_section_by_name(".symtab")
            start, size = symtab["sh_offset"], symtab["sh_size"]
            text_offset = elf.get_section_by_name(".text")["sh_offset"]
        assert 0x400 < size < 0xE000          # more than the least, and fits one reply escaped
        assert await client.request(b"vFile:pread:%x,10000,%x" % (fd, start)) == \
            b"F%x;" % size + contents[start : start + size]
        assert await client.request(b"vFile:pread:%x,10000,%x" % (fd, start + 0x10)) == \
            b"F%x;" % (size - 0x10) + contents[start + 0x10 : start + size]
        # A part larger than a packet (.text) comes a packet at a time, its escapes included.
        reply = await client.request(b"vFile:pread:%x,ffffffff,%x" % (fd, text_offset))
        header, _, data = reply.partition(b";")
        assert data == contents[text_offset : text_offset + int(header[1:], 16)]
        escaped = len(reply) + sum(data.count(special) for special in b"#$}*")
        advertised = re.search(rb"PacketSize=([0-9a-f]+)", await client.request(b"qSupported"))[1]
        assert 0x8000 < len(data) and escaped <= int(advertised, 16)
        reply = await client.request(b"vFile:fstat:%x" % fd)
        assert reply.startswith(b"F40;") and len(reply) == 4 + FILEIO_STAT_SIZE
        # gdb's struct stat: 32-bit dev, ino, mode, nlink, uid, gid, rdev; 64-bit size, ...; big-endian.
        st_mode = struct.unpack_from(">I", reply, 4 + 8)[0]
        st_size = struct.unpack_from(">Q", reply, 4 + 28)[0]
        assert st_mode & 0o170000 == 0o100000
        assert st_size == len(contents)
        assert await client.request(b"vFile:close:%x" % fd) == b"F0"
        assert await client.request(b"vFile:open:%b,0,0" % program_hex(Path("/etc/passwd"))) == \
            b"F-1,%x" % FILEIO_ENOENT
        created = tmp_path / "created-by-gdb"
        flags = FILEIO_O_WRONLY | FILEIO_O_CREAT | FILEIO_O_TRUNC
        assert await client.request(b"vFile:open:%b,%x,1a4" % (program_hex(created), flags)) == \
            b"F-1,%x" % FILEIO_EACCES
        assert not created.exists()
        assert await client.request(b"vFile:open:%b,%x,0" % (program_hex(program), FILEIO_O_WRONLY)) == \
            b"F-1,%x" % FILEIO_EACCES
        assert program.read_bytes() == contents


def program_hex(path: Path) -> bytes:
    return os.fsencode(path).hex().encode()


# ============================================================================= running, Ctrl-C, stepping

async def test_ctrl_c_gives_exactly_one_T02_and_a_queued_one_stops_the_next_resume_at_once(serve, spin):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(spin)
        wire = await served.wire()
        tid = served.machine.tid
        spins = spin.addr("spins")
        # Run to main first, so that the interrupt lands in its endless loop.
        assert await wire.request(b"Z0,%x,1" % spin.addr("main")) == b"OK"
        signal, fields = stop_fields(await wire.request(b"vCont;c:%x" % tid))
        assert signal == 5 and register(fields, RIP) == spin.addr("main")
        assert await wire.request(b"z0,%x,1" % spin.addr("main")) == b"OK"
        await wire.send(frame(b"vCont;c:%x" % tid))
        assert await wire.read(1) == b"+"
        await trio.sleep(0.1)
        assert await wire.silence(0.05) == b"", "a reply while the program runs"
        await wire.send(b"\x03")
        with trio.fail_after(PROMPT_SECONDS):
            raw = await wire.read_frame()
        await wire.send(b"+")
        signal, fields = stop_fields(decode_reply(split_frame(raw)))
        assert signal == 2 and fields[b"thread"] == b"%x" % tid
        assert_expedited(fields)
        assert spin.contains("main", register(fields, RIP))
        assert await wire.silence() == b"", "a second reply to one Ctrl-C"
        stopped_at = register(fields, RIP)
        count = await wire.request(b"m%x,8" % spins)

        # Stopped: the interrupt is queued, not answered ...
        await wire.send(b"\x03")
        assert await wire.silence() == b""
        # ... and the next resume stops before running anything.
        await wire.send(frame(b"vCont;c:%x" % tid))
        with trio.fail_after(PROMPT_SECONDS):
            raw = await wire.read_frame()
        await wire.send(b"+")
        assert raw[:1] == b"+"
        signal, fields = stop_fields(decode_reply(split_frame(raw[1:])))
        assert signal == 2
        assert register(fields, RIP) == stopped_at
        assert await wire.request(b"m%x,8" % spins) == count
        assert await wire.silence() == b""


async def test_vcont_step_advances_pc_by_one_instruction(serve, counter):
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    disassembler.detail = True
    branches = {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT}
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        tid = served.machine.tid
        _, fields = stop_fields(await client.request(b"?"))
        pc = register(fields, RIP)
        assert pc == counter.entry
        checked = 0
        for _ in range(6):
            code = bytes.fromhex((await client.request(b"m%x,10" % pc)).decode())
            insn = next(disassembler.disasm(code, pc))
            signal, fields = stop_fields(await client.request(b"vCont;s:%x" % tid))
            assert signal == 5 and fields[b"thread"] == b"%x" % tid
            new_pc = register(fields, RIP)
            if not branches & set(insn.groups):
                assert new_pc == pc + insn.size, f"{insn.mnemonic} {insn.op_str} at {pc:#x}"
                checked += 1
            pc = new_pc
        assert checked >= 2


# ============================================================================= Z / z on the x86 debug registers

async def test_Z_types_reply_as_gdbserver_does_on_x86_64(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        base = counter.addr("counter") & ~0x1F
        assert await client.request(b"Z2,%x,8" % base) == b"OK"
        assert await client.request(b"Z3,%x,4" % (base + 8)) == b""      # x86 has no read-only watch
        assert await client.request(b"Z4,%x,4" % (base + 8)) == b"OK"
        assert await client.request(b"Z9,%x,4" % base) == b""
        assert await client.request(b"z9,%x,4" % base) == b""
        held, enabled = await monitor_hwbp(client)
        assert sorted((addr, length, kind) for _, addr, length, kind in held) == \
            [(base, 8, "W"), (base + 8, 4, "RW")]
        assert enabled == 2
        assert await client.request(b"z2,%x,8" % base) == b"OK"
        assert await client.request(b"z4,%x,4" % (base + 8)) == b"OK"
        assert await monitor_hwbp(client) == ([], 0)


# (offset from a 32-byte aligned base, length) -> the aligned pieces gdbserver's x86-dregs.c makes,
# or None where more than 4 are needed (reference notes §2.1/§2.2).
SPLITS = [
    (0, 0x10, [(0, 8), (8, 8)]),
    (0, 0x20, [(0, 8), (8, 8), (16, 8), (24, 8)]),
    (1, 0x3, [(1, 1), (2, 2)]),
    (0, 0x21, None),
    (1, 0xC, None),        # 1@+1, 2@+2, 4@+4, 4@+8, 1@+12: five
]


@pytest.mark.parametrize("offset, length, pieces", SPLITS,
                         ids=[f"{length}@+{offset}" for offset, length, _ in SPLITS])
async def test_Z2_splits_regions_into_at_most_four_slots(serve, counter, offset, length, pieces):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        base = counter.addr("counter") & ~0x1F
        reply = await client.request(b"Z2,%x,%x" % (base + offset, length))
        if pieces is None:
            assert ERROR_REPLY.fullmatch(reply), reply
            assert await monitor_hwbp(client) == ([], 0), "a refused Z left slots taken"
            assert await client.request(b"Z2,%x,20" % base) == b"OK", "not all four slots are free"
            return
        assert reply == b"OK"
        held, enabled = await monitor_hwbp(client)
        assert sorted((addr - base, size) for _, addr, size, _ in held) == pieces
        assert enabled == len(pieces)
        assert await client.request(b"z2,%x,%x" % (base + offset, length)) == b"OK"
        assert await monitor_hwbp(client) == ([], 0)


async def test_duplicate_Z2_is_one_watch_and_one_z2_removes_it(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        addr = counter.addr("counter")
        assert await client.request(b"Z2,%x,4" % addr) == b"OK"
        assert await client.request(b"Z2,%x,4" % addr) == b"OK"
        held, enabled = await monitor_hwbp(client)
        assert len(held) == 1 and enabled == 1
        assert await client.request(b"z2,%x,4" % addr) == b"OK"
        assert await monitor_hwbp(client) == ([], 0)


async def test_Z1_takes_the_last_free_slot_and_a_fifth_request_is_refused(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        base = counter.addr("counter") & ~0x1F
        for i in range(3):
            assert await client.request(b"Z4,%x,8" % (base + 8 * i)) == b"OK"
        assert await client.request(b"Z1,%x,1" % counter.addr("bump")) == b"OK"
        held, enabled = await monitor_hwbp(client)
        assert sorted(kind for *_, kind in held) == ["RW", "RW", "RW", "X"] and enabled == 4
        assert ERROR_REPLY.fullmatch(await client.request(b"Z1,%x,1" % counter.addr("main")))
        assert ERROR_REPLY.fullmatch(await client.request(b"Z2,%x,8" % (base + 24)))
        assert len((await monitor_hwbp(client))[0]) == 4


async def test_virt_arch_takes_Z3_and_reports_rwatch(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter, debug_arch="virt")
        client = await served.connect()
        addr = counter.addr("counter")
        assert await client.request(b"Z3,%x,4" % addr) == b"OK"
        reply = await client.request(b"vCont;c")
        assert reply.startswith(b"T05rwatch:"), reply
        _, fields = stop_fields(reply)
        assert addr <= int(fields[b"rwatch"], 16) < addr + 4
        assert counter.contains("bump", register(fields, RIP))
        assert await client.request(b"m%x,4" % addr) == b"00000000"   # read, not yet written


# ============================================================================= stop replies

async def test_write_watch_stops_after_the_store_with_watch_address(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        tid = served.machine.tid
        addr = counter.addr("counter")
        assert await client.request(b"Z2,%x,4" % addr) == b"OK"
        reply = await client.request(b"vCont;c:%x" % tid)
        assert reply.startswith(b"T05watch:"), reply
        signal, fields = stop_fields(reply)
        assert addr <= int(fields[b"watch"], 16) < addr + 4
        assert fields[b"thread"] == b"%x" % tid
        assert_expedited(fields)
        assert counter.contains("bump", register(fields, RIP))       # x86 traps after the store
        assert await client.request(b"m%x,4" % addr) == b"01000000"
        reply = await client.request(b"vCont;c:%x" % tid)
        assert stop_fields(reply)[1][b"watch"] == fields[b"watch"]
        assert await client.request(b"m%x,4" % addr) == b"02000000"


@pytest.mark.parametrize("ztype, word", [(1, b"hwbreak"), (0, b"swbreak")])
@pytest.mark.parametrize("offered", [True, False], ids=["offered", "not-offered"])
async def test_breakpoint_stop_reason_only_when_gdb_offered_it(serve, counter, ztype, word, offered):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        await client.request(b"qSupported:swbreak+;hwbreak+" if offered else b"qSupported")
        bump = counter.addr("bump")
        assert await client.request(b"Z%d,%x,1" % (ztype, bump)) == b"OK"
        reply = await client.request(b"vCont;c")
        signal, fields = stop_fields(reply)
        assert signal == 5
        assert register(fields, RIP) == bump                 # the stub reports the breakpoint address
        if offered:
            assert reply.startswith(b"T05%b:;" % word), reply
        else:
            assert b"swbreak" not in reply and b"hwbreak" not in reply, reply


# ============================================================================= clients coming and going

async def test_a_second_client_is_refused_and_the_first_keeps_working(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        first = await served.connect()
        assert await first.request(b"qC") == b"QC%x" % served.machine.tid
        second = await served.wire()
        await second.send(frame(b"qSupported"))
        received = await second.until_eof()
        assert received[:1] == b"+"
        payload = decode_reply(split_frame(received[1:]))
        assert payload.startswith(b"E"), payload
        assert await first.request(b"qC") == b"QC%x" % served.machine.tid
        assert await first.request(b"m%x,4" % counter.addr("counter")) == b"00000000"


async def test_disconnect_while_running_releases_every_slot(serve, spin):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(spin)
        first = await served.connect()
        never_written = spin.addr("main") & ~0x7
        assert await first.request(b"Z2,%x,8" % never_written) == b"OK"
        assert await first.request(b"Z4,%x,10" % (never_written + 0x10)) == b"OK"
        assert await first.request(b"Z1,%x,1" % spin.addr("exit")) == b"OK"
        assert len((await monitor_hwbp(first))[0]) == 4
        await first.send_packet(b"vCont;c")
        await trio.sleep(0.1)
        await first.aclose()
        with trio.fail_after(PROMPT_SECONDS):
            await served.wait_idle()                          # the server stopped the CPU and left
        second = await served.connect()
        assert await monitor_hwbp(second) == ([], 0)
        # The program is still there and runs for the new client.
        await second.send_packet(b"vCont;c")
        await trio.sleep(0.05)
        await second.interrupt()
        assert stop_fields(await second.wait_reply())[0] == 2


async def test_D_replies_OK_and_closes(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        await wire.request(b"qSupported")
        await wire.send(frame(b"D"))
        assert await wire.until_eof() == b"+" + frame(b"OK")


async def test_k_closes_and_the_next_client_gets_a_fresh_program(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        addr = counter.addr("counter")
        assert await wire.request(b"Z2,%x,4" % addr) == b"OK"
        _, fields = stop_fields(await wire.request(b"vCont;c"))
        assert register(fields, RIP) != counter.entry
        assert await wire.request(b"m%x,4" % addr) == b"01000000"
        await wire.send(frame(b"k"))
        received = await wire.until_eof()
        assert received[:1] == b"+", received
        with trio.fail_after(PROMPT_SECONDS):
            await served.wait_idle()
        client = await served.connect()
        _, fields = stop_fields(await client.request(b"?"))
        assert register(fields, RIP) == counter.entry
        assert await client.request(b"m%x,4" % addr) == b"00000000"
        assert await monitor_hwbp(client) == ([], 0)


async def test_a_G_that_changes_a_segment_selector_is_refused_whole(serve, counter):
    # cs is 0x33, as under Linux; the CPU cannot take another selector (it has no GDT).
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        before = await wire.request(b"g")
        cs = 2 * sum(reg.size for reg in REGISTERS[:number_of("cs")])     # hex digits before cs
        assert before[cs:cs + 8] == b"33000000"
        changed = b"ff" + before[2:cs] + b"23000000" + before[cs + 8:]      # rax and cs
        assert await wire.request(b"G" + changed) == b"E16"
        assert await wire.request(b"g") == before                         # rax untouched too
        assert await wire.request(b"G" + before) == b"OK"                 # unchanged: a no-op


async def test_vKill_answers_OK_then_closes_and_the_program_starts_afresh(serve, counter):
    # gdb tries vKill;pid before k (gdbserver answers it), naming the process 42000 (0xa410)
    # when the stub does not offer multiprocess+.
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        wire = await served.wire()
        assert await wire.request(b"vKill;zz") == b"E16"                 # malformed: not killed
        assert (await wire.request(b"vCont;s")).startswith(b"T05")
        await wire.send(frame(b"vKill;a410"))
        assert await wire.until_eof() == b"+" + frame(b"OK")
        with trio.fail_after(PROMPT_SECONDS):
            await served.wait_idle()
        _, fields = stop_fields(await (await served.connect()).request(b"?"))
        assert register(fields, RIP) == counter.entry


async def test_ctrl_c_in_the_same_read_as_the_continue_stops_the_run(serve, spin):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(spin)
        wire = await served.wire()
        assert await wire.request(b"QStartNoAckMode") == b"OK"
        await wire.send(frame(b"c") + b"\x03")                 # one write: the resume and its Ctrl-C
        reply = await wire.read_frame()
        assert reply.startswith(b"$T02"), reply


async def test_a_second_client_that_misbehaves_does_not_take_the_server_down(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        first = await served.connect()
        assert await first.request(b"qC") == b"QC%x" % served.machine.tid
        second = await trio.open_tcp_stream("127.0.0.1", served.port)
        await second.send_all(b"$}#7d")                         # undecodable: '}' escapes nothing
        await trio.sleep(0.2)
        await second.aclose()
        assert await first.request(b"qC") == b"QC%x" % served.machine.tid


async def test_numbers_are_strict_hex_of_at_most_64_bits(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        for bad in (b"Z0,-1,1", b"Z0,1ffffffffffffffff0,1", b"m 10,4", b"m0x10,4", b"m1_0,4",
                    b"qXfer:features:read:target.xml:-10,10"):
            assert await client.request(bad) == b"E16", bad
        assert await client.request(b"qC") == b"QC%x" % served.machine.tid     # still connected


async def test_hex_data_is_strict_pairs_of_digits(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        client = await served.connect()
        scratch = await stack_scratch(client)
        before = await client.request(b"m%x,2" % scratch)
        for bad in (b"M%x,2:00 11" % scratch, b"M%x,2: 0011" % scratch, b"M%x,2:0g11" % scratch,
                    b"M%x,2:001" % scratch):
            assert await client.request(bad) == b"E16", bad
        assert await client.request(b"m%x,2" % scratch) == before                # nothing written


async def test_a_queued_ctrl_c_does_not_outlive_its_client(serve, counter):
    with trio.fail_after(TEST_SECONDS):
        served = await serve(counter)
        first = await served.connect()
        await first.interrupt()                                   # queued: the program is stopped
        await first.aclose()
        await served.wait_idle()
        second = await served.connect()
        reply = await second.request(b"vCont;c")
        assert reply.startswith(b"W00"), reply                    # ran to its end, no stale SIGINT
