"""`g`, `G`, `p`, `P`: the register file, laid out by the target description."""

from __future__ import annotations

import errno

from ..errors import TargetError
from ._parse import hex_bytes, hex_int, split


def handle_g(session, args: bytes) -> bytes:
    return session.target.read_registers().hex().encode()


def handle_G(session, args: bytes) -> bytes:
    try:
        session.target.write_registers(hex_bytes(args))
    except ValueError as exc:
        raise TargetError(errno.EINVAL, str(exc)) from None
    return b"OK"


def handle_p(session, args: bytes) -> bytes:
    try:
        return session.target.read_register(hex_int(args, "register")).hex().encode()
    except (KeyError, IndexError):
        raise TargetError(errno.EINVAL, f"no register {args!r}") from None


def handle_P(session, args: bytes) -> bytes:
    regnum, value = split(args, b"=", 2, "P n=value")
    try:
        session.target.write_register(hex_int(regnum, "register"), hex_bytes(value))
    except (KeyError, IndexError, ValueError) as exc:
        raise TargetError(errno.EINVAL, str(exc)) from None
    return b"OK"


COMMANDS = {b"g": handle_g, b"G": handle_G, b"p": handle_p, b"P": handle_P}
