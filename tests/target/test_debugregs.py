"""Data and execute debug-register slots on the emulated CPU (Intel SDM Vol. 3B §17.3).

Every program is hand-assembled (tests/target/asm.py) and runs on a raw
Unicorn instance; each test checks memory and registers after the stop, and
that the watched instruction ran exactly once.
"""

from __future__ import annotations

import functools
import struct

import pytest
from unicorn import UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, UC_PROT_WRITE
from unicorn.x86_const import (
    UC_X86_REG_FPSW, UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RSP,
)

from gdbstub.hwbp.attr import (
    HW_BREAKPOINT_R, HW_BREAKPOINT_RW, HW_BREAKPOINT_W, HW_BREAKPOINT_X, Hit, WatchSlot,
)
from gdbstub.target.cpu import Cpu
from gdbstub.target.debugregs import WatchMode, pages_of, slot_matches
from gdbstub.target.events import SIGSEGV, SIGTRAP, StopKind, WatchHit
from tests.target.asm import CODE_BASE, DATA_BASE, STACK_TOP, RawProgram, assemble, counted_loop

X = DATA_BASE + 0x100        # the watched variable of most programs


class Recorder:
    """on_debug_exception that records every Hit and answers `stop`."""

    def __init__(self, stop: bool = True) -> None:
        self.hits: list[Hit] = []
        self.stop = stop

    def __call__(self, hit: Hit) -> bool:
        self.hits.append(hit)
        return self.stop


def build_cpu(source: str, slots: list[WatchSlot], mode: WatchMode, stop: bool = True,
              start: str | None = None, protect: dict[int, int] | None = None):
    """`protect`: page -> the guest's own permissions for it, set before the Cpu is built."""
    prog = RawProgram(f".set X, {X:#x}\n" + source, start=start)
    for page, perms in (protect or {}).items():
        prog.uc.mem_protect(page, 0x1000, perms)
    cpu = Cpu(prog.uc, watch_mode=mode)
    rec = Recorder(stop)
    cpu.on_debug_exception = rec
    cpu.set_debug_slots(slots)
    return prog, cpu, rec


@pytest.fixture(params=[WatchMode.PROTECT, WatchMode.HOOK], ids=lambda mode: mode.value)
def mode(request) -> WatchMode:
    """Every semantic test runs with page protection and again with every watched page hooked."""
    return request.param


@pytest.fixture
def make_cpu(mode: WatchMode):
    """make_cpu(source, slots, stop=True, start=None, protect=None) -> (program, cpu, recorder)."""
    return functools.partial(build_cpu, mode=mode)


def rep_stosq_at_x(count: int, value: int) -> str:
    """`rep stosq` of `count` qwords of `value` from X, labelled `insn`, then int3 at `next`."""
    return f"""
        mov rdi, X
        mov rcx, {count}
        mov rax, {value}
    insn:
        rep stosq
    next:
        int3
    """


def assert_python_stops(cpu: Cpu, mode: WatchMode, stops: int) -> None:
    """The slots cost exactly `stops` Python-level stops, of the kind the mode uses."""
    stats = cpu.watch_statistics()
    expected = {WatchMode.PROTECT: (stops, 0), WatchMode.HOOK: (0, stops)}[mode]
    assert (stats.protection_faults, stats.hook_stops) == expected


def q(cpu: Cpu, addr: int) -> int:
    return struct.unpack("<Q", cpu.read_memory(addr, 8))[0]


def reg(cpu: Cpu, reg_id: int) -> int:
    return cpu.uc.reg_read(reg_id)


def page_perms(cpu: Cpu) -> dict[int, int]:
    """Unicorn's permission of each region, with the slots in force (inspecting the CPU applies them)."""
    cpu.debug_slots             # noqa: B018 (reading it applies pending slots)
    return {b: p for b, _, p in cpu.uc.mem_regions()}


def w(addr: int, length: int, index: int = 0, access: int = HW_BREAKPOINT_W) -> WatchSlot:
    return WatchSlot(index, addr, length, access)


# ---- matching rule (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize("addr,size,access,expected", [
    (X, 4, HW_BREAKPOINT_W, True),             # exact
    (X - 4, 8, HW_BREAKPOINT_W, True),         # starts before, overlaps the first 4 bytes
    (X + 3, 8, HW_BREAKPOINT_W, True),         # last byte of the slot
    (X - 4, 4, HW_BREAKPOINT_W, False),        # adjacent below
    (X + 4, 4, HW_BREAKPOINT_W, False),        # adjacent above
    (X - 8, 16, HW_BREAKPOINT_W, True),        # covers the slot entirely
    (X + 1, 1, HW_BREAKPOINT_W, True),         # inside
    (X, 4, HW_BREAKPOINT_R, False),            # a W slot ignores reads
])
def test_slot_matches_overlap_table(addr, size, access, expected):
    assert slot_matches(w(X, 4), addr, size, access) is expected


@pytest.mark.parametrize("slot_access,access,expected", [
    (HW_BREAKPOINT_W, HW_BREAKPOINT_W, True), (HW_BREAKPOINT_W, HW_BREAKPOINT_R, False),
    (HW_BREAKPOINT_RW, HW_BREAKPOINT_W, True), (HW_BREAKPOINT_RW, HW_BREAKPOINT_R, True),
    (HW_BREAKPOINT_R, HW_BREAKPOINT_R, True), (HW_BREAKPOINT_R, HW_BREAKPOINT_W, False),
    (HW_BREAKPOINT_X, HW_BREAKPOINT_R, False),
])
def test_slot_matches_access_kinds(slot_access, access, expected):
    assert slot_matches(w(X, 8, access=slot_access), X, 8, access) is expected


def test_pages_of_a_range_crossing_a_page():
    assert list(pages_of(0x600ffc, 8)) == [0x600000, 0x601000]
    assert list(pages_of(0x600ff8, 8)) == [0x600000]


# ---- trap semantics on single instructions ------------------------------------------------------
def test_add_traps_after_the_instruction_ran_once(make_cpu, mode):
    prog, cpu, rec = make_cpu("""
    insn:
        add qword ptr [X], 1
    next:
        int3
    """, [w(X, 8)])
    cpu.write_memory(X, struct.pack("<Q", 41))
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.signal == SIGTRAP
    assert stop.pc == prog["next"]
    assert stop.watches == (WatchHit(X, 8, HW_BREAKPOINT_W, 0),)
    assert q(cpu, X) == 42
    # Hit: the instruction's address, the (first) matching access
    assert [(h.ip, h.addr, h.size, h.access, h.slots) for h in rec.hits] == \
        [(prog["insn"], X, 8, HW_BREAKPOINT_W, (0,))]
    stop = cpu.run()
    assert (stop.kind, stop.signal, stop.pc) == (StopKind.SIGNAL, SIGTRAP, prog["next"] + 1)
    assert q(cpu, X) == 42
    assert_python_stops(cpu, mode, 1)


def test_rmw_with_an_access_slot_gives_one_hit_for_read_and_write(make_cpu):
    prog, cpu, rec = make_cpu("""
    insn:
        add dword ptr [X], 5
    next:
        int3
    """, [w(X, 4, access=HW_BREAKPOINT_RW)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert len(rec.hits) == 1
    assert rec.hits[0].access == HW_BREAKPOINT_R      # the first matching access is the read
    assert stop.watches == (WatchHit(X, 4, HW_BREAKPOINT_RW, 0),)
    assert q(cpu, X) == 5


def test_push_onto_a_watched_stack_slot(make_cpu):
    prog, cpu, rec = make_cpu("""
        mov rax, 0x1122334455667788
    insn:
        push rax
    next:
        int3
    """, [w(STACK_TOP - 0x108, 8)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert reg(cpu, UC_X86_REG_RSP) == STACK_TOP - 0x108
    assert q(cpu, STACK_TOP - 0x108) == 0x1122334455667788
    assert rec.hits[0].ip == prog["insn"]


def test_call_traps_on_the_return_address_push_at_the_callee(make_cpu):
    prog, cpu, rec = make_cpu("""
    insn:
        call callee
    ret_here:
        int3
    callee:
        int3
    """, [w(STACK_TOP - 0x108, 8)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH
    assert stop.pc == prog["callee"]                  # RIP is where the call went
    assert q(cpu, STACK_TOP - 0x108) == prog["ret_here"]
    assert rec.hits[0].ip == prog["insn"]


def test_xchg_reads_and_writes_once(make_cpu):
    prog, cpu, rec = make_cpu("""
        mov rax, 9
    insn:
        xchg qword ptr [X], rax
    next:
        int3
    """, [w(X, 8, access=HW_BREAKPOINT_RW)])
    cpu.write_memory(X, struct.pack("<Q", 7))
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert (q(cpu, X), reg(cpu, UC_X86_REG_RAX)) == (9, 7)
    assert len(rec.hits) == 1


def test_lock_cmpxchg_success_writes_once(make_cpu):
    prog, cpu, rec = make_cpu("""
        mov rax, 3
        mov rcx, 8
    insn:
        lock cmpxchg qword ptr [X], rcx
    next:
        int3
    """, [w(X, 8)])
    cpu.write_memory(X, struct.pack("<Q", 3))
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert q(cpu, X) == 8
    assert len(rec.hits) == 1 and rec.hits[0].ip == prog["insn"]


def test_sse_store_over_a_watch_in_its_middle(make_cpu):
    prog, cpu, rec = make_cpu("""
        mov rax, 0x0101010101010101
        movq xmm0, rax
        punpcklqdq xmm0, xmm0
    insn:
        movdqu xmmword ptr [X], xmm0
    next:
        int3
    """, [w(X + 8, 4)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert cpu.read_memory(X, 16) == b"\x01" * 16
    assert len(rec.hits) == 1
    hit = rec.hits[0]
    assert hit.addr <= X + 8 < hit.addr + hit.size and hit.access == HW_BREAKPOINT_W


def test_rep_stosq_traps_after_the_iteration_that_wrote_the_range(make_cpu):
    # 4 qwords from X; the watch covers the third one.
    prog, cpu, rec = make_cpu(rep_stosq_at_x(count=4, value=-1), [w(X + 16, 8)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH
    # Hardware: RIP still at the REP instruction, RCX counts the iterations left.
    assert stop.pc == prog["insn"]
    assert reg(cpu, UC_X86_REG_RCX) == 1
    assert reg(cpu, UC_X86_REG_RDI) == X + 24
    assert [q(cpu, X + 8 * i) for i in range(4)] == [2**64 - 1] * 3 + [0]
    assert rec.hits[0].ip == prog["insn"] and rec.hits[0].addr == X + 16
    stop = cpu.run()
    assert (stop.kind, stop.pc) == (StopKind.SIGNAL, prog["next"] + 1)
    assert [q(cpu, X + 8 * i) for i in range(4)] == [2**64 - 1] * 4
    assert len(rec.hits) == 1


def test_rep_stosq_trap_on_the_last_iteration_leaves_the_instruction(make_cpu):
    prog, cpu, rec = make_cpu(rep_stosq_at_x(count=3, value=2), [w(X + 16, 8)])
    stop = cpu.run()
    assert (stop.kind, stop.pc) == (StopKind.WATCH, prog["next"])
    assert (reg(cpu, UC_X86_REG_RCX), reg(cpu, UC_X86_REG_RDI)) == (0, X + 24)
    assert [q(cpu, X + 8 * i) for i in range(4)] == [2, 2, 2, 0]


def test_rep_movsb_traps_per_iteration_on_the_source_with_an_access_slot(make_cpu):
    prog, cpu, rec = make_cpu(f"""
        mov rsi, X
        mov rdi, {X + 0x100:#x}
        mov rcx, 8
    insn:
        rep movsb
    next:
        int3
    """, [w(X + 2, 2, access=HW_BREAKPOINT_RW)])
    cpu.write_memory(X, bytes(range(1, 9)))
    stops = [cpu.run() for _ in range(3)]
    assert [s.kind for s in stops] == [StopKind.WATCH, StopKind.WATCH, StopKind.SIGNAL]
    assert [s.pc for s in stops[:2]] == [prog["insn"]] * 2
    assert [h.addr for h in rec.hits] == [X + 2, X + 3]
    assert all(h.access == HW_BREAKPOINT_R for h in rec.hits)
    assert cpu.read_memory(X + 0x100, 8) == bytes(range(1, 9))
    assert (reg(cpu, UC_X86_REG_RCX), reg(cpu, UC_X86_REG_RSI)) == (0, X + 8)


def test_rep_movsb_trap_leaves_rcx_rsi_rdi_as_hardware_does(make_cpu):
    prog, cpu, rec = make_cpu(f"""
        mov rsi, {X + 0x100:#x}
        mov rdi, X
        mov rcx, 8
    insn:
        rep movsb
        int3
    """, [w(X + 5, 1)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["insn"]
    assert (reg(cpu, UC_X86_REG_RCX), reg(cpu, UC_X86_REG_RSI), reg(cpu, UC_X86_REG_RDI)) == \
        (2, X + 0x106, X + 6)


def test_locked_read_modify_writes_run_once(make_cpu, mode):
    # (a hook stops `lock add` after its store is in memory: the stop must be undone exactly)
    prog, cpu, rec = make_cpu("""
        mov rax, 5
    add:
        lock add qword ptr [X], 1
    xadd:
        lock xadd qword ptr [X], rax
    next:
        int3
    """, [w(X, 8)])
    cpu.write_memory(X, struct.pack("<Q", 10))
    assert (cpu.run().pc, q(cpu, X)) == (prog["xadd"], 11)
    assert (cpu.run().pc, q(cpu, X), reg(cpu, UC_X86_REG_RAX)) == (prog["next"], 16, 11)
    assert [h.ip for h in rec.hits] == [prog["add"], prog["xadd"]]
    assert_python_stops(cpu, mode, 2)


# Every instruction Unicorn 2.1.4 stores in a C helper (gdbstub/target/helper_stores.py), plus one
# helper load.  (instruction, slot offset from X, slot length, access)
HELPER_INSTRUCTIONS = [
    ("fstp tbyte ptr [X]", 8, 2, HW_BREAKPOINT_W),         # x87 80-bit store: 8 + 2 bytes
    ("fld tbyte ptr [X]", 8, 2, HW_BREAKPOINT_RW),
    ("fbstp tbyte ptr [X]", 8, 2, HW_BREAKPOINT_W),        # packed BCD, 10 bytes
    ("fnsave [X]", 96, 8, HW_BREAKPOINT_W),                # 108 bytes; the slot on st(7)'s image
    ("fnstenv [X]", 24, 4, HW_BREAKPOINT_W),               # 28 bytes
    ("fxsave [X]", 160, 8, HW_BREAKPOINT_W),               # 512 bytes; the slot on xmm0's image
    ("xsave [X]", 160, 8, HW_BREAKPOINT_W),
    ("xsaveopt [X]", 160, 8, HW_BREAKPOINT_W),
    ("lock cmpxchg16b xmmword ptr [X]", 8, 8, HW_BREAKPOINT_W),
    ("lock cmpxchg8b qword ptr [X]", 4, 4, HW_BREAKPOINT_W),
    ("maskmovdqu xmm0, xmm1", 0, 8, HW_BREAKPOINT_W),      # stores to [rdi] = X
]


@pytest.mark.parametrize("insn,slot_offset,length,access", HELPER_INSTRUCTIONS)
def test_instructions_done_in_a_c_helper_trap_after_themselves(make_cpu, mode, insn, slot_offset, length,
                                                               access):
    # Their accesses happen inside one C call, where a hook's stop cannot land, and a store there to
    # a write-protected page would be dropped (see debugregs.py and cpu.py).
    prog, cpu, rec = make_cpu(f"""
        fld1
        mov rbx, 0x2222
        mov rcx, 0x3333
        mov rdi, X
        mov r8, -1
        movq xmm1, r8
        mov eax, 0x1113
        xor edx, edx
        movq xmm0, rcx
    insn:
        {insn}
    next:
        int3
    """, [w(X + slot_offset, length, access=access)])
    # cmpxchg: edx:eax / rdx:rax match, so it stores; xsave: eax's bits 0-1 save x87 and SSE state
    cpu.write_memory(X, struct.pack("<QQ", 0x1113, 0))
    stop = cpu.run()
    assert (stop.kind, stop.pc) == (StopKind.WATCH, prog["next"])
    assert [h.ip for h in rec.hits] == [prog["insn"]]
    assert X + slot_offset - 8 < rec.hits[0].addr < X + slot_offset + length
    if "cmpxchg16b" in insn:
        assert cpu.read_memory(X, 16) == struct.pack("<QQ", 0x2222, 0x3333)
    if "cmpxchg8b" in insn:
        assert q(cpu, X) == 0x3333 << 32 | 0x2222
    if insn.startswith(("fxsave", "xsave")):
        assert q(cpu, X + 160) == 0x3333
    if "fnsave" in insn:        # st(0) = 1.0 after the 28-byte environment
        assert cpu.read_memory(X + 28, 10) == bytes.fromhex("0000000000000080ff3f")
    if "fstp" in insn:          # 1.0 as an 80-bit float
        assert cpu.read_memory(X, 10) == bytes.fromhex("0000000000000080ff3f")
    if "stp" in insn:          # popped once: the x87 stack top is back where it started
        assert (reg(cpu, UC_X86_REG_FPSW) >> 11) & 7 == 0
    if "maskmovdqu" in insn:    # xmm1's mask selects xmm0's low 8 bytes
        assert cpu.read_memory(X, 16) == struct.pack("<QQ", 0x3333, 0)
    assert cpu.run().signal == SIGTRAP and len(rec.hits) == 1
    assert_python_stops(cpu, mode, 1)


def test_a_stepped_helper_store_traps_once(make_cpu, mode):
    prog, cpu, rec = make_cpu("""
        fld1
    insn:
        fstp tbyte ptr [X]
    next:
        int3
    """, [w(X, 8)])
    assert cpu.run(step=True).kind is StopKind.STEP
    stop = cpu.run(step=True)
    assert (stop.kind, stop.pc, [h.ip for h in rec.hits]) == (StopKind.WATCH, prog["next"], [prog["insn"]])
    assert cpu.read_memory(X, 10) == bytes.fromhex("0000000000000080ff3f")
    assert (reg(cpu, UC_X86_REG_FPSW) >> 11) & 7 == 0         # popped once


def test_helper_stores_in_a_loop_each_trap_once():
    # The stop before each fxsave lands mid-block, between two accesses to the watched page.
    prog, cpu, rec = build_cpu("""
        mov rcx, 50
    loop:
        add qword ptr [X + 8], 1
    insn:
        fxsave [X + 512]
        add qword ptr [X + 16], 1
        dec rcx
        jnz loop
        int3
    """, [w(X + 512 + 160, 8)], WatchMode.PROTECT, stop=False)
    assert cpu.run().signal == SIGTRAP
    assert (q(cpu, X + 8), q(cpu, X + 16)) == (50, 50)
    assert [h.ip for h in rec.hits] == [prog["insn"]] * 50


@pytest.mark.parametrize("target,slot", [
    (DATA_BASE + 0x3000, DATA_BASE + 0x3000 + 160),   # a page the program made read-only
    (DATA_BASE - 0x100, DATA_BASE + 8),               # from the unmapped page below into a watched one
])
def test_a_helper_store_the_program_may_not_make_faults_before_it(target, slot):
    # Unicorn would drop the store and go on; Linux stops at the instruction, nothing done.
    prog, cpu, rec = build_cpu(f"""
        fld1
    insn:
        fxsave [{target:#x}]
        fstp tbyte ptr [{target:#x}]
        int3
    """, [w(slot, 8)], WatchMode.PROTECT, protect={DATA_BASE + 0x3000: UC_PROT_READ})
    before = cpu.read_memory(DATA_BASE, 0x4000)
    stop = cpu.run()
    assert (stop.kind, stop.signal, stop.pc, stop.fault_addr) == (StopKind.SIGNAL, SIGSEGV, prog["insn"], target)
    assert rec.hits == [] and cpu.read_memory(DATA_BASE, 0x4000) == before


def test_an_xsave_that_ends_just_before_an_unmapped_page_is_no_fault():
    end = DATA_BASE + 0x4000                        # the data area's end: unmapped above
    prog, cpu, rec = build_cpu(f"""
        mov eax, 3
        xor edx, edx
    insn:
        xsave [{end - 576:#x}]
    next:
        int3
    """, [w(end - 576 + 160, 8)], WatchMode.PROTECT)
    stop = cpu.run()
    assert (stop.kind, stop.pc, [h.ip for h in rec.hits]) == (StopKind.WATCH, prog["next"], [prog["insn"]])


def test_a_helper_store_the_debugger_patches_in_is_watched_too():
    prog, cpu, rec = build_cpu("""
        int3
    insn:
        .fill 8, 1, 0x90
    next:
        int3
    """, [w(X + 160, 8)], WatchMode.PROTECT)
    assert cpu.run().signal == SIGTRAP and rec.hits == []       # the code has been scanned: no fxsave
    cpu.write_memory(prog["insn"], assemble(f"fxsave [{X:#x}]").code)     # 8 bytes
    stop = cpu.run()
    assert (stop.kind, stop.pc, [h.ip for h in rec.hits]) == (StopKind.WATCH, prog["next"], [prog["insn"]])


def test_only_helper_stores_that_may_reach_a_protected_page_are_hooked():
    # A global's fixed address on another page needs no hook; a register-addressed store might.
    prog, cpu, rec = build_cpu("""
        fstp tbyte ptr [X + 0x1000]
        fstp tbyte ptr [rdi]
        fstp tbyte ptr [rip + 0x1000]
        int3
    """, [w(X, 8)], WatchMode.PROTECT)
    assert cpu.hook_counts["code"] == 1
    cpu.set_debug_slots([w(X + 0x1000, 8)])
    assert cpu.hook_counts["code"] == 2


def test_a_helper_store_elsewhere_does_not_stop(make_cpu, mode):
    # fxsave to another page than the slot's: no stop before it, no fault, no hit.
    prog, cpu, rec = make_cpu("""
        mov rcx, 20
    loop:
        fxsave [X + 0x1000]
        dec rcx
        jnz loop
        int3
    """, [w(X, 8)])
    assert cpu.run().signal == SIGTRAP and rec.hits == []
    assert_python_stops(cpu, mode, 0)


# ---- the overlap table, executed ----------------------------------------------------------------
@pytest.mark.parametrize("offset,width,hits", [
    (-4, "qword", 1),      # 8-byte write starting 4 bytes before a 4-byte watch
    (0, "dword", 1),
    (2, "word", 1),
    (3, "qword", 1),       # last watched byte
    (-4, "dword", 0),      # adjacent below
    (4, "dword", 0),       # adjacent above
    (-8, "qword", 0),
])
def test_overlap_table_on_real_writes(offset, width, hits, make_cpu):
    prog, cpu, rec = make_cpu(f"""
        mov {width} ptr [{X + offset:#x}], 0x5a
        int3
    """, [w(X, 4)])
    stop = cpu.run()
    assert len(rec.hits) == hits
    assert stop.kind is (StopKind.WATCH if hits else StopKind.SIGNAL)


def test_access_kinds_on_real_reads_and_writes(make_cpu):
    source = """
        mov rax, qword ptr [X]
    after_read:
        mov qword ptr [X], rax
    after_write:
        int3
    """
    expected = {
        HW_BREAKPOINT_W: ["after_write"],
        HW_BREAKPOINT_R: ["after_read"],
        HW_BREAKPOINT_RW: ["after_read", "after_write"],
    }
    for access, labels in expected.items():
        prog, cpu, rec = make_cpu(source, [w(X, 8, access=access)])
        pcs = []
        while (stop := cpu.run()).kind is StopKind.WATCH:
            pcs.append(stop.pc)
        assert pcs == [prog[label] for label in labels], access


def test_two_slots_one_instruction_give_one_hit_with_both(make_cpu):
    prog, cpu, rec = make_cpu("""
        mov qword ptr [X], 1
    next:
        int3
    """, [w(X, 4, index=0), w(X + 4, 4, index=2)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert len(rec.hits) == 1 and rec.hits[0].slots == (0, 2)
    assert {h.slot for h in stop.watches} == {0, 2}


def test_slots_on_two_pages_and_an_access_crossing_the_page_boundary(make_cpu):
    boundary = DATA_BASE + 0x1000
    prog, cpu, rec = make_cpu(f"""
        mov qword ptr [{boundary - 4:#x}], -1
    next:
        int3
    """, [w(boundary, 4)])
    stop = cpu.run()
    assert stop.kind is StopKind.WATCH and stop.pc == prog["next"]
    assert q(cpu, boundary - 4) == 2**64 - 1
    assert rec.hits[0].addr == boundary - 4 and rec.hits[0].size == 8


def test_non_stopping_handler_sees_every_hit_and_the_result_is_unchanged(make_cpu, mode):
    source = """
        mov rcx, 100
    loop:
        add qword ptr [X], 3
        mov rax, qword ptr [X]
        dec rcx
        jnz loop
        int3
    """
    prog, cpu, rec = make_cpu(source, [w(X, 8)], stop=False)
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP)
    assert len(rec.hits) == 100
    assert q(cpu, X) == 300
    assert_python_stops(cpu, mode, 100)          # a W slot: the loop's reads cost nothing


def test_false_sharing_page_neighbours_run_on_untouched(make_cpu):
    # The watch shares a page with the loop's counter, which it never matches.
    prog, cpu, rec = make_cpu(counted_loop(50), [w(X + 64, 8, access=HW_BREAKPOINT_RW)])
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP)
    assert rec.hits == [] and q(cpu, X) == 50


CODE_PAGE_LOOP = """
    mov rcx, 5
loop:
    {insn}
    dec rcx
    jnz loop
    int3
.balign 8
var:
    .quad 0x77
"""


def test_code_on_a_write_watched_page_still_runs(make_cpu, mode):
    # The watched variable lives in the code page itself, made writable.
    prog, cpu, rec = make_cpu(CODE_PAGE_LOOP.format(insn="add qword ptr [rip + var], 1"), [],
                              protect={CODE_BASE: UC_PROT_READ | UC_PROT_WRITE | UC_PROT_EXEC})
    cpu.set_debug_slots([w(prog["var"], 8)])
    # protection takes WRITE away; a hooked page keeps the guest's permissions
    expected = {WatchMode.PROTECT: UC_PROT_READ | UC_PROT_EXEC, WatchMode.HOOK: UC_PROT_ALL}[mode]
    assert page_perms(cpu)[CODE_BASE] == expected
    stops = [cpu.run() for _ in range(6)]
    assert [s.kind for s in stops] == [StopKind.WATCH] * 5 + [StopKind.SIGNAL]
    assert q(cpu, prog["var"]) == 0x77 + 5


def test_code_on_a_read_watched_page_still_runs(make_cpu):
    prog, cpu, rec = make_cpu(CODE_PAGE_LOOP.format(insn="mov rax, qword ptr [rip + var]"), [])
    cpu.set_debug_slots([w(prog["var"], 8, access=HW_BREAKPOINT_RW)])
    stops = [cpu.run() for _ in range(6)]
    assert [s.kind for s in stops] == [StopKind.WATCH] * 5 + [StopKind.SIGNAL]
    assert [s.pc for s in stops[:2]] == [prog["loop"] + 7] * 2
    assert reg(cpu, UC_X86_REG_RAX) == 0x77 and reg(cpu, UC_X86_REG_RCX) == 0


def test_exec_slot_on_a_read_watched_code_page(make_cpu):
    # Code on the page runs by fetch faults: the execute slot must still fire once per arrival.
    prog, cpu, rec = make_cpu(CODE_PAGE_LOOP.format(insn="nop"), [])
    cpu.set_debug_slots([w(prog["var"], 8, access=HW_BREAKPOINT_RW),
                         WatchSlot(1, prog["loop"], 1, HW_BREAKPOINT_X)])
    stops = [cpu.run() for _ in range(6)]
    assert [s.kind for s in stops] == [StopKind.HWBREAK] * 5 + [StopKind.SIGNAL]
    assert len(rec.hits) == 5


def test_debugger_memory_access_never_triggers_and_works_on_watched_pages(make_cpu):
    prog, cpu, rec = make_cpu("int3", [w(X, 8, access=HW_BREAKPOINT_RW)])
    cpu.write_memory(X, b"\x11" * 8)
    assert cpu.read_memory(X, 8) == b"\x11" * 8
    assert cpu.run().signal == SIGTRAP and rec.hits == []


def test_guest_write_to_its_own_read_only_page_is_sigsegv_even_when_watched(make_cpu):
    prog, cpu, rec = make_cpu(f"""
        mov rax, 1
    insn:
        mov qword ptr [{DATA_BASE + 0x3000:#x}], rax
        int3
    """, [w(DATA_BASE + 0x3000, 8, access=HW_BREAKPOINT_RW)], protect={DATA_BASE + 0x3000: UC_PROT_READ})
    stop = cpu.run()
    assert (stop.kind, stop.signal, stop.pc) == (StopKind.SIGNAL, SIGSEGV, prog["insn"])
    assert rec.hits == [] and q(cpu, DATA_BASE + 0x3000) == 0


def test_clearing_the_slots_restores_the_guest_permissions(make_cpu, mode):
    prog, cpu, rec = make_cpu("int3", [w(X, 8, access=HW_BREAKPOINT_RW), w(CODE_BASE, 8, 1, HW_BREAKPOINT_RW)])
    perms = page_perms(cpu)
    if mode is WatchMode.PROTECT:
        # reads watched on a page that executes: EXEC goes too (see debugregs' docstring)
        assert perms[DATA_BASE] == 0 and perms[CODE_BASE] == 0
    else:
        assert cpu.hook_counts["memory"] == 2 and cpu.watch_statistics().hot_pages == {DATA_BASE, CODE_BASE}
        assert perms[DATA_BASE] == UC_PROT_READ | UC_PROT_WRITE
    cpu.set_debug_slots([])
    perms = page_perms(cpu)
    assert perms[DATA_BASE] == UC_PROT_READ | UC_PROT_WRITE
    assert perms[CODE_BASE] == UC_PROT_READ | UC_PROT_EXEC
    assert cpu.hook_counts["memory"] == 0


def test_handler_can_disarm_its_slot_from_a_data_hit(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(10), [w(X, 8)])

    def one_shot(hit: Hit) -> bool:
        rec.hits.append(hit)
        cpu.set_debug_slots([])
        return False

    cpu.on_debug_exception = one_shot
    stop = cpu.run()
    assert stop.signal == SIGTRAP and len(rec.hits) == 1 and q(cpu, X) == 10


# ---- execute slots: faults with RF semantics ---------------------------------------------------
def test_exec_slot_faults_before_and_resume_runs_the_instruction_once(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [])
    cpu.set_debug_slots([WatchSlot(1, prog["target"], 1, HW_BREAKPOINT_X)])
    counts = []
    for _ in range(3):
        stop = cpu.run()
        assert (stop.kind, stop.pc) == (StopKind.HWBREAK, prog["target"])
        counts.append((q(cpu, X), reg(cpu, UC_X86_REG_RCX)))
    # stopped before `dec rcx` each time: the add ran, the dec not yet
    assert counts == [(1, 3), (2, 2), (3, 1)]
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP)
    assert [h.slots for h in rec.hits] == [(1,)] * 3
    assert all(h.ip == prog["target"] and h.access == HW_BREAKPOINT_X for h in rec.hits)


def test_exec_slot_on_a_one_instruction_loop_stops_on_every_arrival(make_cpu):
    prog, cpu, rec = make_cpu("""
    spin:
        jmp spin
    """, [])
    cpu.set_debug_slots([WatchSlot(0, prog["spin"], 1, HW_BREAKPOINT_X)])
    for _ in range(3):
        stop = cpu.run()
        assert (stop.kind, stop.pc) == (StopKind.HWBREAK, prog["spin"])
    assert len(rec.hits) == 3


def test_non_stopping_exec_handler_counts_every_arrival(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [], stop=False)
    cpu.set_debug_slots([WatchSlot(0, prog["loop"], 1, HW_BREAKPOINT_X)])
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP)
    assert len(rec.hits) == 3 and q(cpu, X) == 3


def test_non_stopping_exec_slot_on_a_watched_instruction_counts_once_per_arrival(make_cpu):
    # The instruction under the execute slot also faults on a watched page:
    # it is re-executed by the watch step, which must not call the handler again.
    prog, cpu, rec = make_cpu(counted_loop(3), [], stop=False)
    cpu.set_debug_slots([WatchSlot(0, prog["loop"], 1, HW_BREAKPOINT_X), w(X, 8, index=1)])
    stop = cpu.run()
    assert stop.signal == SIGTRAP
    assert [h.slots for h in rec.hits] == [(0,), (1,)] * 3
    assert q(cpu, X) == 3


def test_exec_slot_right_after_a_watched_instruction(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [])
    cpu.set_debug_slots([WatchSlot(0, prog["target"], 1, HW_BREAKPOINT_X), w(X, 8, index=1)])
    kinds = [(s.kind, s.pc) for s in (cpu.run() for _ in range(4))]
    assert kinds == [(StopKind.WATCH, prog["target"]), (StopKind.HWBREAK, prog["target"])] * 2
    assert q(cpu, X) == 2


def test_exec_handler_can_arm_a_data_slot_while_running(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [], stop=False)
    exec_slot = WatchSlot(0, prog["loop"], 1, HW_BREAKPOINT_X)
    cpu.set_debug_slots([exec_slot])

    def arm(hit: Hit) -> bool:
        rec.hits.append(hit)
        if hit.access == HW_BREAKPOINT_X:
            cpu.set_debug_slots([w(X, 8, index=1)])     # drops the execute slot
        return False

    cpu.on_debug_exception = arm
    assert cpu.run().signal == SIGTRAP
    assert [h.slots for h in rec.hits] == [(0,), (1,), (1,), (1,)]
    assert q(cpu, X) == 3


# ---- single step over each kind ----------------------------------------------------------------
def test_step_onto_a_watched_write_reports_watch(make_cpu):
    prog, cpu, rec = make_cpu("""
        nop
        add qword ptr [X], 1
    next:
        int3
    """, [w(X, 8)])
    assert cpu.run(step=True).kind is StopKind.STEP
    stop = cpu.run(step=True)
    assert (stop.kind, stop.pc) == (StopKind.WATCH, prog["next"]) and q(cpu, X) == 1


def test_step_with_a_non_stopping_data_handler_reports_step(make_cpu):
    prog, cpu, rec = make_cpu("""
        add qword ptr [X], 1
    next:
        int3
    """, [w(X, 8)], stop=False)
    stop = cpu.run(step=True)
    assert (stop.kind, stop.pc) == (StopKind.STEP, prog["next"]) and len(rec.hits) == 1


def test_step_at_an_exec_slot_faults_then_steps_past_it(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [])
    cpu.set_debug_slots([WatchSlot(0, prog["target"], 1, HW_BREAKPOINT_X)])
    cpu.pc = prog["target"]
    assert (cpu.run(step=True).kind, cpu.pc) == (StopKind.HWBREAK, prog["target"])
    stop = cpu.run(step=True)
    assert (stop.kind, stop.pc) == (StopKind.STEP, prog["target"] + 3)   # dec rcx is 3 bytes
    assert len(rec.hits) == 1


def test_step_one_rep_iteration_at_a_time(make_cpu):
    prog, cpu, rec = make_cpu(rep_stosq_at_x(count=3, value=1), [])
    cpu.pc = prog["insn"]
    cpu.uc.reg_write(UC_X86_REG_RDI, X)
    cpu.uc.reg_write(UC_X86_REG_RCX, 3)
    cpu.uc.reg_write(UC_X86_REG_RAX, 5)
    stops = [cpu.run(step=True) for _ in range(3)]
    assert [s.kind for s in stops] == [StopKind.STEP] * 3
    assert [s.pc for s in stops] == [prog["insn"], prog["insn"], prog["next"]]
    assert [q(cpu, X + 8 * i) for i in range(4)] == [5, 5, 5, 0]


def test_rep_iteration_step_writes_one_element(make_cpu):
    prog, cpu, rec = make_cpu(rep_stosq_at_x(count=3, value=1), [w(X + 8, 8)])
    for _ in range(3):
        cpu.run(step=True)
    stop = cpu.run(step=True)                            # first iteration
    assert (stop.kind, reg(cpu, UC_X86_REG_RCX)) == (StopKind.STEP, 2)
    assert [q(cpu, X + 8 * i) for i in range(3)] == [1, 0, 0]
    stop = cpu.run(step=True)                            # second iteration writes the watch
    assert (stop.kind, stop.pc, reg(cpu, UC_X86_REG_RCX)) == (StopKind.WATCH, prog["insn"], 1)
    assert reg(cpu, UC_X86_REG_RSI) == 0


def test_stopping_handler_that_disarms_its_slot_still_reports_it(make_cpu):
    prog, cpu, rec = make_cpu("""
        add qword ptr [X], 1
    next:
        add qword ptr [X], 1
        int3
    """, [w(X, 8, index=3)])

    def one_shot(hit: Hit) -> bool:
        cpu.set_debug_slots([])
        return True

    cpu.on_debug_exception = one_shot
    stop = cpu.run()
    assert (stop.kind, stop.pc, stop.watches) == (StopKind.WATCH, prog["next"], (WatchHit(X, 8, 2, 3),))
    assert cpu.run().signal == SIGTRAP and q(cpu, X) == 2


def test_stopping_exec_handler_that_replaces_the_slots_inside_the_hook(make_cpu):
    prog, cpu, rec = make_cpu(counted_loop(3), [])
    cpu.set_debug_slots([WatchSlot(0, prog["loop"], 1, HW_BREAKPOINT_X)])

    def swap(hit: Hit) -> bool:
        rec.hits.append(hit)
        cpu.set_debug_slots([w(X, 8, index=1)])       # applied once the hook has returned
        return True

    cpu.on_debug_exception = swap
    assert (cpu.run().kind, cpu.pc) == (StopKind.HWBREAK, prog["loop"])
    assert cpu.hook_counts["code"] == 0 and cpu.debug_slots == (w(X, 8, index=1),)
    assert (cpu.run().kind, q(cpu, X)) == (StopKind.WATCH, 1)


# ---- hot pages: false sharing switches a page from protection to hooks --------------------------
BUSY_NEIGHBOUR = """
    mov rcx, {n}
loop:
    add qword ptr [X], 1
    mov rax, rcx
    and rax, {every}
    jnz skip
store:
    mov qword ptr [X + 64], rcx
after_store:
skip:
    dec rcx
    jnz loop
    int3
"""


def test_a_never_firing_slot_on_a_busy_page_switches_it_to_hooks():
    # The loop's counter shares the slot's page: 100k false faults without the switch.
    prog, cpu, rec = build_cpu(BUSY_NEIGHBOUR.format(n=100_000, every=-1), [w(X + 128, 8)], WatchMode.AUTO)
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP) and q(cpu, X) == 100_000
    stats = cpu.watch_statistics()
    assert stats.hot_pages == {DATA_BASE} and stats.hook_stops == 0 and rec.hits == []
    assert stats.protection_faults == stats.false_faults < 100
    assert page_perms(cpu)[DATA_BASE] == UC_PROT_READ | UC_PROT_WRITE


def test_a_hot_page_still_stops_exactly_after_each_write_to_the_slot():
    prog, cpu, rec = build_cpu(BUSY_NEIGHBOUR.format(n=4096, every=1023), [w(X + 64, 8)], WatchMode.AUTO)
    stops = []
    while (stop := cpu.run()).kind is StopKind.WATCH:
        stops.append((stop.pc, q(cpu, X + 64), reg(cpu, UC_X86_REG_RCX)))
    assert stop.signal == SIGTRAP and q(cpu, X) == 4096
    # rcx = 4096, 3072, 2048, 1024 store; the first before the switch, the others after it
    assert stops == [(prog["after_store"], n, n) for n in (4096, 3072, 2048, 1024)]
    assert all(h.ip == prog["store"] and h.slots == (0,) for h in rec.hits)
    stats = cpu.watch_statistics()
    assert stats.hot_pages == {DATA_BASE} and stats.hook_stops == 3 and stats.protection_faults < 100


def test_a_rarely_touched_page_stays_protected():
    # ~2 ms of register work between two accesses: a fault there costs far less than hooks would.
    prog, cpu, rec = build_cpu("""
        mov rcx, 70
    outer:
        mov rdx, 50000
    inner:
        dec rdx
        jnz inner
        add qword ptr [X], 1
        dec rcx
        jnz outer
        int3
    """, [w(X + 64, 8)], WatchMode.AUTO)
    assert cpu.run().signal == SIGTRAP and q(cpu, X) == 70
    stats = cpu.watch_statistics()
    assert stats.hot_pages == frozenset() and stats.false_faults == 70


def test_protect_mode_never_switches():
    prog, cpu, rec = build_cpu(BUSY_NEIGHBOUR.format(n=300, every=-1), [w(X + 128, 8)], WatchMode.PROTECT)
    assert cpu.run().signal == SIGTRAP
    stats = cpu.watch_statistics()
    assert (stats.false_faults, stats.hot_pages) == (300, frozenset())


def test_a_hot_page_stays_hot_when_the_slots_are_armed_again():
    # gdb removes its watchpoints at every stop and inserts them again at every resume.
    prog, cpu, rec = build_cpu(BUSY_NEIGHBOUR.format(n=1000, every=-1), [w(X + 128, 8)], WatchMode.AUTO)
    cpu.run()
    assert cpu.watch_statistics().hot_pages == {DATA_BASE}
    cpu.set_debug_slots([])
    assert cpu.hook_counts["memory"] == 0 and cpu.watch_statistics().hot_pages == frozenset()
    cpu.set_debug_slots([w(X + 128, 8), w(X + 256, 4, index=1, access=HW_BREAKPOINT_RW)])
    assert cpu.hook_counts["memory"] == 2 and cpu.watch_statistics().hot_pages == {DATA_BASE}
    cpu.pc = CODE_BASE
    faults = cpu.watch_statistics().protection_faults
    assert cpu.run().signal == SIGTRAP and cpu.watch_statistics().protection_faults == faults


def test_a_read_watched_code_page_that_reads_its_neighbours_goes_hot():
    prog, cpu, rec = build_cpu("""
        mov rcx, 5000
    loop:
        mov rax, qword ptr [rip + other]
        dec rcx
        jnz loop
        mov rax, qword ptr [rip + var]
    read_done:
        int3
    .balign 8
    var:
        .quad 0x77
    other:
        .quad 0x55
    """, [], WatchMode.AUTO)
    cpu.set_debug_slots([w(prog["var"], 8, access=HW_BREAKPOINT_RW)])
    stop = cpu.run()
    assert (stop.kind, stop.pc, reg(cpu, UC_X86_REG_RAX)) == (StopKind.WATCH, prog["read_done"], 0x77)
    stats = cpu.watch_statistics()
    assert stats.hot_pages == {CODE_BASE} and stats.protection_faults < 100 and stats.hook_stops == 1
    # the page executes and reads with the guest's permissions again
    assert page_perms(cpu)[CODE_BASE] == UC_PROT_READ | UC_PROT_EXEC
