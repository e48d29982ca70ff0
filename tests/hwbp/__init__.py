"""Helpers shared by the breakpoint-core tests and its consumers' tests."""

from __future__ import annotations

import pytest

from gdbstub.hwbp import HwBreakpointError


def expect_errno(errno: int, fn, *args, **kw) -> HwBreakpointError:
    """Call `fn`, which must refuse with HwBreakpointError(errno); the error, for more checks."""
    with pytest.raises(HwBreakpointError) as info:
        fn(*args, **kw)
    assert info.value.errno == errno, info.value
    return info.value
