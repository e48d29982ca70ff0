"""The GDB Remote Serial Protocol: a sans-IO core (codec, session) and a thin trio layer.

Only server.py and client.py import trio.
"""

from .client import RspClient
from .codec import Codec
from .errors import LocalProtocolError, MalformedPacket, RemoteProtocolError, RspError, TargetError, Unsupported
from .session import Session

__all__ = [
    "Codec", "LocalProtocolError", "MalformedPacket", "RemoteProtocolError", "RspClient", "RspError",
    "Session", "TargetError", "Unsupported",
]
