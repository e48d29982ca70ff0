"""_wire: hex, checksum, escaping and run-length encoding, by table and by hypothesis round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdbstub.rsp._wire import (
    checksum,
    escape,
    escaped_prefix_length,
    from_hex,
    hex_int,
    rle_decode,
    rle_encode,
    to_hex,
    unescape,
)

# Printable ASCII without the three bytes an escaped payload can no longer contain.
WIRE_TEXT = st.binary().map(lambda b: bytes(0x20 + x % 95 for x in b)).map(
    lambda b: b.replace(b"$", b"a").replace(b"#", b"b").replace(b"*", b"c")
)
# Long runs are what RLE is about: build payloads from (byte, run length) pieces.
RUNS = st.lists(
    st.tuples(st.sampled_from(b"0f ~}]!\"az"), st.integers(min_value=1, max_value=250)), max_size=12
).map(lambda pieces: b"".join(bytes([c]) * n for c, n in pieces))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", 0x00),
        (b"OK", 0x9A),                   # '$OK#9a' is the reply every stub sends
        (b"qSupported", 0x37),           # gdb's first packet: '$qSupported#37'
        (b"m0,1", 0xFA),
        (b"\xff\xff", 0xFE),             # the sum wraps modulo 256
    ],
)
def test_checksum_of_known_packets(payload: bytes, expected: int) -> None:
    assert checksum(payload) == expected


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"abc", b"abc"),
        (b"#", b"}\x03"),
        (b"$", b"}\x04"),
        (b"}", b"}]"),
        (b"*", b"}\x0a"),
        (b"}}", b"}]}]"),
        (b"\x03\x7d\x23", b"\x03}]}\x03"),
        (b"", b""),
    ],
)
def test_escape_table(raw: bytes, escaped: bytes) -> None:
    assert escape(raw) == escaped
    assert unescape(escaped) == raw


def test_unescape_accepts_any_escaped_byte_including_brace() -> None:
    # '}' followed by '}' is byte 0x5d escaped (nobody needs to, but a decoder must take it).
    assert unescape(b"}}x") == b"]x"


@pytest.mark.parametrize("bad", [b"}", b"abc}", b"}]}"])
def test_unescape_rejects_a_dangling_escape(bad: bytes) -> None:
    with pytest.raises(ValueError):
        unescape(bad)


@pytest.mark.parametrize(
    ("run_length", "encoded"),
    [
        (1, b"0"),
        (3, b"000"),        # "0* " would not be shorter than the literals
        (4, b"0* "),        # 3 extra repeats: count chr(3 + 29) = ' '
        (6, b'0*"'),        # 5 extra
        (7, b'0*"0'),       # 6 extra would be '#': 5 extra + 1 literal
        (8, b'0*"00'),      # 7 extra would be '$': 5 extra + 2 literals (the manual's example)
        (9, b"0*%"),
        (14, b"0**"),       # 13 extra: the count character is itself '*'
        (98, b"0*~"),       # 97 extra: the largest printable count
        (99, b"0*~0"),
        (200, b"0*~0*~0* "),
    ],
)
def test_rle_encode_table(run_length: int, encoded: bytes) -> None:
    assert rle_encode(b"0" * run_length) == encoded
    assert rle_decode(encoded) == b"0" * run_length


def test_rle_decode_of_gdbserver_style_reply() -> None:
    assert rle_decode(b"1*!2*\"x") == b"11111" + b"222222" + b"x"


@pytest.mark.parametrize("bad", [b"*!", b"a*", b"a*\x10", b"a*\x7f"])
def test_rle_decode_rejects_malformed_runs(bad: bytes) -> None:
    with pytest.raises(ValueError):
        rle_decode(bad)


@pytest.mark.parametrize("unescaped", [b"a*b", b"#", b"$"])
def test_rle_encode_refuses_unescaped_special_bytes(unescaped: bytes) -> None:
    with pytest.raises(ValueError):
        rle_encode(unescaped)


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("ff", 255), ("FF", 255), (b"7fffffffe000", 0x7FFFFFFFE000)]
)
def test_hex_int_accepts_plain_digits(text: str | bytes, value: int) -> None:
    assert hex_int(text) == value


@pytest.mark.parametrize("bad", ["", "0x10", "-1", "+1", " 1", "1_0", "g", "é", b"\xff"])
def test_hex_int_rejects_what_int_would_accept_or_garbage(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        hex_int(bad)


def test_hex_bytes_round_trip_and_strictness() -> None:
    assert to_hex(b"\x00\x7f\xff") == "007fff"
    assert from_hex("007FFF") == b"\x00\x7f\xff"
    assert from_hex(b"") == b""
    for bad in ("0", "00 11", "zz", "é0"):
        with pytest.raises(ValueError):
            from_hex(bad)


@given(st.binary())
def test_unescape_inverts_escape(data: bytes) -> None:
    escaped = escape(data)
    assert not any(c in escaped for c in b"#$*")
    assert unescape(escaped) == data


@given(st.binary())
def test_hex_round_trip(data: bytes) -> None:
    assert from_hex(to_hex(data)) == data


@given(st.one_of(WIRE_TEXT, RUNS.map(lambda b: b.replace(b"}", b"x")), st.binary().map(escape)))
def test_rle_decode_inverts_rle_encode(data: bytes) -> None:
    assert rle_decode(rle_encode(data)) == data


@given(st.one_of(WIRE_TEXT, RUNS))
def test_rle_never_emits_frame_bytes_and_never_grows(data: bytes) -> None:
    encoded = rle_encode(data)
    assert b"$" not in encoded and b"#" not in encoded
    assert len(encoded) <= len(data)
    # Every count character (the byte after a '*') is printable and never '#' or '$'.
    index = encoded.find(b"*")
    while index >= 0:
        count = encoded[index + 1]
        assert 0x20 <= count <= 0x7E and count not in b"#$"
        index = encoded.find(b"*", index + 2)   # a count may itself be '*' (13 extra repeats)


@given(st.binary())
def test_server_wire_order_round_trips(data: bytes) -> None:
    # A stub escapes, then run-length encodes; the client expands runs, then unescapes.
    assert unescape(rle_decode(rle_encode(escape(data)))) == data


def gdbserver_try_rle(data: bytes) -> bytes:
    """gdbserver's remote-utils.c:try_rle, transcribed plainly: the reference for rle_encode.

    One difference: gdbserver caps a run at 97 bytes including the first ("remaining > 97"), so its
    largest count is '}' (96 extra); the manual allows counts up to '~' (97 extra), as we do.
    """
    out = bytearray()
    i = 0
    while i < len(data):
        out.append(data[i])
        remaining = min(len(data) - i, 98)
        n = 1
        while n < remaining and data[i + n] == data[i]:
            n += 1
        n -= 1                      # repeats after the byte just written
        if n < 3:
            i += 1
            continue
        while n + 29 in (ord("$"), ord("#")):
            n -= 1
        out += b"*" + bytes([n + 29])
        i += n + 1
    return bytes(out)


@given(st.one_of(WIRE_TEXT, RUNS))
def test_rle_encode_matches_gdbserver(data: bytes) -> None:
    assert rle_encode(data) == gdbserver_try_rle(data)


@given(st.binary(max_size=3000))
def test_checksum_is_the_byte_sum_modulo_256(data: bytes) -> None:
    assert checksum(data) == sum(data) % 256


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_escaped_prefix_length_fits_and_wastes_at_most_half(data, limit):
    n = escaped_prefix_length(data, limit)
    assert len(escape(data[:n])) <= limit
    assert n == len(data) or n >= limit // 2
