"""Pure byte transforms of the GDB Remote Serial Protocol: hex, checksum, escaping, run-length encoding.

No state and no I/O: every function maps bytes to bytes (or raises ValueError on input it cannot map).
The order on the wire matters: a sender escapes first, then run-length encodes; a receiver expands
runs first, then undoes the escapes (GDB manual, "Overview").
"""

from __future__ import annotations

import binascii
import functools
import re
import zlib

__all__ = [
    "ESCAPE",
    "RLE_MARK",
    "checksum",
    "escape",
    "from_hex",
    "hex_int",
    "rle_decode",
    "rle_encode",
    "to_hex",
    "unescape",
]

ESCAPE = 0x7D    # '}': the next byte is the data byte XOR 0x20
RLE_MARK = 0x2A  # '*': the next byte is a repeat count + 29

_ESCAPE_XOR = 0x20
_RLE_BIAS = 29
_RLE_MIN_EXTRA = 3   # "c*N" costs 3 bytes: it only saves space from 3 extra repeats up
_RLE_MAX_EXTRA = 126 - _RLE_BIAS   # the count character must stay printable ('~' at most)
# A count of 6 or 7 would put '#' or '$' inside the frame, which ends or restarts it.
_RLE_FORBIDDEN_EXTRA = frozenset({ord("#") - _RLE_BIAS, ord("$") - _RLE_BIAS})
_RLE_SAFE_EXTRA = 5  # the largest count below the forbidden ones: 6/7 become 5 + literals

_HEX_DIGITS = re.compile(rb"[0-9a-fA-F]+")
_RUN_OF_FOUR = b"\x00" * _RLE_MIN_EXTRA      # in the successor diff: 4 equal bytes in a row
_ZERO_BYTES = re.compile(rb"\x00+")
_ADLER_EXACT_CHUNK = 256
_ESCAPED_PAIR = re.compile(rb"\}(.)|\}", re.DOTALL)  # pairs left to right; a lone '}' only at the end


def to_hex(data: bytes) -> str:
    """Lower-case hex of `data`, two digits per byte, as in `m` replies."""
    return data.hex()


def from_hex(text: str | bytes) -> bytes:
    """Bytes from an even-length hex string; rejects spaces, odd lengths and non-hex (ValueError)."""
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"not an even-length hex string: {text!r}") from exc


def hex_int(text: str | bytes) -> int:
    """An unsigned hex number as RSP writes it: digits only, no '0x', sign, space or '_' (ValueError)."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    if not _HEX_DIGITS.fullmatch(raw):
        raise ValueError(f"not a hex number: {text!r}")
    return int(raw, 16)


def checksum(data: bytes) -> int:
    """The RSP checksum: the sum of the frame's payload bytes modulo 256."""
    if len(data) <= _ADLER_EXACT_CHUNK:
        return sum(data) & 0xFF
    # sum() walks Python ints (~6 ns a byte). Adler-32's low half is 1 + the byte sum modulo 65521,
    # which is exact for chunks of up to 256 bytes (1 + 256 * 255 < 65521): C speed, 5x faster.
    view = memoryview(data)
    total = 0
    for start in range(0, len(view), _ADLER_EXACT_CHUNK):
        total += (zlib.adler32(view[start : start + _ADLER_EXACT_CHUNK]) & 0xFFFF) - 1
    return total & 0xFF


def escape(data: bytes) -> bytes:
    """Escape the four bytes that are special inside a frame ('#', '$', '}', '*') as '}' + byte^0x20."""
    # '}' goes first so that the escape bytes added by the later replacements are not escaped again.
    return (
        data.replace(b"}", b"}]")
        .replace(b"#", b"}\x03")
        .replace(b"$", b"}\x04")
        .replace(b"*", b"}\x0a")
    )


def escaped_prefix_length(data: bytes, limit: int) -> int:
    """How many leading bytes of `data` to send so that their escaped form fits in `limit`.

    Not always the most that would fit, but close, and found with four C-speed scans: every
    special byte grows by one when escaped, so `limit - specials` bytes always fit, and so does
    `limit // 2` (no byte grows past two).
    """
    specials = sum(data.count(special) for special in (b"}", b"#", b"$", b"*"))
    if len(data) + specials <= limit:
        return len(data)
    return min(len(data), max(limit - specials, limit // 2))


def unescape(data: bytes) -> bytes:
    """Undo `escape`: '}' + x becomes x^0x20 for any x. A trailing lone '}' raises ValueError."""
    if ESCAPE not in data:
        return bytes(data)
    return _ESCAPED_PAIR.sub(_unescape_pair, data)


def _unescape_pair(match: re.Match[bytes]) -> bytes:
    if match[1] is None:  # the pattern's second branch: a '}' with nothing after it
        raise ValueError("escape character '}' at the end of the data")
    return bytes((match[1][0] ^ _ESCAPE_XOR,))


def rle_encode(data: bytes) -> bytes:
    """Run-length encode wire bytes as "c*N" (N = chr(extra repeats + 29)), the way gdbserver does.

    Only runs of 4 or more identical bytes are encoded (shorter ones would not get shorter), a run
    longer than 98 bytes is split, and a count of 6 or 7 extra repeats (which would be '#' or '$') is
    written as 5 plus literal bytes. `data` must already be escaped: it may not contain '*', '#', '$'.
    """
    for special in b"*#$":
        if special in data:
            raise ValueError(f"unescaped {chr(special)!r} cannot be run-length encoded")
    if len(data) <= _RLE_MIN_EXTRA:
        return bytes(data)
    # Find runs at C speed: XOR the data with itself shifted by one byte; a zero marks a byte equal
    # to its successor, so three zeros in a row mark a run of four. (A regex scan costs 30 ns a byte.)
    as_int = int.from_bytes(data, "little")            # byte i of the int is data[i]
    successor_diff = (as_int ^ (as_int >> 8)).to_bytes(len(data), "little")[:-1]
    run_start = successor_diff.find(_RUN_OF_FOUR)
    if run_start < 0:
        return bytes(data)
    out = bytearray()
    copied = 0
    while run_start >= 0:
        run_end = _ZERO_BYTES.match(successor_diff, run_start).end() + 1
        out += data[copied:run_start]
        out += _encode_run(data[run_start], run_end - run_start)
        copied = run_end
        run_start = successor_diff.find(_RUN_OF_FOUR, copied)
    out += data[copied:]
    return bytes(out)


# Replies repeat the same runs (zeros, in hex): remembered, a program header's `m` reply encodes
# in 4.9 us instead of 9.9.
@functools.lru_cache(maxsize=4096)
def _encode_run(byte: int, length: int) -> bytes:
    # Pieces of 1 + _RLE_MAX_EXTRA bytes first (all alike: a page of zeros is 8192 hex digits, 84
    # pieces), then the rest as one literal and its count, or as plain literals when that is shorter.
    whole, rest = divmod(length, 1 + _RLE_MAX_EXTRA)
    out = bytes((byte, RLE_MARK, _RLE_MAX_EXTRA + _RLE_BIAS)) * whole
    extra = rest - 1
    if extra < _RLE_MIN_EXTRA:
        return out + bytes((byte,)) * rest
    if extra in _RLE_FORBIDDEN_EXTRA:    # 5 extra repeats, and the last one or two as literals
        return out + bytes((byte, RLE_MARK, _RLE_SAFE_EXTRA + _RLE_BIAS)) + bytes((byte,)) * (extra - _RLE_SAFE_EXTRA)
    return out + bytes((byte, RLE_MARK, extra + _RLE_BIAS))


def rle_decode(data: bytes) -> bytes:
    """Expand "c*N" runs: N - 29 more copies of the byte before '*'. Malformed runs raise ValueError."""
    if RLE_MARK not in data:
        return bytes(data)
    out = bytearray()
    position = 0
    while True:
        mark = data.find(RLE_MARK, position)
        if mark < 0:
            out += data[position:]
            return bytes(out)
        out += data[position:mark]
        if not out:
            raise ValueError("run-length mark '*' with no byte before it")
        if mark + 1 >= len(data):
            raise ValueError("run-length mark '*' without a count")
        count_char = data[mark + 1]
        if not 0x20 <= count_char <= 0x7E:
            raise ValueError(f"run-length count {count_char:#x} is not printable")
        out += out[-1:] * (count_char - _RLE_BIAS)
        position = mark + 2
