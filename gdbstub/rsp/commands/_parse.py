"""Small parsing helpers shared by the command modules. Bad input -> MalformedPacket."""

from __future__ import annotations

from ...hwbp.arch import ADDRESS_LIMIT
from .. import _wire
from ..errors import MalformedPacket


def hex_int(text: bytes, what: str = "number") -> int:
    """RSP hex: digits only (no sign, `0x`, space or `_`), and no wider than 64 bits."""
    try:
        value = _wire.hex_int(text)
    except ValueError:
        raise MalformedPacket(f"bad hex {what}: {text[:20]!r}") from None
    if value >= ADDRESS_LIMIT:
        raise MalformedPacket(f"{what} wider than 64 bits: {text[:20]!r}")
    return value


def hex_bytes(text: bytes) -> bytes:
    """RSP hex data: pairs of digits, nothing between them."""
    try:
        return _wire.from_hex(text)
    except ValueError:
        raise MalformedPacket(f"bad hex data: {text[:20]!r}") from None


def split(args: bytes, sep: bytes, count: int, what: str) -> list[bytes]:
    parts = args.split(sep, count - 1)
    if len(parts) != count:
        raise MalformedPacket(f"{what}: expected {count} fields separated by {sep!r}")
    return parts


def addr_length(args: bytes) -> tuple[int, int]:
    """`addr,length` as in m, M, X."""
    addr, length = split(args, b",", 2, "addr,length")
    return hex_int(addr, "address"), hex_int(length, "length")


def thread_id(text: bytes) -> int:
    """A thread-id without multiprocess: hex, or -1 (all) / 0 (any)."""
    if text.startswith(b"p"):
        # Tolerate pPID.TID from a client that assumes multiprocess.
        text = text.split(b".", 1)[-1]
    if text == b"-1":
        return -1
    return hex_int(text, "thread id")
