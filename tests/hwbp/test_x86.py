"""x86 parse rules, DR7 encode/decode, and the DR0-3/DR6/DR7 image."""

from __future__ import annotations

from errno import EBUSY, EINVAL, EOPNOTSUPP

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdbstub.hwbp import (
    HW_BREAKPOINT_EMPTY,
    HW_BREAKPOINT_INVALID,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    BreakpointAttr,
    BreakpointCore,
    Hit,
    HwBreakpointError,
    WatchSlot,
)
from gdbstub.hwbp.x86 import (
    DR6_RESERVED,
    DR7_FIXED_1,
    X86_BREAKPOINT_EXECUTE,
    X86_BREAKPOINT_LEN_1,
    X86_BREAKPOINT_LEN_2,
    X86_BREAKPOINT_LEN_4,
    X86_BREAKPOINT_LEN_8,
    X86_BREAKPOINT_LEN_X,
    X86_BREAKPOINT_RW,
    X86_BREAKPOINT_WRITE,
    X86DebugArch,
    arch_bp_generic_fields,
    decode_dr7,
    encode_dr7,
    hw_breakpoint_arch_parse,
)

A = 0x404020  # 32-byte aligned
TOP = 1 << 64
W, RW, R, X = HW_BREAKPOINT_W, HW_BREAKPOINT_RW, HW_BREAKPOINT_R, HW_BREAKPOINT_X

# (addr, len, type) -> errno (None: accepted), and a fragment of the message.
PARSE_TABLE = [
    (A, 1, W, None, ""),
    (A + 1, 1, W, None, ""),
    (A + 2, 2, W, None, ""),
    (A + 1, 2, W, EINVAL, "length 2 needs 2-byte alignment"),
    (A + 4, 4, RW, None, ""),
    (A + 2, 4, W, EINVAL, "length 4 needs 4-byte alignment"),
    (A + 8, 8, RW, None, ""),
    (A + 4, 8, W, EINVAL, "length 8 needs 8-byte alignment"),
    (A, 4, R, EINVAL, "x86 has no read-only watchpoints"),
    (A + 3, 8, X, None, ""),  # execute: any address
    (A, 1, X, EINVAL, "execute breakpoints need length 8"),
    (A, 4, X, EINVAL, "execute breakpoints need length 8"),
    (A, 16, W, EOPNOTSUPP, "BPEXT"),
    (A, 32, RW, EOPNOTSUPP, "BPEXT"),
    (A + 8, 16, W, EINVAL, "length 16 needs 16-byte alignment"),
    (A, 3, W, EINVAL, "not 1, 2, 4 or 8"),
    (A, 0, W, EINVAL, "not 1, 2, 4 or 8"),
    (TOP - 4, 8, W, EINVAL, "wraps"),
    (TOP - 4, 8, X, EINVAL, "wraps"),
    (TOP - 8, 8, W, None, ""),
    (A, 4, X | W, EINVAL, "no x86 encoding"),
    (A, 4, X | R, EINVAL, "no x86 encoding"),
    (A, 4, HW_BREAKPOINT_EMPTY, EINVAL, ""),
    (A, 4, HW_BREAKPOINT_INVALID, EINVAL, ""),
    (-8, 4, W, EINVAL, "outside"),
]


@pytest.mark.parametrize(("addr", "length", "bp_type", "errno", "fragment"), PARSE_TABLE)
def test_parse_table(addr, length, bp_type, errno, fragment):
    attr = BreakpointAttr(bp_addr=addr, bp_len=length, bp_type=bp_type)
    core = BreakpointCore(X86DebugArch(), ncpus=1)
    if errno is None:
        info = hw_breakpoint_arch_parse(attr)
        assert info.address == addr
        bp = core.register(attr, 0)
        assert core.enforced_slots(0) == [WatchSlot(0, addr, 1 if bp_type == X else length, bp_type)]
        assert bp.info == info
        return
    with pytest.raises(HwBreakpointError) as direct:
        hw_breakpoint_arch_parse(attr)
    with pytest.raises(HwBreakpointError) as via_core:
        core.register(attr, 0)
    assert direct.value.errno == via_core.value.errno == errno
    assert fragment in str(direct.value)
    assert not core.is_used()


def test_parse_codes():
    assert hw_breakpoint_arch_parse(BreakpointAttr(A, 8, X)).len == X86_BREAKPOINT_LEN_X
    assert hw_breakpoint_arch_parse(BreakpointAttr(A, 8, X)).type == X86_BREAKPOINT_EXECUTE
    assert hw_breakpoint_arch_parse(BreakpointAttr(A, 2, W)).len == X86_BREAKPOINT_LEN_2
    assert hw_breakpoint_arch_parse(BreakpointAttr(A, 4, RW)).type == X86_BREAKPOINT_RW


# Shadow values (before the fixed bit 10), from linux-hw-breakpoint.md §3.3.
ENCODE_TABLE = [
    (0, X86_BREAKPOINT_LEN_4, X86_BREAKPOINT_WRITE, 0x000D0202),
    (1, X86_BREAKPOINT_LEN_8, X86_BREAKPOINT_RW, 0x00B00208),
    (2, X86_BREAKPOINT_LEN_1, X86_BREAKPOINT_WRITE, 0x01000220),
    (3, X86_BREAKPOINT_LEN_X, X86_BREAKPOINT_EXECUTE, 0x00000280),
    (0, X86_BREAKPOINT_LEN_2, X86_BREAKPOINT_RW, 0x00070202),
]


@pytest.mark.parametrize(("slot", "len_code", "type_code", "dr7"), ENCODE_TABLE)
def test_encode_dr7_table(slot, len_code, type_code, dr7):
    assert encode_dr7(slot, len_code, type_code) == dr7
    assert X86DebugArch.encode_dr7(slot, len_code, type_code) == dr7


@pytest.mark.parametrize(("slot", "len_code", "type_code", "dr7"), ENCODE_TABLE)
def test_decode_dr7_table(slot, len_code, type_code, dr7):
    assert tuple(decode_dr7(dr7, slot)) == (2, len_code, type_code)
    assert decode_dr7(dr7 | DR7_FIXED_1, slot).enabled == 2


def test_two_slots_together():
    both = encode_dr7(0, X86_BREAKPOINT_LEN_4, X86_BREAKPOINT_WRITE) | encode_dr7(
        1, X86_BREAKPOINT_LEN_8, X86_BREAKPOINT_RW
    )
    assert both == 0x00BD020A
    assert tuple(decode_dr7(both, 0)) == (2, X86_BREAKPOINT_LEN_4, X86_BREAKPOINT_WRITE)
    assert tuple(decode_dr7(both, 1)) == (2, X86_BREAKPOINT_LEN_8, X86_BREAKPOINT_RW)
    assert decode_dr7(both, 2).enabled == 0


LEN_CODES = st.sampled_from([X86_BREAKPOINT_LEN_1, X86_BREAKPOINT_LEN_2, X86_BREAKPOINT_LEN_4, X86_BREAKPOINT_LEN_8])
TYPE_CODES = st.sampled_from([X86_BREAKPOINT_EXECUTE, X86_BREAKPOINT_WRITE, X86_BREAKPOINT_RW])


@given(slot=st.integers(0, 3), len_code=LEN_CODES, type_code=TYPE_CODES, other=st.integers(0, 3))
def test_decode_of_encode_is_identity(slot, len_code, type_code, other):
    dr7 = encode_dr7(slot, len_code, type_code)
    assert tuple(decode_dr7(dr7, slot)) == (2, len_code, type_code)
    if other != slot:
        assert decode_dr7(dr7, other).enabled == 0


@given(
    addr=st.integers(0, (1 << 47) - 64),
    length=st.sampled_from([1, 2, 4, 8]),
    bp_type=st.sampled_from([W, RW, X]),
)
def test_generic_fields_of_parse_is_identity(addr, length, bp_type):
    if bp_type == X:
        length = 8
    else:
        addr &= ~(length - 1)
    info = hw_breakpoint_arch_parse(BreakpointAttr(addr, length, bp_type))
    assert arch_bp_generic_fields(info.len, info.type) == (length, bp_type)


# --- the register image -----------------------------------------------------------------


def make_core(ncpus: int = 1) -> BreakpointCore:
    return BreakpointCore(X86DebugArch(), ncpus=ncpus)


def test_reset_image():
    regs = X86DebugArch().new_registers()
    assert (regs.dr, regs.dr6, regs.dr7) == ([0, 0, 0, 0], 0xFFFF0FF0, 0x400)


def test_install_uninstall_sequence():
    core = make_core()
    regs = core.registers(0)
    first = core.register(BreakpointAttr(0x404028, 4, W), 0)
    assert regs.dr7 == 0x000D0602 and regs.dr[0] == 0x404028
    second = core.register(BreakpointAttr(0x404030, 8, RW), 0)
    assert regs.dr7 == 0x00BD060A and regs.dr[1] == 0x404030
    core.unregister(first)
    assert regs.dr7 == 0x00B00608  # slot 0 gone, GE kept
    third = core.register(BreakpointAttr(0x401003, 8, X), 0)
    assert core.slot_of(third, 0) == 0  # the first free DR
    assert regs.dr7 == 0x00B0060A and regs.dr[0] == 0x401003  # X in slot 0: G0, LEN/RW 00
    core.unregister(second)
    core.unregister(third)
    assert regs.dr7 == 0x600


def test_enforced_slots_decode_the_bits():
    core = make_core()
    core.register(BreakpointAttr(0x404028, 4, W), 0)
    core.register(BreakpointAttr(0x401003, 8, X), 0)
    core.register(BreakpointAttr(0x404031, 1, RW), 0)
    assert core.enforced_slots(0) == [
        WatchSlot(0, 0x404028, 4, W),
        WatchSlot(1, 0x401003, 1, X),
        WatchSlot(2, 0x404031, 1, RW),
    ]
    regs = core.registers(0)
    regs.dr7 &= ~0x2  # clear G0 by hand: slot 0 is no longer enforced
    assert [s.index for s in core.enforced_slots(0)] == [1, 2]
    regs.dr7 |= 0x1  # L0 alone enables it too
    assert [s.index for s in core.enforced_slots(0)] == [0, 1, 2]
    regs.dr[0] = 0x404029  # the CPU ignores address bits below LEN
    assert core.enforced_slots(0)[0].addr == 0x404028
    regs.dr7 |= 0x2 << 28 | 0x80  # R/W3 = 10 (I/O) is never a memory watch
    assert [s.index for s in core.enforced_slots(0)] == [0, 1, 2]


def test_dr6_is_sticky_until_cleared():
    core = make_core()
    core.register(BreakpointAttr(0x404028, 4, W), 0)
    hit = Hit(cpu=0, task=None, ip=0x401000, addr=0x404028, size=4, access=W, slots=(2,))
    core.deliver(hit)
    assert core.registers(0).dr6 == 0xFFFF0FF4  # B2 even though DR2 is unused
    core.deliver(Hit(0, None, 0x401000, 0x404028, 4, W, slots=(0,)))
    assert core.registers(0).dr6 == 0xFFFF0FF5
    core.clear_dr6(0)
    assert core.registers(0).dr6 == DR6_RESERVED


def test_full_register_file_is_ebusy():
    arch = X86DebugArch()
    core = make_core()
    bps = [core.register(BreakpointAttr(0x404000 + 8 * i, 8, W), 0) for i in range(4)]
    with pytest.raises(HwBreakpointError) as info:
        arch.install(core.registers(0), bps[0])
    assert info.value.errno == EBUSY


def test_generic_fields_rejects_bad_codes():
    for len_code, type_code in [(X86_BREAKPOINT_LEN_4, X86_BREAKPOINT_EXECUTE), (X86_BREAKPOINT_LEN_4, 0x82)]:
        with pytest.raises(HwBreakpointError) as info:
            arch_bp_generic_fields(len_code, type_code)
        assert info.value.errno == EINVAL
