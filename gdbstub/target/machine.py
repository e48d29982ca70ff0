"""The served machine: one emulated x86-64 CPU running one Linux process.

This is the `target` the protocol session talks to. It owns the process
(ELF + syscalls), the CPU engine (run/step/stop), the core breakpoint API with
the CPU's emulated debug registers, and the read-only host I/O for gdb.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import replace

from ..hwbp import BreakpointCore
from ..kgdb import GdbDebugger
from . import regs_x86_64 as regs
from .cpu import Cpu
from .events import SIGTRAP, StopEvent, StopKind, stop_for_process_event
from .hostio import HostIO
from .process import LinuxProcess
from .siginfo import build_siginfo

log = logging.getLogger("gdbstub.target")


def make_debug_arch(name: str):
    """`x86` is the faithful DR0-DR7 model; `virt` the 16-slot arch with read-only watches."""
    if name == "x86":
        from ..hwbp.x86 import X86DebugArch

        return X86DebugArch()
    if name == "virt":
        from ..hwbp.virt import VirtDebugArch

        return VirtDebugArch()
    raise ValueError(f"unknown debug arch {name!r} (x86 or virt)")


class Machine:
    CPU = 0   # the one emulated CPU's index in the breakpoint core

    def __init__(self, path: str, argv: list[str] | None = None, *, debug_arch: str = "x86",
                 stdout=None, stderr=None):
        self._spawn_args = (path, argv, stdout, stderr)
        self._tracer = None            # the ksym tracer (wide breakpoints: they outlive a restart)
        self.perf_sessions = []        # `monitor perf` counters
        self.core = BreakpointCore(arch=make_debug_arch(debug_arch), ncpus=1)
        self.core.add_listener(self._debug_registers_changed)
        self._start_process()

    # ----- process lifetime -----------------------------------------------------

    def _start_process(self) -> None:
        path, argv, stdout, stderr = self._spawn_args
        self.process = LinuxProcess.spawn(path, argv=argv, stdout=stdout, stderr=stderr)
        self.cpu = Cpu(self.process.uc, process=self.process, cpu_index=self.CPU, task=self.process)
        self.cpu.on_debug_exception = self.core.deliver
        self.core.set_current_task(self.CPU, self.process)
        self.cpu.set_debug_slots(self.core.enforced_slots(self.CPU))
        # HostIO compares real paths: the program may be served through a symlink.
        program = os.path.realpath(self.process.path)
        self.hostio = HostIO(allowed={program}, pid=self.process.pid, exe=self.process.path,
                             file_parts={program: self.process.elf.file_parts})
        self._ended: StopEvent | None = None
        self._resume_unfinished = False
        # gdb's Z1-Z4 consumer of the core API; None where the arch has no slots.
        self.debugger = GdbDebugger(self.core, self.process) if self.core.arch.supported else None

    def restart_if_ended(self) -> None:
        """A new client after the program exited or was killed gets a fresh start."""
        if self._ended is not None:
            log.info("starting %s afresh", self.process.path)
            self._start_process()

    def _process_ended(self, event: StopEvent) -> None:
        self._ended = event
        self.core.release_task(self.process)   # the task's breakpoints die with it

    def kill(self) -> None:
        if self._ended is None:
            self._process_ended(StopEvent(StopKind.KILLED, signal=9, thread=self.tid))

    @property
    def exited(self) -> bool:
        return self._ended is not None

    # ----- what the session reads ---------------------------------------------

    @property
    def tid(self) -> int:
        return self.process.tid

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def comm(self) -> str:
        """The program's name as Linux keeps it for a task: at most 15 characters."""
        return os.path.basename(self.exec_path)[:15]

    @property
    def exec_path(self) -> str:
        return self.process.path

    @property
    def auxv(self) -> bytes:
        return self.process.auxv

    @property
    def load_bias(self) -> int:
        return self.process.elf.load_bias

    target_xml = regs.TARGET_XML

    @property
    def has_hw_breakpoints(self) -> bool:
        return self.debugger is not None

    def initial_stop(self) -> StopEvent:
        if self._ended is not None:
            return self._ended
        return StopEvent(StopKind.SIGNAL, signal=SIGTRAP, pc=self.cpu.pc, thread=self.tid)

    def read_registers(self) -> bytes:
        return regs.read_all(self.process.uc)

    def write_registers(self, blob: bytes) -> None:
        regs.write_all(self.process.uc, blob)

    def read_register(self, regnum: int) -> bytes:
        return regs.read_register(self.process.uc, regnum)

    def write_register(self, regnum: int, value: bytes) -> None:
        regs.write_register(self.process.uc, regnum, value)

    def expedited_registers(self) -> list[tuple[int, bytes]]:
        uc = self.process.uc
        return [(n, regs.read_register(uc, n)) for n in regs.EXPEDITED]

    def read_memory(self, addr: int, length: int) -> bytes:
        return self.cpu.read_memory(addr, length)

    def write_memory(self, addr: int, data: bytes) -> None:
        self.cpu.write_memory(addr, data)

    def set_pc(self, pc: int) -> None:
        self.cpu.pc = pc

    def insert_sw_breakpoint(self, addr: int) -> None:
        self.cpu.add_sw_breakpoint(addr)

    def remove_sw_breakpoint(self, addr: int) -> None:
        self.cpu.remove_sw_breakpoint(addr)

    # ----- running --------------------------------------------------------------

    def run(self, step: bool, within: float | None = None) -> StopEvent | None:
        """Blocking: the one StopEvent of this resume, or None if `within` seconds passed
        first (Cpu.run): run again to go on."""
        if self.debugger is not None:
            self.debugger.settle()
        if not self._resume_unfinished:
            self.core.clear_dr6(self.CPU)   # as the kernel does on each #DB entry
        event = self.cpu.run(step=step, within=within)
        self._resume_unfinished = event is None      # the next run() goes on with this resume
        if event is None:
            return None
        event = replace(event, thread=self.tid)
        if event.kind in (StopKind.EXITED, StopKind.KILLED):
            self._process_ended(event)
        elif event.kind is StopKind.WATCH and self.debugger is not None:
            event = self._only_gdb_watches(event)
        return event

    def _only_gdb_watches(self, event: StopEvent) -> StopEvent:
        """Report gdb the slots it owns; a tracer's slot firing in the same instruction is not its business."""
        regs_image = self.core.registers(self.CPU)
        mine = tuple(w for w in event.watches
                     if self.debugger.owns(self.core.arch.slot_owner(regs_image, w.slot)))
        return replace(event, watches=mine) if mine else event

    def request_stop(self) -> None:
        self.cpu.request_stop()

    def detach_stop(self) -> None:
        self.cpu.detach_stop()

    def deliver_signal(self, signo: int) -> StopEvent | None:
        """gdb resumed with `C<sig>`: apply the signal's default action (terminate or ignore)."""
        result = self.process.deliver_signal(signo)
        if result is None:
            return None
        event = replace(stop_for_process_event(result), thread=self.tid)
        self._process_ended(event)
        return event

    def siginfo(self, event: StopEvent) -> bytes:
        """The siginfo_t of a signal stop (gdb's $_siginfo); OSError for a stop that has none."""
        if event.kind in (StopKind.EXITED, StopKind.KILLED, StopKind.DETACHED):
            raise OSError(errno.ESRCH, "the program is not stopped by a signal")
        return build_siginfo(event, pid=self.pid, debugger_pid=os.getpid(),
                             mapped=lambda addr: self.process.page_perms(addr) is not None)

    def release_debugger_state(self) -> None:
        """The client left: drop its breakpoints, watchpoints and open files."""
        self.cpu.clear_sw_breakpoints()
        if self.debugger is not None:
            self.debugger.release_all()
        self.hostio.close_all()
        self.cpu.discard_stop_requests()

    def symbolize(self, addr: int) -> str | None:
        """`main+4` for an address inside a known function or object."""
        found = self.process.elf.symbol_at(addr)
        if found is None:
            return None
        name, offset, _size = found
        return f"{name}+{offset}" if offset else name

    # ----- the other consumers of the core API (monitor ksym/perf, gdbstub trace/perf) ----

    def tracer(self):
        """The ksym tracer for this program's symbols, made on first use."""
        if self._tracer is None:
            from ..ksym import KsymTracer
            from .disasm import disassemble

            def one_instruction(ip: int) -> str:
                lines = disassemble(self.read_memory, ip, 1)
                return lines[0].split(":", 1)[-1].strip() if lines else ""

            self._tracer = KsymTracer(
                self.core, self.process.elf.symbols, symbolize=self.process.elf.symbol_at,
                disassemble=one_instruction, task_name=lambda task: f"{self.comm}-{self.pid}")
        return self._tracer

    def monitor(self, command: str) -> str:
        from ..monitor import run_monitor_command

        if self.debugger is not None:
            self.debugger.settle()      # the slots gdb gave back are free for what the command does
        return run_monitor_command(self, command)

    # ----- debug registers ------------------------------------------------------

    def _debug_registers_changed(self, cpu: int) -> None:
        if cpu == self.CPU:
            self.cpu.set_debug_slots(self.core.enforced_slots(cpu))
