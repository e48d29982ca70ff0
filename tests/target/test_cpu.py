"""The CPU run loop: software breakpoints, faults as signals, process events, stop requests,
debugger memory access, and the no-hook fast path.  Debug-register slots: test_debugregs.py."""

from __future__ import annotations

import errno
import io
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from unicorn import UC_HOOK_INSN, UC_PROT_NONE, UC_PROT_READ, UC_PROT_WRITE, Uc
from unicorn.x86_const import (
    UC_X86_INS_SYSCALL, UC_X86_REG_EFLAGS, UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDI,
    UC_X86_REG_RDX, UC_X86_REG_RSI, UC_X86_REG_RSP,
)

from gdbstub.hwbp.attr import HW_BREAKPOINT_R, HW_BREAKPOINT_RW, HW_BREAKPOINT_W, HW_BREAKPOINT_X, Hit, WatchSlot
from gdbstub.target.cpu import Cpu
from gdbstub.target.debugregs import WatchMode
from gdbstub.target.events import (
    SIGABRT, SIGFPE, SIGILL, SIGINT, SIGSEGV, SIGTRAP, StopEvent, StopKind,
)
from tests.target.asm import CODE_BASE, DATA_BASE, RawProgram, counted_loop

X = DATA_BASE + 0x100
TF = 0x100            # EFLAGS.TF


def make(source: str, start: str | None = None, watch_mode: WatchMode = WatchMode.AUTO,
         user_mode: bool = False) -> tuple[RawProgram, Cpu]:
    prog = RawProgram(f".set X, {X:#x}\n" + source, start=start, user_mode=user_mode)
    return prog, Cpu(prog.uc, watch_mode=watch_mode)


def signal_stop(stop: StopEvent) -> tuple[StopKind, int, int]:
    return stop.kind, stop.signal, stop.pc


# ---- software breakpoints ----------------------------------------------------------------------
def test_sw_breakpoint_stops_before_the_instruction_each_arrival():
    prog, cpu = make(counted_loop(3))
    cpu.add_sw_breakpoint(prog["target"])
    counters = []
    for _ in range(3):
        stop = cpu.run()
        assert (stop.kind, stop.pc) == (StopKind.SWBREAK, prog["target"])
        counters.append(cpu.read_memory(X, 1)[0])
        assert cpu.remove_sw_breakpoint(prog["target"]) is True
        assert cpu.run(step=True).kind is StopKind.STEP       # gdb steps over with it removed
        cpu.add_sw_breakpoint(prog["target"])
    assert counters == [1, 2, 3]
    assert cpu.remove_sw_breakpoint(prog["target"]) is True
    assert cpu.remove_sw_breakpoint(prog["target"]) is False
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["target"] + 6)


def test_sw_breakpoint_at_the_start_address_stops_at_once():
    prog, cpu = make(counted_loop(3))
    cpu.add_sw_breakpoint(CODE_BASE)
    for step in (False, True):
        stop = cpu.run(step=step)
        assert (stop.kind, stop.pc) == (StopKind.SWBREAK, CODE_BASE)
    assert cpu.read_memory(X, 8) == bytes(8)


def test_sw_breakpoints_never_show_in_memory():
    prog, cpu = make(counted_loop(3))
    before = cpu.read_memory(CODE_BASE, len(prog.asm.code))
    cpu.add_sw_breakpoint(prog["target"])
    assert cpu.read_memory(CODE_BASE, len(prog.asm.code)) == before == prog.asm.code


def test_removed_breakpoint_no_longer_fires_in_translated_code():
    prog, cpu = make(counted_loop(3))
    cpu.add_sw_breakpoint(prog["target"])
    assert cpu.run().kind is StopKind.SWBREAK
    cpu.remove_sw_breakpoint(prog["target"])
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["target"] + 6)
    assert cpu.read_memory(X, 1) == b"\x03"


# ---- the fast path has no hooks ----------------------------------------------------------------
def test_unarmed_cpu_has_no_code_or_memory_hook():
    prog, cpu = make(counted_loop(3))
    assert cpu.hook_counts == {"code": 0, "memory": 0}
    cpu.add_sw_breakpoint(prog["target"])
    cpu.set_debug_slots([WatchSlot(0, prog["loop"], 1, HW_BREAKPOINT_X), WatchSlot(1, X, 8, HW_BREAKPOINT_W)])
    assert cpu.hook_counts == {"code": 2, "memory": 0}
    cpu.remove_sw_breakpoint(prog["target"])
    cpu.set_debug_slots([])
    assert cpu.hook_counts == {"code": 0, "memory": 0}
    assert {b: p for b, _, p in cpu.uc.mem_regions()}[DATA_BASE] == UC_PROT_READ | UC_PROT_WRITE
    assert cpu.run().signal == SIGTRAP
    assert cpu.hook_counts == {"code": 0, "memory": 0}


def test_memory_hook_lives_only_during_a_watched_step():
    prog, cpu = make(counted_loop(3))
    seen = []
    cpu.on_debug_exception = lambda hit: seen.append(dict(cpu.hook_counts)) or False
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_W)])
    assert cpu.run().signal == SIGTRAP
    assert len(seen) == 3 and cpu.hook_counts == {"code": 0, "memory": 0}
    assert seen == [{"code": 0, "memory": 0}] * 3       # removed before the handler runs


# ---- faults become signals ---------------------------------------------------------------------
@pytest.mark.parametrize("source,signal,at", [
    ("nop\n insn: mov rax, qword ptr [0x900000]\n nop", SIGSEGV, "insn"),
    ("nop\n insn: mov qword ptr [0x900000], rax\n nop", SIGSEGV, "insn"),
    ("nop\n insn: jmp rax\n", SIGSEGV, None),            # fetch from unmapped 0: pc is the target
    ("nop\n insn: ud2\n nop", SIGILL, "insn"),
    ("xor edx, edx\n xor ecx, ecx\n mov eax, 1\n insn: div ecx\n nop", SIGFPE, "insn"),
    ("nop\n int3\n insn: nop", SIGTRAP, "insn"),           # Linux reports int3 after it
    ("nop\n .byte 0xf1\n insn: nop", SIGTRAP, "insn"),     # icebp: a trap too
    ("nop\n insn: hlt\n nop", SIGSEGV, "insn"),            # privileged in user mode
    ("nop\n insn: int 0x41\n nop", SIGSEGV, "insn"),       # no user gate: #GP at the int
])
def test_faults_become_signals(source, signal, at):
    prog, cpu = make(source)
    stop = cpu.run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, signal)
    assert stop.pc == (prog[at] if at else 0)


def test_write_to_a_read_only_page_is_sigsegv_with_nothing_written():
    prog = RawProgram(f"nop\n insn: mov qword ptr [{X:#x}], 1\n")
    prog.uc.mem_protect(DATA_BASE, 0x1000, UC_PROT_READ)
    cpu = Cpu(prog.uc)
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGSEGV, prog["insn"])
    assert cpu.read_memory(X, 8) == bytes(8)


def test_single_step_faults_are_signals_too():
    prog, cpu = make("nop\n insn: ud2\n")
    assert (cpu.run(step=True).kind, cpu.pc) == (StopKind.STEP, prog["insn"])
    assert signal_stop(cpu.run(step=True)) == (StopKind.SIGNAL, SIGILL, prog["insn"])
    prog, cpu = make("insn: hlt\n nop")
    assert signal_stop(cpu.run(step=True)) == (StopKind.SIGNAL, SIGSEGV, prog["insn"])


def test_single_step_executes_exactly_one_instruction():
    prog, cpu = make("""
        mov rax, 1
    second:
        mov rax, 2
    third:
        int3
    """)
    assert (cpu.run(step=True).pc, cpu.uc.reg_read(UC_X86_REG_RAX)) == (prog["second"], 1)
    # after an uncounted run a counted one must not run whole cached blocks
    cpu.pc = CODE_BASE
    cpu.run()
    cpu.pc = CODE_BASE
    assert cpu.run(step=True).pc == prog["second"]
    assert cpu.run(step=True).pc == prog["third"]


def test_icebp_leaves_rip_after_itself_so_a_continue_goes_on():
    prog, cpu = make("nop\n .byte 0xf1\n after: mov rax, 7\n int3")
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["after"])
    assert cpu.pc == prog["after"]                       # a trap: RIP past it, as on the CPU
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["after"] + 8)
    assert cpu.uc.reg_read(UC_X86_REG_RAX) == 7


# ---- single steps look like Linux's PTRACE_SINGLESTEP: the instruction runs with EFLAGS.TF ------
PUSHF_TWICE = """
stepped:
    pushfq
    pop rax
continued:
    pushfq
    pop rbx
end:
    int3
"""


def test_a_stepped_pushf_stores_the_trap_flag_which_is_then_cleared():
    prog, cpu = make(PUSHF_TWICE)
    assert cpu.run(step=True).kind is StopKind.STEP
    assert cpu.read_memory(cpu.uc.reg_read(UC_X86_REG_RSP), 8)[1] & 1      # TF is bit 8
    assert not cpu.uc.reg_read(UC_X86_REG_EFLAGS) & TF
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["end"] + 1)
    assert cpu.uc.reg_read(UC_X86_REG_RAX) & TF and not cpu.uc.reg_read(UC_X86_REG_RBX) & TF


def test_every_step_of_a_stretch_reports_step_and_leaves_tf_clear():
    prog, cpu = make(PUSHF_TWICE)
    kinds = [cpu.run(step=True).kind for _ in range(4)]
    assert kinds == [StopKind.STEP] * 4 and cpu.pc == prog["end"]
    assert cpu.uc.reg_read(UC_X86_REG_RAX) & TF and cpu.uc.reg_read(UC_X86_REG_RBX) & TF
    assert not cpu.uc.reg_read(UC_X86_REG_EFLAGS) & TF


@pytest.mark.parametrize("pushed,tf_after", [(0x202 | TF, TF), (0x202, 0)])
def test_a_stepped_popf_keeps_the_trap_flag_it_loads(pushed, tf_after):
    # Linux's is_setting_trap_flag: the program's own TF survives the step (and then traps it).
    prog, cpu = make(f"""
        push {pushed:#x}
    insn:
        popfq
    next:
        nop
    after_next:
        int3
    """)
    cpu.run(step=True)
    assert cpu.run(step=True).pc == prog["next"]
    assert cpu.uc.reg_read(UC_X86_REG_EFLAGS) & TF == tf_after
    stop = cpu.run()
    expected = prog["after_next"] if tf_after else prog["after_next"] + 1   # #DB after nop, or the int3
    assert signal_stop(stop) == (StopKind.SIGNAL, SIGTRAP, expected)


def test_a_step_stopped_before_a_popf_leaves_tf_clear():
    prog, cpu = make("push 0x202\n insn: popfq\n int3")
    cpu.run(step=True)
    cpu.add_sw_breakpoint(prog["insn"])
    assert cpu.run(step=True).kind is StopKind.SWBREAK
    assert not cpu.uc.reg_read(UC_X86_REG_EFLAGS) & TF


def test_a_hook_exception_leaves_run_as_itself():
    prog, cpu = make(counted_loop(3))

    def broken(hit: Hit) -> bool:
        raise ZeroDivisionError("consumer bug")

    cpu.on_debug_exception = broken
    cpu.set_debug_slots([WatchSlot(0, prog["target"], 1, HW_BREAKPOINT_X)])
    with pytest.raises(ZeroDivisionError, match="consumer bug"):
        cpu.run()
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_W)])
    cpu.pc = CODE_BASE
    with pytest.raises(ZeroDivisionError):
        cpu.run()


# ---- debugger memory access --------------------------------------------------------------------
def test_read_memory_returns_the_readable_prefix():
    prog, cpu = make("int3")
    end = DATA_BASE + 4 * 0x1000             # the data area ends here, nothing mapped above
    cpu.write_memory(end - 4, b"abcd")
    assert cpu.read_memory(end - 4, 16) == b"abcd"
    assert cpu.read_memory(end, 16) == b""
    assert cpu.read_memory(DATA_BASE + 0x0ffc, 8) == bytes(8)   # across two regions


def test_read_memory_sees_pages_the_guest_cannot_read():
    prog = RawProgram("int3")
    prog.uc.mem_protect(DATA_BASE, 0x1000, UC_PROT_NONE)
    prog.uc.mem_write(X, b"hidden")
    assert Cpu(prog.uc).read_memory(X, 6) == b"hidden"


def test_write_memory_is_all_or_nothing_with_efault():
    prog, cpu = make("int3")
    end = DATA_BASE + 4 * 0x1000
    with pytest.raises(OSError) as info:
        cpu.write_memory(end - 2, b"abcd")
    assert info.value.errno == errno.EFAULT
    assert cpu.read_memory(end - 2, 2) == b"\0\0"


def test_write_memory_patches_read_only_code_that_then_runs():
    prog, cpu = make("""
        mov rax, 1
    patch:
        mov rax, 2
        int3
    """)
    cpu.run()                                                 # code translated and cached
    cpu.write_memory(prog["patch"], b"\x48\xc7\xc0\x07\x00\x00\x00")   # mov rax, 7
    cpu.pc = CODE_BASE
    cpu.run()
    assert cpu.uc.reg_read(UC_X86_REG_RAX) == 7


def test_pc_property_reads_and_writes_rip():
    prog, cpu = make("nop\n second: int3")
    cpu.pc = prog["second"]
    assert cpu.pc == prog["second"]
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGTRAP, prog["second"] + 1)


# ---- runs with a time limit (how the server tries a continue on its own thread first) ----------
def test_a_run_within_a_time_limit_stops_between_whole_instructions_and_goes_on():
    # 2M read-modify-write adds take far longer than 1 ms: the run gives up many times, each time
    # between two instructions, so the total is exact (an asynchronous stop could repeat an add).
    times = 2_000_000
    prog, cpu = make(counted_loop(times), user_mode=True)
    gave_up = 0
    while (stop := cpu.run(within=0.001)) is None:
        gave_up += 1
        done = struct.unpack("<Q", cpu.read_memory(X, 8))[0]
        assert done == times - prog.uc.reg_read(UC_X86_REG_RCX) + (cpu.pc == prog["target"])
    assert gave_up > 2
    assert signal_stop(stop) == (StopKind.SIGNAL, SIGTRAP, cpu.pc)
    assert struct.unpack("<Q", cpu.read_memory(X, 8))[0] == times


def test_a_run_within_a_time_limit_reports_stops_like_any_run():
    prog, cpu = make(counted_loop(5), user_mode=True)
    cpu.on_debug_exception = lambda hit: True          # every hit stops, as gdb's watchpoints do
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_W)])
    stop = cpu.run(within=1.0)
    assert (stop.kind, stop.pc) == (StopKind.WATCH, prog["target"])
    prog, cpu = make("nop\n insn: hlt\n nop", user_mode=True)
    assert signal_stop(cpu.run(within=1.0)) == (StopKind.SIGNAL, SIGSEGV, prog["insn"])


def test_a_read_only_slot_stops_a_run_within_a_time_limit():
    # The read faults at the start of a block translated for a counted slice, and Unicorn keeps
    # it: stepped from that block, the read would skip the step's memory hook.
    prog, cpu = make("insn: mov rax, qword ptr [X]\n after: nop\n int3", watch_mode=WatchMode.PROTECT,
                     user_mode=True)
    cpu.on_debug_exception = lambda hit: True
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_R)])
    stop = cpu.run(within=1.0)
    assert (stop.kind, stop.pc) == (StopKind.WATCH, prog["after"])


def test_a_jump_to_address_0_is_sigsegv_there_with_or_without_a_time_limit():
    for within in (None, 1.0):
        _, cpu = make("xor eax, eax\n jmp rax", user_mode=True)
        stop = cpu.run(within=within)
        assert (stop.kind, stop.signal, stop.pc, stop.fault_addr) == (StopKind.SIGNAL, SIGSEGV, 0, 0)


def test_a_run_within_a_time_limit_at_cpl_0_gives_up_at_once():
    # There a hlt ends emulation as quietly as a used-up count: no way to tell them apart.
    prog, cpu = make(counted_loop(5))
    assert cpu.run(within=1.0) is None
    assert cpu.pc == prog.asm.base and cpu.read_memory(X, 8) == bytes(8)
    assert cpu.run().kind is StopKind.SIGNAL           # an unlimited run still works


# ---- stop requests -----------------------------------------------------------------------------
SPIN = """
spin:
    inc rax
    jmp spin
after:
"""
SPIN_ON_WATCHED_X = """
spin:
    add qword ptr [X], 1
    jmp spin
after:
"""


def run_stopped_from_another_thread(cpu: Cpu, after: float,
                                    stop: Callable[[], object] | None = None) -> tuple[StopEvent, float]:
    """Run while a timer calls `stop` (default: cpu.request_stop) `after` s in; the stop and the run's seconds."""
    timer = threading.Timer(after, stop or cpu.request_stop)
    started = time.monotonic()
    timer.start()
    stop_event = cpu.run()
    elapsed = time.monotonic() - started
    timer.join()
    return stop_event, elapsed


def test_ctrl_c_stops_a_tight_loop_promptly():
    prog, cpu = make(SPIN)
    stop, elapsed = run_stopped_from_another_thread(cpu, after=0.05)
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGINT)
    assert elapsed < 0.15
    assert prog["spin"] <= stop.pc < prog["after"]
    assert cpu.uc.reg_read(UC_X86_REG_RAX) > 0


def test_ctrl_c_stops_a_loop_that_is_busy_with_watch_faults():
    prog, cpu = make(SPIN_ON_WATCHED_X)
    cpu.on_debug_exception = lambda hit: False
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_W)])
    stop, elapsed = run_stopped_from_another_thread(cpu, after=0.05)
    assert elapsed < 1.0     # the stop is not starved (~60 ms measured; loose for loaded CI)
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGINT)
    assert prog["spin"] <= stop.pc < prog["after"]


def test_ctrl_c_stops_a_loop_busy_with_hook_stops():
    prog, cpu = make(SPIN_ON_WATCHED_X, watch_mode=WatchMode.HOOK)
    cpu.on_debug_exception = lambda hit: False
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_W)])
    stop, elapsed = run_stopped_from_another_thread(cpu, after=0.05)
    assert elapsed < 1.0     # the stop is not starved (~60 ms measured; loose for loaded CI)
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGINT)
    assert prog["spin"] <= stop.pc < prog["after"] and cpu.watch_statistics().hook_stops > 0


def test_queued_interrupt_returns_at_once_without_executing():
    prog, cpu = make("mov rax, 1\n int3")
    cpu.request_stop()
    stop = cpu.run()
    assert signal_stop(stop) == (StopKind.SIGNAL, SIGINT, CODE_BASE)
    assert cpu.uc.reg_read(UC_X86_REG_RAX) == 0
    assert cpu.run().signal == SIGTRAP                      # the request was used up


def test_request_stop_with_another_signal():
    prog, cpu = make("int3")
    cpu.request_stop(SIGABRT)
    assert cpu.run().signal == SIGABRT


def test_detach_stop_ends_an_active_run():
    prog, cpu = make(SPIN)
    stop, _ = run_stopped_from_another_thread(cpu, after=0.03, stop=cpu.detach_stop)
    assert stop.kind is StopKind.DETACHED


def test_many_runs_each_stopped_by_one_request():
    # Requests race with the start of emu_start: every one must still land.
    prog, cpu = make(SPIN)
    for delay in (0.0, 0.0001, 0.001, 0.0, 0.002):
        stop, _ = run_stopped_from_another_thread(cpu, after=delay)
        assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGINT)


# ---- process events (a minimal Linux-like process implementing the Cpu's protocol) -----------
@dataclass(frozen=True)
class Exited:
    status: int


@dataclass(frozen=True)
class Signalled:
    signo: int


@dataclass
class MiniProcess:
    """exit_group, kill(self) and mprotect over a raw program: the Cpu's process protocol."""

    uc: Uc
    perms: dict[int, int] = field(default_factory=dict)
    mapping_listeners: list = field(default_factory=list)
    event: object = None

    def __post_init__(self) -> None:
        for begin, end, prot in self.uc.mem_regions():
            for page in range(begin, end + 1, 0x1000):
                self.perms[page] = prot
        self.uc.hook_add(UC_HOOK_INSN, self._syscall, aux1=UC_X86_INS_SYSCALL)

    def page_perms(self, addr: int) -> int | None:
        return self.perms.get(addr & ~0xFFF)

    def take_event(self):
        event, self.event = self.event, None
        return event

    def _syscall(self, uc: Uc, _: object) -> None:
        nr = uc.reg_read(UC_X86_REG_RAX)
        a0, a1, a2 = (uc.reg_read(r) for r in (UC_X86_REG_RDI, UC_X86_REG_RSI, UC_X86_REG_RDX))
        if nr == 231:                         # exit_group
            self.event = Exited(a0 & 0xFF)
            uc.emu_stop()
        elif nr == 62:                        # kill(getpid(), sig)
            self.event = Signalled(a1)
            uc.emu_stop()
        elif nr == 10:                        # mprotect
            uc.mem_protect(a0, a1, a2)
            for page in range(a0, a0 + a1, 0x1000):
                self.perms[page] = a2
            for listener in list(self.mapping_listeners):
                listener()
            uc.reg_write(UC_X86_REG_RAX, 0)
        else:
            uc.reg_write(UC_X86_REG_RAX, -38 & (2**64 - 1))   # -ENOSYS


def make_with_process(source: str, mode: WatchMode = WatchMode.AUTO) -> tuple[RawProgram, Cpu, MiniProcess]:
    prog = RawProgram(f".set X, {X:#x}\n" + source)
    proc = MiniProcess(prog.uc)
    return prog, Cpu(prog.uc, process=proc, watch_mode=mode), proc


def test_process_exit_is_exited_with_its_status():
    prog, cpu, _ = make_with_process("""
        mov edi, 42
        mov eax, 231
        syscall
        ud2
    """)
    stop = cpu.run()
    assert (stop.kind, stop.status) == (StopKind.EXITED, 42)


def test_process_signal_to_itself_is_a_signal_stop():
    prog, cpu, _ = make_with_process("""
        mov esi, 6
        mov eax, 62
        syscall
    after:
        ud2
    """)
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGABRT, prog["after"])


def test_exit_while_single_stepping():
    prog, cpu, _ = make_with_process("mov edi, 3\n mov eax, 231\n syscall\n")
    assert [cpu.run(step=True).kind for _ in range(3)] == [StopKind.STEP, StopKind.STEP, StopKind.EXITED]


@pytest.mark.parametrize("mode", [WatchMode.PROTECT, WatchMode.HOOK])
def test_mprotect_of_a_watched_page_keeps_it_watched_and_respects_the_guest(mode):
    prog, cpu, proc = make_with_process(f"""
        mov qword ptr [X], 1
    first:
        mov edi, {DATA_BASE:#x}
        mov esi, 0x1000
        mov edx, 1
        mov eax, 10
        syscall
        mov rax, qword ptr [X]
    read_done:
        mov qword ptr [X], 2
    """, mode)
    cpu.on_debug_exception = lambda hit: True
    cpu.set_debug_slots([WatchSlot(0, X, 8, HW_BREAKPOINT_RW)])
    assert (cpu.run().kind, cpu.pc) == (StopKind.WATCH, prog["first"])
    # the guest made the page read-only: our protection is re-applied on top of it
    assert (cpu.run().kind, cpu.pc) == (StopKind.WATCH, prog["read_done"])
    assert signal_stop(cpu.run()) == (StopKind.SIGNAL, SIGSEGV, prog["read_done"])
    assert cpu.read_memory(X, 8) == (1).to_bytes(8, "little")      # the refused store left nothing


# ---- a real program through LinuxProcess (skipped until the process layer is there) -----------
def _linux_process():
    process = pytest.importorskip("gdbstub.target.process")
    build = pytest.importorskip("tests.programs.build")
    if not build.have_compiler():
        pytest.skip("no C compiler")
    return process, build


def test_counter_program_with_a_counting_watch_on_counter():
    process, build = _linux_process()
    out = io.BytesIO()
    proc = process.LinuxProcess.spawn(build.build("counter"), argv=["counter", "300"], stdout=out)
    counter = proc.elf.symbols["counter"][0]
    cpu = Cpu(proc.uc, process=proc)
    hits = []
    cpu.on_debug_exception = lambda hit: hits.append(hit) or False
    cpu.set_debug_slots([WatchSlot(0, counter, 4, HW_BREAKPOINT_W)])
    stop = cpu.run()
    assert (stop.kind, stop.status) == (StopKind.EXITED, 0)
    assert out.getvalue() == b"counter=300\n"
    assert len(hits) == 300 and {h.addr for h in hits} == {counter}


def test_counter_program_stops_on_each_write_with_the_new_value():
    process, build = _linux_process()
    proc = process.LinuxProcess.spawn(build.build("counter"), argv=["counter", "5"], stdout=io.BytesIO())
    counter = proc.elf.symbols["counter"][0]
    cpu = Cpu(proc.uc, process=proc)
    cpu.on_debug_exception = lambda hit: True
    cpu.set_debug_slots([WatchSlot(0, counter, 4, HW_BREAKPOINT_W)])
    values = []
    while (stop := cpu.run()).kind is StopKind.WATCH:
        values.append(struct.unpack("<i", cpu.read_memory(counter, 4))[0])
    assert values == [1, 2, 3, 4, 5] and stop.kind is StopKind.EXITED


def test_abort_program_reports_sigabrt():
    process, build = _linux_process()
    proc = process.LinuxProcess.spawn(build.build("abort"), stdout=io.BytesIO(), stderr=io.BytesIO())
    stop = Cpu(proc.uc, process=proc).run()
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGABRT)


def test_rw_watch_on_a_stack_variable_in_a_real_program_does_not_disturb_it():
    process, build = _linux_process()
    out = io.BytesIO()
    proc = process.LinuxProcess.spawn(build.build("counter"), argv=["counter", "50"], stdout=out)
    cpu = Cpu(proc.uc, process=proc)
    sp = cpu.uc.reg_read(UC_X86_REG_RSP)
    hits = []
    cpu.on_debug_exception = lambda hit: hits.append(hit) or False
    # the page below the initial stack pointer is busy with every call of the program
    cpu.set_debug_slots([WatchSlot(0, (sp - 0x800) & ~7, 8, HW_BREAKPOINT_RW)])
    stop = cpu.run()
    assert (stop.kind, stop.status) == (StopKind.EXITED, 0)
    assert out.getvalue() == b"counter=50\n"
    assert hits and all(h.access in (1, 2) for h in hits)     # the slot did fire, on plain accesses
