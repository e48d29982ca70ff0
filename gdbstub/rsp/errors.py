"""The RspError tree: every error names who is at fault and carries its own wire answer.

Handlers raise; exactly one place (the session's dispatch) turns an error into a reply, using
`RspError.reply` (design-style.md section 6.3):

    RemoteProtocolError   the peer misbehaved          no reply, close the connection
    LocalProtocolError    our own bug                  no reply, close and log
    MalformedPacket       payload does not parse       E16 (EINVAL)
    Unsupported           unknown or absent feature    empty reply
    TargetError(errno)    the target refused           E<errno in hex>
"""

from __future__ import annotations

import errno as _errno
from typing import ClassVar

__all__ = [
    "LocalProtocolError",
    "MalformedPacket",
    "RemoteProtocolError",
    "RspError",
    "TargetError",
    "Unsupported",
]


class RspError(Exception):
    """Base of all RSP errors. `errno` is a Linux errno; by default the reply is `E<errno hex>`."""

    default_errno: ClassVar[int] = _errno.EIO

    def __init__(self, message: str = "", *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno: int = self.default_errno if errno is None else errno

    @property
    def reply(self) -> bytes | None:
        """The payload to answer with, or None when the connection must close without an answer."""
        return b"E%02x" % (self.errno & 0xFF)


class RemoteProtocolError(RspError):
    """The peer broke the protocol (unframeable input, a packet while running): no reply, close."""

    default_errno = _errno.EPROTO

    @property
    def reply(self) -> bytes | None:
        return None


class LocalProtocolError(RspError):
    """Our own code misused the protocol (a second stop reply, an unframeable payload): a bug.

    No reply: close the connection and log it.
    """

    default_errno = _errno.EPROTO

    @property
    def reply(self) -> bytes | None:
        return None


class MalformedPacket(RspError):
    """The packet's payload does not parse: answered with `E16` (EINVAL)."""

    default_errno = _errno.EINVAL


class Unsupported(RspError):
    """Unknown packet, absent capability or a Z type not offered: answered with an empty reply."""

    default_errno = _errno.EOPNOTSUPP

    @property
    def reply(self) -> bytes | None:
        return b""


class TargetError(RspError):
    """The target refused a well-formed request (bad address, no free debug register): `E<errno>`.

    The errno is required, as for OSError: `TargetError(errno.EFAULT, "cannot read 0x0")`.
    """

    def __init__(self, errno: int, message: str = "") -> None:
        super().__init__(message, errno=errno)
