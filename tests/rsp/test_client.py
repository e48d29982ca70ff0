"""RspClient against real peers: a tiny trio stub built on Codec (in memory and over TCP), and raw bytes.

No mocks: the stub below is a genuine RSP server for a handful of packets, driven by the same
sans-IO Codec the project's server uses, so every byte the client writes is parsed for real.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from gdbstub.rsp._wire import checksum, from_hex, hex_int, to_hex
from gdbstub.rsp.client import RspClient
from gdbstub.rsp.codec import EOF, NEED_DATA, Ack, Codec, Event, Interrupt, Packet
from gdbstub.rsp.errors import RemoteProtocolError, TargetError, Unsupported

SUPPORTED = b"PacketSize=4000;QStartNoAckMode+"
MONITOR_OUTPUT = {"help": [b"hello\n", b"world\n"]}


def frame(payload: bytes) -> bytes:
    return b"$%b#%02x" % (payload, checksum(payload))


class TinyStub:
    """Just enough of a stub: qSupported, QStartNoAckMode, ?, m, X, qRcmd, vCont;c and Ctrl-C."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.codec = Codec("server")
        self.memory = bytearray(0x40)
        self.events: list[Event] = []
        self.sent = bytearray()          # every byte the stub wrote, to inspect the wire form
        self.running = False

    async def serve(self) -> None:
        async with self.stream:
            while True:
                self.codec.receive_data(await self.stream.receive_some(4096))
                while (event := self.codec.next_event()) is not NEED_DATA:
                    if event is EOF:
                        return
                    self.events.append(event)
                    out = self.codec.data_to_send() + self.answer(event)
                    self.sent += out
                    await self.stream.send_all(out)

    def answer(self, event: Event) -> bytes:
        if isinstance(event, Interrupt):
            if not self.running:
                return b""
            self.running = False
            return self.codec.send(b"T02thread:01;")
        if not isinstance(event, Packet):
            return b""
        name, _, args = event.payload.partition(b",")
        if event.payload == b"QStartNoAckMode":
            ok = self.codec.send(b"OK")
            self.codec.start_no_ack()
            return ok
        if event.payload.startswith(b"qSupported"):
            return self.codec.send(SUPPORTED)
        if event.payload == b"?":
            return self.codec.send(b"S05")
        if event.payload == b"vCont;c":
            self.running = True
            return b""
        if name.startswith(b"m"):
            addr, length = hex_int(name[1:]), hex_int(args)
            return self.codec.send(to_hex(self.memory[addr : addr + length]).encode())
        if name.startswith(b"X"):
            length_text, _, data = args.partition(b":")
            addr, length = hex_int(name[1:]), hex_int(length_text)
            assert len(data) == length
            self.memory[addr : addr + length] = data
            return self.codec.send(b"OK")
        if name == b"qRcmd":
            return self.monitor(from_hex(args).decode())
        return self.codec.send(b"")

    def monitor(self, command: str) -> bytes:
        if command == "count":                       # output in the final reply itself
            return self.codec.send(to_hex(b"3\n").encode())
        if command == "fail":
            return self.codec.send(b"E05")
        if command not in MONITOR_OUTPUT:
            return self.codec.send(b"")
        lines = [self.codec.send(b"O" + to_hex(line).encode()) for line in MONITOR_OUTPUT[command]]
        return b"".join(lines) + self.codec.send(b"OK")


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[RspClient, TinyStub]]:
    client_stream, stub_stream = trio.testing.memory_stream_pair()
    stub = TinyStub(stub_stream)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stub.serve)
            async with RspClient(client_stream) as client:
                yield client, stub


def collect_in_background(nursery: trio.Nursery, receive: Callable[[], Awaitable[bytes]]) -> list[bytes]:
    """Start `receive()` in `nursery`; what it returns lands in the list handed back."""
    replies: list[bytes] = []

    async def run() -> None:
        replies.append(await receive())

    nursery.start_soon(run)
    return replies


async def receive_exactly(client: RspClient, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await client.receive_raw(size - len(data))
        assert chunk, f"EOF after {bytes(data)!r}"
        data += chunk
    return bytes(data)


# --- requests, acks and no-ack -------------------------------------------------------------------


async def test_request_returns_the_reply_and_acks_it() -> None:
    async with connected() as (client, stub):
        assert await client.request(b"qSupported:swbreak+;hwbreak+") == SUPPORTED
        assert await client.request(b"?") == b"S05"
    # The stub saw each packet, then the client's '+' for each reply.
    assert stub.events == [Packet(b"qSupported:swbreak+;hwbreak+"), Ack(), Packet(b"?"), Ack()]


async def test_no_ack_stops_acknowledgements_on_both_sides() -> None:
    async with connected() as (client, stub):
        await client.no_ack()
        assert client.codec.no_ack
        assert await client.request(b"?") == b"S05"
        assert await client.request(b"?") == b"S05"
    # Only the OK of QStartNoAckMode is acked; the stub stopped sending '+' too.
    assert stub.events == [Packet(b"QStartNoAckMode"), Ack(), Packet(b"?"), Packet(b"?")]
    assert stub.sent == b"+" + frame(b"OK") + frame(b"S05") * 2


async def test_no_ack_refused_by_a_stub_without_it() -> None:
    client_stream, peer = trio.testing.memory_stream_pair()
    async with RspClient(client_stream) as client:
        with trio.fail_after(5):
            await peer.send_all(b"+" + frame(b""))
            with pytest.raises(Unsupported):
                await client.no_ack()
    assert not client.codec.no_ack


async def test_retransmits_when_the_stub_answers_nack() -> None:
    client_stream, peer = trio.testing.memory_stream_pair()
    async with RspClient(client_stream) as client, trio.open_nursery() as nursery:
        with trio.fail_after(5):
            replies = collect_in_background(nursery, partial(client.request, b"qC"))
            assert await peer.receive_some(100) == frame(b"qC")
            await peer.send_all(b"-")                            # "say that again"
            assert await peer.receive_some(100) == frame(b"qC")
            await peer.send_all(b"+" + frame(b"QC1"))
            assert await peer.receive_some(100) == b"+"          # the client acks the reply
    assert replies == [b"QC1"]


async def test_reply_with_bad_checksum_is_nacked_and_the_resend_accepted() -> None:
    client_stream, peer = trio.testing.memory_stream_pair()
    async with RspClient(client_stream) as client:
        with trio.fail_after(5):
            await peer.send_all(b"$S05#00")
            async with trio.open_nursery() as nursery:
                replies = collect_in_background(nursery, client.wait_reply)
                assert await peer.receive_some(100) == b"-"
                await peer.send_all(frame(b"S05"))
            assert replies == [b"S05"]


async def test_closed_connection_while_waiting_raises() -> None:
    client_stream, peer = trio.testing.memory_stream_pair()
    async with RspClient(client_stream) as client:
        with trio.fail_after(5):
            await peer.send_all(b"+$S0")
            await peer.send_stream.aclose()   # half-close: the reply stops mid-packet
            with pytest.raises(RemoteProtocolError):
                await client.request(b"?")


# --- memory --------------------------------------------------------------------------------------


async def test_memory_read_reply_is_run_length_decoded() -> None:
    async with connected() as (client, stub):
        assert await client.request(b"m0,40") == b"00" * 0x40
    reply_frame = stub.sent[stub.sent.index(b"$") :]
    assert len(reply_frame) < 2 * 0x40      # it really was run-length encoded on the wire


async def test_binary_write_escapes_every_special_byte() -> None:
    data = b"#$}*\x03\x00\xff+-"
    async with connected() as (client, stub):
        assert await client.write_memory_binary(0x10, data) == b"OK"
        assert await client.request(b"m10,%x" % len(data)) == to_hex(data).encode()
    assert stub.memory[0x10 : 0x10 + len(data)] == data


# --- monitor -------------------------------------------------------------------------------------


async def test_monitor_collects_console_output_packets() -> None:
    async with connected() as (client, _):
        assert await client.monitor("help") == "hello\nworld\n"
        assert await client.monitor("count") == "3\n"
        with pytest.raises(TargetError) as failed:
            await client.monitor("fail")
        assert failed.value.errno == errno.EIO   # E05
        with pytest.raises(Unsupported):
            await client.monitor("no-such-command")


# --- interrupts and raw bytes --------------------------------------------------------------------


async def test_interrupt_while_running_gives_one_stop_reply() -> None:
    async with connected() as (client, stub):
        await client.send_packet(b"vCont;c")
        await client.interrupt()
        assert await client.wait_reply() == b"T02thread:01;"
    assert Interrupt() in stub.events


async def test_interrupt_from_another_task_during_wait_reply() -> None:
    async with connected() as (client, _):
        await client.send_packet(b"vCont;c")
        async with trio.open_nursery() as nursery:
            replies = collect_in_background(nursery, client.wait_reply)
            await trio.testing.wait_all_tasks_blocked()
            await client.interrupt()
        assert replies == [b"T02thread:01;"]


async def test_raw_bytes_reach_the_stub_unframed() -> None:
    async with connected() as (client, _):
        await client.send_raw(b"$m0,1#00")                      # wrong checksum (it is fa)
        assert await receive_exactly(client, 1) == b"-"
        await client.send_raw(frame(b"m0,1"))
        assert await receive_exactly(client, len(b"+" + frame(b"00"))) == b"+" + frame(b"00")


# --- over a real socket --------------------------------------------------------------------------


async def test_connect_over_localhost_tcp() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await TinyStub(stream).serve()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with await RspClient.connect("127.0.0.1", port) as client:
                assert await client.request(b"qSupported") == SUPPORTED
                await client.no_ack()
                assert await client.write_memory_binary(0, b"$#") == b"OK"
                assert await client.request(b"m0,2") == b"2423"
            nursery.cancel_scope.cancel()
