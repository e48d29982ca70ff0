"""Small parsing helpers shared by the command modules. Bad input -> MalformedPacket."""

from __future__ import annotations

from ..errors import MalformedPacket


def hex_int(text: bytes, what: str = "number") -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise MalformedPacket(f"bad hex {what}: {text[:20]!r}") from None


def hex_bytes(text: bytes) -> bytes:
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
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
