"""Sizes the stub advertises and honours."""

# qSupported's PacketSize: the most data characters gdb may send in one packet, and the size our
# replies keep to. Large packets mean fewer round trips for memory reads and vFile:pread (measured:
# the round trip, not the bytes, dominates on loopback).
PACKET_SIZE = 0x10000

# Room for a reply's own header ("F1234;", "m", "l") inside PACKET_SIZE.
REPLY_HEADER_ROOM = 32
