"""A small trio RSP client on top of Codec: for this project's tests and for users' scripted RSP tests.

    async with await RspClient.connect("127.0.0.1", port) as client:
        features = await client.request(b"qSupported:swbreak+;hwbreak+")

Timeouts belong to the caller (trio.fail_after / move_on_after), so no method takes a timeout.
One task at a time may wait for replies; interrupt() may be called from another task meanwhile.
"""

from __future__ import annotations

import re

import trio

from ._wire import from_hex, to_hex
from .codec import EOF, NEED_DATA, Codec, Packet
from .errors import RemoteProtocolError, TargetError, Unsupported

__all__ = ["DEFAULT_CLIENT_MAX_PACKET_SIZE", "RspClient"]

# The client bounds what it accepts from the stub, not what it sends; a generous limit lets tests
# read large `m` replies while memory stays bounded.
DEFAULT_CLIENT_MAX_PACKET_SIZE = 0x100000
_RECEIVE_CHUNK = 0x10000
_ERROR_REPLY = re.compile(rb"E[0-9a-fA-F]{2}")


class RspClient(trio.abc.AsyncResource):
    """Speaks RSP over any trio Stream: frames requests, acks replies, retransmits on '-'."""

    def __init__(
        self, stream: trio.abc.Stream, *, max_packet_size: int = DEFAULT_CLIENT_MAX_PACKET_SIZE
    ) -> None:
        self.stream = stream
        self.codec = Codec("client", max_packet_size)
        # interrupt() may run while another task waits for a reply and writes its '+' acks:
        # trio streams refuse two concurrent send_all() calls, so writes take turns.
        self._send_lock = trio.Lock()

    @classmethod
    async def connect(
        cls, host: str, port: int, *, max_packet_size: int = DEFAULT_CLIENT_MAX_PACKET_SIZE
    ) -> RspClient:
        """Open a TCP connection to a stub (trio sets TCP_NODELAY) and wrap it."""
        stream = await trio.open_tcp_stream(host, port)
        return cls(stream, max_packet_size=max_packet_size)

    async def aclose(self) -> None:
        await self.stream.aclose()

    # -- packets

    async def send_packet(self, payload: bytes, *, binary: bool = False) -> None:
        """Frame and send one packet without waiting for its reply (e.g. a `vCont;c`)."""
        await self._write(self.codec.send(payload, binary=binary))

    async def request(self, payload: bytes, *, binary: bool = False) -> bytes:
        """Send one packet and return the payload of the next packet the stub sends back."""
        await self.send_packet(payload, binary=binary)
        return await self.wait_reply()

    async def wait_reply(self) -> bytes:
        """The next packet's payload (e.g. the stop reply after a continue or an interrupt).

        Acks it while in ack mode and answers a '-' by resending our last packet. A closed
        connection raises RemoteProtocolError.
        """
        while True:
            event = self.codec.next_event()
            pending = self.codec.data_to_send()
            if pending:
                await self._write(pending)
            if event is NEED_DATA:
                self.codec.receive_data(await self.stream.receive_some(_RECEIVE_CHUNK))
            elif event is EOF:
                raise RemoteProtocolError("the stub closed the connection while a reply was due")
            elif isinstance(event, Packet):
                return event.payload
            # Ack, Nack, BadChecksum and Oversized need no action beyond the codec's own.

    # -- raw bytes, for protocol tests

    async def send_raw(self, data: bytes) -> None:
        """Write bytes exactly as given (a frame with a bad checksum, a stray '-', garbage...)."""
        await self._write(data)

    async def receive_raw(self, max_bytes: int = _RECEIVE_CHUNK) -> bytes:
        """Up to `max_bytes` bytes straight from the stream, bypassing the codec (b"" at EOF).

        Bytes already read into the codec by wait_reply() are not seen again here.
        """
        return await self.stream.receive_some(max_bytes)

    async def interrupt(self) -> None:
        """Send Ctrl-C: a bare 0x03 outside any packet."""
        await self._write(b"\x03")

    # -- conveniences built from requests

    async def no_ack(self) -> None:
        """Negotiate QStartNoAckMode; afterwards neither side sends '+'/'-'.

        Raises Unsupported for an empty reply, RemoteProtocolError for anything else but OK.
        """
        reply = await self.request(b"QStartNoAckMode")
        if reply == b"":
            raise Unsupported("the stub does not offer QStartNoAckMode")
        if reply != b"OK":
            raise RemoteProtocolError(f"QStartNoAckMode answered {reply!r}")
        self.codec.start_no_ack()   # our '+' for the OK was already written by wait_reply()

    async def monitor(self, command: str) -> str:
        """Run a `monitor` command (qRcmd) and return its console output.

        Collects the hex text of the `O` packets until the final reply: OK, or hex output.
        An `Exx` reply raises TargetError, an empty one Unsupported.
        """
        output = bytearray()
        await self.send_packet(b"qRcmd," + to_hex(command.encode()).encode())
        while True:
            reply = await self.wait_reply()
            if reply == b"OK":
                break
            if reply == b"":
                raise Unsupported("the stub does not implement qRcmd")
            if _ERROR_REPLY.fullmatch(reply):
                raise TargetError(int(reply[1:], 16), f"monitor {command!r} failed")
            if reply.startswith(b"O"):
                output += _hex_payload(reply[1:], reply)
                continue
            output += _hex_payload(reply, reply)   # the final reply may carry output itself
            break
        return output.decode("utf-8", errors="replace")

    async def write_memory_binary(self, addr: int, data: bytes) -> bytes:
        """Write memory with the binary `X addr,length:data` packet; returns the reply (OK/Exx/empty)."""
        return await self.request(b"X%x,%x:%b" % (addr, len(data), data), binary=True)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)


def _hex_payload(text: bytes, reply: bytes) -> bytes:
    try:
        return from_hex(text)
    except ValueError as exc:
        raise RemoteProtocolError(f"qRcmd output is not hex: {reply!r}") from exc
