"""Sizes the stub advertises and honours."""

from ._wire import escaped_prefix_length

# qSupported's PacketSize: the most data characters gdb may send in one packet, and the size our
# replies keep to. Large packets mean fewer round trips for memory reads and vFile:pread (measured:
# the round trip, not the bytes, dominates on loopback).
PACKET_SIZE = 0x10000

# Room for a reply's own header ("F1234;", "m", "l") inside PACKET_SIZE.
REPLY_HEADER_ROOM = 32


def fit_binary_reply(data: bytes) -> bytes:
    """The leading part of `data` that a binary reply can carry: escaped, it must fit PacketSize."""
    limit = PACKET_SIZE - REPLY_HEADER_ROOM
    data = data[:limit]
    return data[:escaped_prefix_length(data, limit)]
