"""Codec: framing, acks, retransmission, no-ack mode, escaping, RLE, oversize, fuzzing.

Every framing case goes through tr(), which feeds the input three ways (whole, byte by byte, and
followed by the start of another packet) and expects the same events and the same bytes to send.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdbstub.rsp._wire import checksum
from gdbstub.rsp.codec import (
    EOF,
    FRAME_OVERHEAD,
    NEED_DATA,
    Ack,
    BadChecksum,
    Codec,
    Event,
    Interrupt,
    Nack,
    Oversized,
    Packet,
)
from gdbstub.rsp.errors import LocalProtocolError, RemoteProtocolError

Setup = Callable[[Codec], None]


def frame(payload: bytes) -> bytes:
    """A frame as gdb would write it (checksum() itself is pinned by test_wire's table)."""
    return b"$%b#%02x" % (payload, checksum(payload))


def drain(codec: Codec) -> list[Event]:
    events: list[Event] = []
    while (event := codec.next_event()) is not NEED_DATA:
        assert event is not EOF
        events.append(event)
    return events


def feed(codec: Codec, chunks: Iterable[bytes]) -> tuple[list[Event], bytes]:
    events: list[Event] = []
    sent = bytearray()
    for chunk in chunks:
        codec.receive_data(chunk)
        events += drain(codec)
        sent += codec.data_to_send()
    return events, bytes(sent)


def tr(
    data: bytes,
    events: list[Event],
    sent: bytes,
    *,
    role: str = "server",
    setup: Setup | None = None,
    max_packet_size: int = 0x4000,
) -> None:
    """h11's tr(): the same input whole, byte by byte, and with trailing data gives the same result."""

    def fresh() -> Codec:
        codec = Codec(role, max_packet_size)  # type: ignore[arg-type]
        if setup is not None:
            setup(codec)
            codec.data_to_send()
        return codec

    assert feed(fresh(), [data]) == (events, sent)
    assert feed(fresh(), [data[i : i + 1] for i in range(len(data))]) == (events, sent)
    trailing = fresh()
    assert feed(trailing, [data + b"$qPartial"]) == (events, sent)
    assert trailing.buffered_size == len(b"qPartial")   # the next packet waits, untouched


def sent_ok(codec: Codec) -> None:
    codec.send(b"OK")


# --- framing and acknowledgements ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "events", "sent"),
    [
        pytest.param(b"$qSupported#37", [Packet(b"qSupported")], b"+", id="good-packet"),
        pytest.param(b"$#00", [Packet(b"")], b"+", id="empty-packet"),
        pytest.param(b"$g#67$g#67", [Packet(b"g"), Packet(b"g")], b"++", id="two-packets"),
        pytest.param(b"$qC#B4", [Packet(b"qC")], b"+", id="upper-case-checksum"),
        pytest.param(b"$m0,1#00", [BadChecksum(0xFA, b"00")], b"-", id="bad-checksum"),
        pytest.param(b"$OK#zz", [BadChecksum(0x9A, b"zz")], b"-", id="non-hex-checksum"),
        pytest.param(b"+", [Ack()], b"", id="ack"),
        pytest.param(b"\x03", [Interrupt()], b"", id="interrupt"),
        pytest.param(b"+\x03$g#67", [Ack(), Interrupt(), Packet(b"g")], b"+", id="mixed"),
        pytest.param(b"junk\x00\xff\r\n$g#67", [Packet(b"g")], b"+", id="garbage-skipped"),
        pytest.param(b"$m0,$g#67", [Packet(b"g")], b"+", id="restart-inside-payload"),
        pytest.param(b"$g#6$g#67", [BadChecksum(0x67, b"6"), Packet(b"g")], b"-+",
                     id="restart-inside-checksum"),
    ],
)
def test_server_framing(data: bytes, events: list[Event], sent: bytes) -> None:
    tr(data, events, sent)


def test_nack_retransmits_the_last_framed_packet() -> None:
    tr(b"-", [Nack()], b"$OK#9a", setup=sent_ok)
    tr(b"--", [Nack(), Nack()], b"$OK#9a$OK#9a", setup=sent_ok)

    def sent_two(codec: Codec) -> None:
        codec.send(b"E01")
        codec.send(b"OK")

    tr(b"-", [Nack()], b"$OK#9a", setup=sent_two)


def test_nack_before_anything_was_sent_queues_nothing() -> None:
    tr(b"-", [Nack()], b"")


def test_interrupt_inside_a_binary_write_is_data() -> None:
    payload = b"X1000,3:\x03\x03\x03"
    tr(frame(payload), [Packet(payload)], b"+")


def test_escaped_bytes_are_unescaped_on_receive() -> None:
    wire = b"X0,4:}\x03}\x04}]}\x0a"          # '#', '$', '}', '*' escaped as gdb writes them
    tr(frame(wire), [Packet(b"X0,4:#$}*")], b"+")


def test_server_does_not_expand_runs() -> None:
    # gdb never run-length encodes what it sends, so a '*' from gdb is plain data.
    tr(frame(b"vFile:open:2a*!"), [Packet(b"vFile:open:2a*!")], b"+")


def test_undecodable_payload_raises_but_the_stream_goes_on() -> None:
    codec = Codec("server")
    codec.receive_data(frame(b"X0,1:}") + b"$g#67")
    with pytest.raises(RemoteProtocolError):
        codec.next_event()
    assert codec.data_to_send() == b"+"       # the frame itself arrived intact
    assert drain(codec) == [Packet(b"g")]


# --- no-ack mode ---------------------------------------------------------------------------------


def no_ack(codec: Codec) -> None:
    codec.start_no_ack()


def test_no_ack_mode_sends_no_acknowledgements() -> None:
    tr(b"$qC#b4", [Packet(b"qC")], b"", setup=no_ack)


def test_no_ack_mode_ignores_the_checksum() -> None:
    # "the checksum may be ignored by the receiver" (GDB manual, Packet Acknowledgment).
    tr(b"$qC#00", [Packet(b"qC")], b"", setup=no_ack)


def test_no_ack_mode_does_not_retransmit() -> None:
    def sent_then_no_ack(codec: Codec) -> None:
        codec.send(b"OK")
        codec.start_no_ack()

    tr(b"-", [Nack()], b"", setup=sent_then_no_ack)


def test_no_ack_negotiation_before_qsupported() -> None:
    # LLDB sends QStartNoAckMode first: the codec must not tie its state to qSupported.
    server = Codec("server")
    events, sent = feed(server, [frame(b"QStartNoAckMode")])
    assert (events, sent) == ([Packet(b"QStartNoAckMode")], b"+")
    assert server.send(b"OK") == b"$OK#9a"
    server.start_no_ack()
    events, sent = feed(server, [b"+" + frame(b"qSupported:xmlRegisters=i386")])
    assert (events, sent) == ([Ack(), Packet(b"qSupported:xmlRegisters=i386")], b"")


# --- client role ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "events"),
    [
        pytest.param(frame(b'0*"'), [Packet(b"000000")], id="run"),
        pytest.param(frame(b'0*"00'), [Packet(b"0" * 8)], id="run-split-around-dollar"),
        pytest.param(frame(b"}]*!"), [Packet(b"}]]]]")], id="run-of-an-escaped-byte"),
        pytest.param(b"\x03" + frame(b"OK"), [Packet(b"OK")], id="0x03-is-garbage-from-a-stub"),
    ],
)
def test_client_expands_runs_then_unescapes(data: bytes, events: list[Event]) -> None:
    tr(data, events, b"+", role="client")


def test_client_raises_on_a_malformed_run() -> None:
    codec = Codec("client")
    codec.receive_data(frame(b"*!"))
    with pytest.raises(RemoteProtocolError):
        codec.next_event()


# --- sending -------------------------------------------------------------------------------------


def test_server_send_run_length_encodes_text() -> None:
    server = Codec("server")
    assert server.send(b"OK") == b"$OK#9a"
    # 16 zeros: '0' and 15 extra repeats, count chr(15 + 29) = ','; checksum 0x30+0x2a+0x2c.
    assert server.send(b"0" * 16) == b"$0*,#86"


def test_server_send_binary_escapes_then_encodes() -> None:
    server = Codec("server")
    wire = b"}\x03}\x04}]}\x0a"
    assert server.send(b"#$}*", binary=True) == frame(wire)


@pytest.mark.parametrize("bad", [b"a#b", b"$", b"a}b", b"3*4"])
def test_server_refuses_text_that_would_break_the_frame(bad: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        Codec("server").send(bad)


def test_client_never_run_length_encodes_and_may_send_a_star() -> None:
    client = Codec("client")
    assert client.send(b"0" * 16) == frame(b"0" * 16)
    assert client.send(b"vFile:open:*") == frame(b"vFile:open:*")
    assert client.send(b"X0,2:$}", binary=True) == frame(b"X0,2:}\x04}]")
    with pytest.raises(LocalProtocolError):
        client.send(b"m0#1")


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=600), cuts=st.lists(st.integers(0, 700), max_size=5))
def test_binary_payloads_cross_a_codec_pair_unchanged(payload: bytes, cuts: list[int]) -> None:
    for sender_role, receiver_role in (("server", "client"), ("client", "server")):
        sender, receiver = Codec(sender_role), Codec(receiver_role)  # type: ignore[arg-type]
        data = sender.send(payload, binary=True)
        points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
        chunks = [data[a:b] for a, b in zip(points, points[1:])]
        assert feed(receiver, chunks) == ([Packet(payload)], b"+")


# --- oversized packets ---------------------------------------------------------------------------


def test_packet_size_counts_the_whole_frame() -> None:
    limit = 16
    fits = b"x" * (limit - FRAME_OVERHEAD)
    tr(frame(fits), [Packet(fits)], b"+", max_packet_size=limit)
    tr(frame(fits + b"x"), [Oversized(len(fits) + 1)], b"-", max_packet_size=limit)


def test_oversized_packet_cut_short_by_a_new_packet() -> None:
    tr(b"$" + b"x" * 40 + b"$g#67", [Oversized(40), Packet(b"g")], b"-+", max_packet_size=16)


def test_oversized_in_no_ack_mode_sends_nothing() -> None:
    tr(frame(b"x" * 40), [Oversized(40)], b"", setup=no_ack, max_packet_size=16)


def test_megabytes_of_one_packet_are_refused_once_in_bounded_memory() -> None:
    codec = Codec("server", 0x4000)
    chunk = b"A" * 0x10000
    chunks_count = 5 * 16                      # 5 MiB of payload
    events: list[Event] = []
    sent = bytearray()
    largest_buffer = 0
    tracemalloc.start()
    try:
        codec.receive_data(b"$")
        for _ in range(chunks_count):
            codec.receive_data(chunk)
            events += drain(codec)
            sent += codec.data_to_send()
            largest_buffer = max(largest_buffer, codec.buffered_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events_after, sent_after = feed(codec, [b"#00" + frame(b"g")])
    assert largest_buffer <= codec.max_packet_size
    assert peak < 4 * len(chunk)               # a few chunks' worth, not megabytes
    assert events + events_after == [Oversized(chunks_count * len(chunk)), Packet(b"g")]
    assert bytes(sent) + sent_after == b"-+"


# --- end of stream -------------------------------------------------------------------------------


def test_eof_after_complete_packets_and_a_partial_one() -> None:
    codec = Codec("server")
    codec.receive_data(b"$g#67$m0,")
    codec.receive_data(b"")
    assert codec.next_event() == Packet(b"g")
    assert codec.next_event() is EOF
    assert codec.next_event() is EOF          # sticky
    assert codec.buffered_size == 0
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"$g#67")


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        Codec("proxy")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Codec("server", FRAME_OVERHEAD - 1)


# --- fuzzing -------------------------------------------------------------------------------------

SPICY_BYTES = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"$", b"#", b"}", b"*", b"+", b"-", b"\x03", b"0", b"g", b"a*!", b"#00",
                     b"$g#67", b"}", b"\xff"]),
    max_size=80,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    stream=SPICY_BYTES,
    cuts=st.lists(st.integers(0, 400), max_size=8),
    role=st.sampled_from(["server", "client"]),
    ack_mode=st.booleans(),
)
def test_any_byte_stream_only_ever_yields_events_and_stays_bounded(
    stream: bytes, cuts: list[int], role: str, ack_mode: bool
) -> None:
    codec = Codec(role, 32)  # type: ignore[arg-type]
    if not ack_mode:
        codec.start_no_ack()
    codec.send(b"OK")
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    outcomes = 0
    for start, end in zip(points, points[1:]):
        codec.receive_data(stream[start:end])
        while True:
            try:
                event = codec.next_event()
            except RemoteProtocolError:
                event = None                   # allowed; the bad frame is consumed
            if event is NEED_DATA:
                break
            outcomes += 1
            # Progress: every event or error consumes at least one byte of input.
            assert outcomes <= len(stream)
        assert codec.buffered_size <= codec.max_packet_size
        codec.data_to_send()
    codec.receive_data(b"")
    assert codec.next_event() is EOF
