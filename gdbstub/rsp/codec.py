"""Sans-IO framing of the GDB Remote Serial Protocol: bytes in, events out, bytes to send.

Modelled on h11: `receive_data()` feeds bytes from the transport, `next_event()` returns one event
(or NEED_DATA / EOF), `data_to_send()` drains the acknowledgements and retransmissions the codec
queued, and `send()` frames one outgoing packet (or `frame()` now and `send_frame()` later, for a
reply made ahead). There are no sockets, clocks or threads here.

Contract for the caller: after each `receive_data()`, call `next_event()` until it returns NEED_DATA
(this is what keeps memory bounded: an oversized packet is discarded as it is parsed), and write out
`data_to_send()` before any frame that `send()` or `send_frame()` returns afterwards, so that a '+'
precedes the reply.

Per-connection state only (no-ack flag, partial packet, last frame sent): make one Codec per
connection. Nothing is tied to qSupported, because LLDB sends QStartNoAckMode before it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ._wire import checksum, escape, hex_int, rle_decode, rle_encode, unescape
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "EOF",
    "FRAME_OVERHEAD",
    "NEED_DATA",
    "Ack",
    "BadChecksum",
    "Codec",
    "Event",
    "Interrupt",
    "Nack",
    "Oversized",
    "Packet",
    "Role",
    "Sentinel",
]

DEFAULT_MAX_PACKET_SIZE = 0x4000
FRAME_OVERHEAD = len(b"$#00")  # the frame around a payload; max_packet_size counts it, PacketSize does not

Role = Literal["server", "client"]


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    """A well-framed packet. `payload` has its '}' escapes undone (and, for a client, runs expanded)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A lone 0x03 between packets: the debugger's Ctrl-C (server role only)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """A '+': the peer received our last packet intact."""


@dataclass(frozen=True, slots=True)
class Nack:
    """A '-': the peer asks for our last packet again; the codec has queued the retransmission."""


@dataclass(frozen=True, slots=True)
class BadChecksum:
    """A packet whose checksum did not match: dropped, and a '-' queued so the peer resends it."""

    computed: int      # the sum of the payload bytes we received, modulo 256
    received: bytes    # the checksum characters the peer sent (may be non-hex or short)


@dataclass(frozen=True, slots=True)
class Oversized:
    """A packet longer than max_packet_size: its bytes were discarded unbuffered, and a '-' queued."""

    size: int          # payload bytes (on the wire) that were discarded


Event = Packet | Interrupt | Ack | Nack | BadChecksum | Oversized


class Sentinel(enum.Enum):
    """next_event()'s two non-events; compare with `is`."""

    NEED_DATA = "NEED_DATA"   # feed more bytes with receive_data()
    EOF = "EOF"               # the peer closed the connection; any partial packet is dropped

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Sentinel.NEED_DATA
EOF = Sentinel.EOF


# --- the codec ----------------------------------------------------------------------------------


_BETWEEN_PACKETS: dict[Role, re.Pattern[bytes]] = {
    "server": re.compile(rb"[$+\-\x03]"),
    "client": re.compile(rb"[$+\-]"),     # a stub never sends Ctrl-C: 0x03 is garbage here
}
# Bytes a text payload may not contain, because the receiver would read them as framing, an
# escape or (sent by a stub) a run-length mark. Binary payloads are escaped instead.
# (Checked with `in`, which is memchr; a regex class scan is 60x slower on a 16 KiB reply.)
_TEXT_FORBIDDEN: dict[Role, tuple[bytes, ...]] = {
    "server": (b"$", b"#", b"}", b"*"),
    "client": (b"$", b"#", b"}"),
}
_DECODE_PAYLOAD: dict[Role, Callable[[bytes], bytes]] = {
    "server": unescape,                                   # gdb never run-length encodes
    "client": lambda wire: unescape(rle_decode(wire)),    # expand runs first, then unescape
}
_ENCODE_TEXT: dict[Role, Callable[[bytes], bytes]] = {
    "server": rle_encode,                                 # a stub may; gdbserver does
    "client": bytes,                                      # gdb never does
}
_ACK = b"+"
_NACK = b"-"


class Codec:
    """One connection's RSP framing state, for either end of the wire."""

    def __init__(self, role: Role, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        if role not in _BETWEEN_PACKETS:
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        if max_packet_size < FRAME_OVERHEAD:
            raise ValueError(f"max_packet_size {max_packet_size} cannot hold even an empty frame")
        self.role: Role = role
        self.max_packet_size = max_packet_size
        # The role's tables, looked up once: they are used for every packet.
        self._packet_start = _BETWEEN_PACKETS[role]
        self._text_forbidden = _TEXT_FORBIDDEN[role]
        self._decode_payload = _DECODE_PAYLOAD[role]
        self._encode_text = _ENCODE_TEXT[role]
        self._max_payload = max_packet_size - FRAME_OVERHEAD
        self._no_ack = False
        # The state is the step that parses the next input: _step_idle between packets (waiting
        # for '$', '+', '-' or 0x03), _step_body inside '$...' up to '#', _step_drain inside an
        # oversized packet (counting and discarding up to '#'), _step_checksum after '#'.
        self._step: Callable[[], Event | Sentinel | None] = self._step_idle
        self._received = bytearray()       # bytes fed in but not parsed yet
        self._payload = bytearray()        # wire bytes of the packet being received
        self._drained = 0                  # bytes discarded so far from an oversized packet
        self._eof = False
        self._outgoing = bytearray()       # '+', '-' and retransmissions for data_to_send()
        self._last_frame = b""             # what a '-' from the peer asks for again

    # -- acknowledgement mode

    @property
    def no_ack(self) -> bool:
        """True once QStartNoAckMode took effect: no '+'/'-' is sent, checksums are not enforced."""
        return self._no_ack

    def start_no_ack(self) -> None:
        """Stop acknowledging. Server: call right after framing the OK for QStartNoAckMode.
        Client: call after receiving that OK (its '+' is already queued and still goes out)."""
        self._no_ack = True

    # -- receiving

    @property
    def buffered_size(self) -> int:
        """Bytes held for parsing: unparsed input plus the payload of the packet being received."""
        return len(self._received) + len(self._payload)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the transport; b"" means the peer closed the connection."""
        if self._eof:
            raise LocalProtocolError("receive_data() after the end of the stream")
        if data:
            self._received += data
        else:
            self._eof = True

    def next_event(self) -> Event | Sentinel:
        """The next event from the bytes received so far, NEED_DATA, or EOF once the peer closed.

        Raises RemoteProtocolError for an intact frame whose payload cannot be decoded (a dangling
        '}' escape, a bad run-length count); that frame is consumed, so the next call goes on.
        """
        while True:
            result = self._step()
            if result is None:
                continue
            if result is NEED_DATA and self._eof:
                self._received.clear()
                self._payload.clear()
                self._step = self._step_idle
                return EOF
            return result

    # Each step consumes input and returns an event, NEED_DATA when the input ran out, or None
    # after a state change that the loop in next_event() should continue from.

    def _step_idle(self) -> Event | Sentinel | None:
        start = self._packet_start.search(self._received)
        if start is None:
            self._received.clear()         # garbage between packets: skipped
            return NEED_DATA
        marker = self._received[start.start()]
        del self._received[: start.end()]
        if marker == ord("$"):
            self._payload.clear()
            self._step = self._step_body
            return None
        if marker == ord("+"):
            return Ack()
        if marker == ord("-"):
            if not self._no_ack and self._last_frame:
                self._outgoing += self._last_frame
            return Nack()
        return Interrupt()

    def _step_body(self) -> Event | Sentinel | None:
        end = _find_payload_end(self._received)
        length = len(self._received) if end < 0 else end
        if len(self._payload) + length > self._max_payload:
            # Count what was collected and discard it; DRAIN discards the rest as it arrives.
            self._drained = len(self._payload)
            self._payload.clear()
            self._step = self._step_drain
            return None
        self._payload += self._received[:length]
        del self._received[:length]
        if end < 0:
            return NEED_DATA
        terminator = self._received[0]
        del self._received[:1]
        if terminator == ord("#"):
            self._step = self._step_checksum
        else:
            self._payload.clear()          # '$' again: the sender restarted; the old one is lost
        return None

    def _step_drain(self) -> Event | Sentinel | None:
        end = _find_payload_end(self._received)
        length = len(self._received) if end < 0 else end
        self._drained += length
        del self._received[:length]
        if end < 0:
            return NEED_DATA
        if self._received[0] == ord("#"):
            del self._received[:1]
            self._step = self._step_checksum
            return None
        self._step = self._step_idle          # a '$' starts the next packet: leave it in place
        return self._refuse_oversized()

    def _step_checksum(self) -> Event | Sentinel | None:
        digits = bytes(self._received[:2])
        restart = digits.find(b"$")
        if restart >= 0:
            # A new packet began where a checksum digit belonged: this one is broken.
            del self._received[:restart]
            return self._finish_frame(digits[:restart], complete=False)
        if len(digits) < 2:
            return NEED_DATA
        del self._received[:2]
        return self._finish_frame(digits, complete=True)

    def _finish_frame(self, digits: bytes, *, complete: bool) -> Event:
        self._step = self._step_idle
        if self._drained:
            return self._refuse_oversized()
        wire = bytes(self._payload)
        self._payload.clear()
        computed = checksum(wire)
        # In no-ack mode "the checksum may be ignored by the receiver" (GDB manual, Packet
        # Acknowledgment), and there is no way left to ask for a resend: take the packet, like gdbserver.
        if not self._no_ack:
            if not (complete and _checksum_matches(digits, computed)):
                self._outgoing += _NACK
                return BadChecksum(computed=computed, received=digits)
            self._outgoing += _ACK
        try:
            return Packet(self._decode_payload(wire))
        except ValueError as exc:
            raise RemoteProtocolError(f"undecodable packet payload: {exc}") from exc

    def _refuse_oversized(self) -> Oversized:
        size, self._drained = self._drained, 0
        if not self._no_ack:
            self._outgoing += _NACK
        return Oversized(size)

    # -- sending

    def data_to_send(self) -> bytes:
        """The queued '+'/'-' acknowledgements and retransmissions, in order; empties the queue."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def send(self, payload: bytes, *, binary: bool = False) -> bytes:
        """Frame one packet (see `frame`) and remember it for retransmission."""
        return self.send_frame(self.frame(payload, binary=binary))

    def frame(self, payload: bytes, *, binary: bool = False) -> bytes:
        """One packet as '$' + payload + '#' + checksum, not yet sent (nothing is remembered).

        binary=False: `payload` is text already in wire form; a '$', '#', '}' (or, from a server,
        '*') in it is our bug (LocalProtocolError). binary=True: those bytes are escaped first.
        A server run-length encodes text replies (hex has long runs, cheap to find); binary data
        (file contents) has many short runs, and encoding them costs more time than it saves on
        the wire (measured), so it goes out escaped only. A client never encodes (gdb does not).
        """
        if binary:
            wire = escape(payload)
        else:
            for forbidden in self._text_forbidden:
                if forbidden in payload:
                    raise LocalProtocolError(
                        f"text payload contains {forbidden!r} at {payload.find(forbidden)}: "
                        "send it with binary=True"
                    )
            wire = self._encode_text(payload)
        return b"$%b#%02x" % (wire, checksum(wire))

    def send_frame(self, frame: bytes) -> bytes:
        """Send a frame made by `frame`: remember it for retransmission, and return it."""
        self._last_frame = frame
        return frame


def _find_payload_end(received: bytearray) -> int:
    """Index of the '#' that ends the payload, or of a '$' before it (the sender gave up on this
    packet and started again), or -1. Two memchr scans: a regex class scan is far slower."""
    hash_mark = received.find(b"#")
    dollar = received.find(b"$", 0, len(received) if hash_mark < 0 else hash_mark)
    return hash_mark if dollar < 0 else dollar


def _checksum_matches(digits: bytes, computed: int) -> bool:
    try:
        return hex_int(digits) == computed
    except ValueError:
        return False
