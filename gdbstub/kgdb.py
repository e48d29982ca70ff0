"""gdb's hardware breakpoints and watchpoints (Z1-Z4) as one consumer of the core API.

Like kgdb in Linux, the stub asks the core breakpoint API for slots and
competes for them with every other consumer (the ksym tracer, perf counters,
ptrace users). The request rules follow gdbserver on x86-64 (gdb/nat/x86-dregs.c):

- Z1 -> an execute breakpoint (length sizeof(long) = 8 at the core API);
  Z2 -> write, Z4 -> read/write; Z3 -> read, only where the arch has read-only
  watchpoints (not x86: the empty reply makes gdb fall back to Z4 + value checks).
- A region the arch cannot take whole is split into aligned 1/2/4/8-byte
  pieces; all pieces or none are registered.
- Identical pieces share one breakpoint (reference counted); a duplicate Z is
  a no-op; z removes exactly what its Z made; removing what is absent is OK.
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from .hwbp import (
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    HwBreakpointError,
)
from .hwbp.attr import SIZEOF_LONG
from .rsp.errors import TargetError, Unsupported

log = logging.getLogger("gdbstub.kgdb")

_Z_TYPES = {1: HW_BREAKPOINT_X, 2: HW_BREAKPOINT_W, 3: HW_BREAKPOINT_R, 4: HW_BREAKPOINT_RW}

# gdb/nat/x86-dregs.c's size_try_array: the piece length to try for a region
# of (remaining length - 1, capped at 7) starting at (address % 8).
_SIZE_TRY = (
    (1, 1, 1, 1, 1, 1, 1, 1),
    (2, 1, 2, 1, 2, 1, 2, 1),
    (2, 1, 2, 1, 2, 1, 2, 1),
    (4, 1, 2, 1, 4, 1, 2, 1),
    (4, 1, 2, 1, 4, 1, 2, 1),
    (4, 1, 2, 1, 4, 1, 2, 1),
    (4, 1, 2, 1, 4, 1, 2, 1),
    (8, 1, 2, 1, 4, 1, 2, 1),
)


def split_region(addr: int, length: int) -> Iterator[tuple[int, int]]:
    """Aligned 1/2/4/8-byte pieces covering [addr, addr+length), as gdbserver splits them (lazily:
    a huge length must not build a huge list before the slot limit refuses it)."""
    while length > 0:
        size = _SIZE_TRY[min(length, 8) - 1][addr % 8]
        yield addr, size
        addr += size
        length -= size


@dataclass
class _Piece:
    bp: object
    refs: int


class GdbDebugger:
    """The stub's breakpoints on the core API, for one task (the served process)."""

    def __init__(self, core, task):
        self.core = core
        self.task = task
        self._pieces: dict[tuple[int, int, int], _Piece] = {}        # (type, addr, len) -> bp
        # Removed by gdb but still registered until settle(): gdb removes every breakpoint at each
        # stop and inserts the same ones before it resumes, and the pair then costs no core call.
        self._releasing: dict[tuple[int, int, int], _Piece] = {}
        self._requests: dict[tuple[int, int, int], list[tuple[int, int, int]]] = {}
        self.read_watchpoints = self._accepts(BreakpointAttr(0x1000, 1, HW_BREAKPOINT_R))

    def _accepts(self, attr: BreakpointAttr) -> bool:
        """Would registration's own parse take `attr`? Asked before registering, because the
        core reserves a slot before it parses: when none is free, its ENOSPC hides the answer."""
        try:
            self.core.hw_breakpoint_parse(attr, privileged=True)
        except HwBreakpointError:
            return False
        return True

    # ----- Z / z -----------------------------------------------------------------

    def insert(self, ztype: int, addr: int, kind: int) -> None:
        bp_type = _Z_TYPES[ztype]
        if bp_type == HW_BREAKPOINT_R and not self.read_watchpoints:
            raise Unsupported("this arch has no read-only watchpoints")
        request = (ztype, addr, kind)
        if request in self._requests:
            return   # a duplicate Z: idempotent
        keys = [(bp_type, a, n) for a, n in self._pieces_for(bp_type, addr, kind)]
        if any(key not in self._pieces and key not in self._releasing for key in keys):
            self.settle()       # a new registration: the slots held must be exactly gdb's
        taken: list[tuple[int, int, int]] = []
        try:
            for key in keys:
                self._take(key)
                taken.append(key)
        except HwBreakpointError as exc:
            for key in taken:
                self._drop(key)
            self.settle()
            log.warning("Z%d,%x,%x refused: %s; slots held by: %s", ztype, addr, kind, exc, self.holders())
            raise TargetError(exc.errno or errno.ENOSPC, str(exc)) from None
        self._requests[request] = keys

    def remove(self, ztype: int, addr: int, kind: int) -> None:
        for key in self._requests.pop((ztype, addr, kind), []):
            self._drop(key)

    def settle(self) -> None:
        """Give back the slots of the breakpoints gdb removed and has not inserted again.
        Called before the program runs and before anyone else looks at or asks for slots."""
        releasing, self._releasing = self._releasing, {}
        for piece in releasing.values():
            self.core.unregister(piece.bp)

    def release_all(self) -> None:
        """Detach, kill or disconnect: give every slot back."""
        for request in list(self._requests):
            self.remove(*request)
        self.settle()

    def _pieces_for(self, bp_type: int, addr: int, kind: int) -> list[tuple[int, int]]:
        if bp_type == HW_BREAKPOINT_X:
            return [(addr, SIZEOF_LONG)]
        if kind <= 0:
            raise TargetError(errno.EINVAL, "watch length 0")
        if self._accepts(BreakpointAttr(addr, kind, bp_type)):
            return [(addr, kind)]
        limit = self.core.slots(bp_type)
        pieces = list(itertools.islice(split_region(addr, kind), limit + 1))
        if len(pieces) > limit:
            raise TargetError(errno.ENOSPC, f"{kind} bytes at {addr:#x} need more than {limit} debug registers")
        return pieces

    def _take(self, key: tuple[int, int, int]) -> None:
        piece = self._pieces.get(key)
        if piece is not None:
            piece.refs += 1
            return
        piece = self._releasing.pop(key, None)
        if piece is not None:       # removed at the stop, back before the resume: still registered
            piece.refs = 1
            self._pieces[key] = piece
            return
        bp_type, addr, length = key
        attr = BreakpointAttr(bp_addr=addr, bp_len=length, bp_type=bp_type)
        bp = self.core.register_user(attr, self.task, handler=self._hit, owner="gdb")
        self._pieces[key] = _Piece(bp, 1)

    def _drop(self, key: tuple[int, int, int]) -> None:
        piece = self._pieces[key]
        piece.refs -= 1
        if piece.refs == 0:
            del self._pieces[key]
            self._releasing[key] = piece

    # ----- hits --------------------------------------------------------------------

    @staticmethod
    def _hit(bp, hit) -> bool:
        """gdb wants every hit of its breakpoints: stop and report."""
        return True

    def owns(self, bp) -> bool:
        return any(piece.bp is bp for piece in self._pieces.values())

    def holders(self) -> str:
        """Who holds the slots, for the log line of a refused request."""
        owners = [f"{bp.owner} {bp.attr.bp_addr:#x}/{bp.attr.bp_len}" for bp in self.core.breakpoints()]
        return ", ".join(owners) or "nobody"
