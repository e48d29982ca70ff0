"""The one exception the breakpoint layer raises.

Like Linux's hw_breakpoint functions, every failure carries the errno Linux
would return in the same situation, so each consumer (gdb's Z packets, ptrace,
perf, the ksym tracer) can map it to its own wire form.
"""

from __future__ import annotations

import errno as _errno


class HwBreakpointError(OSError):
    """A breakpoint request was refused; `.errno` says why, the message which rule."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)

    @property
    def errno_name(self) -> str:
        """The symbolic name, e.g. "ENOSPC", for logs and slot tables."""
        return _errno.errorcode.get(self.errno, str(self.errno))
