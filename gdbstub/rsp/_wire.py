"""Pure byte transforms of the GDB Remote Serial Protocol: hex, checksum, escaping, run-length encoding.

No state and no I/O: every function maps bytes to bytes (or raises ValueError on input it cannot map).
The order on the wire matters: a sender escapes first, then run-length encodes; a receiver expands
runs first, then undoes the escapes (GDB manual, "Overview").
"""

from __future__ import annotations

import binascii
import re

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
_RUN_TO_COMPRESS = re.compile(rb"(.)\1{%d,}" % _RLE_MIN_EXTRA, re.DOTALL)
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
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Escape the four bytes that are special inside a frame ('#', '$', '}', '*') as '}' + byte^0x20."""
    # '}' goes first so that the escape bytes added by the later replacements are not escaped again.
    return (
        data.replace(b"}", b"}]")
        .replace(b"#", b"}\x03")
        .replace(b"$", b"}\x04")
        .replace(b"*", b"}\x0a")
    )


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
    return _RUN_TO_COMPRESS.sub(lambda m: _encode_run(m[1][0], len(m[0])), data)


def _encode_run(byte: int, length: int) -> bytes:
    out = bytearray()
    remaining = length
    while remaining:
        out.append(byte)
        remaining -= 1
        extra = min(remaining, _RLE_MAX_EXTRA)
        if extra < _RLE_MIN_EXTRA:
            continue
        if extra in _RLE_FORBIDDEN_EXTRA:
            extra = _RLE_SAFE_EXTRA
        out.append(RLE_MARK)
        out.append(extra + _RLE_BIAS)
        remaining -= extra
    return bytes(out)


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
