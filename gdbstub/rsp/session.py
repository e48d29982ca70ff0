"""The stub's state machine: packets and stop events in, outputs out (sans-IO, sync).

One Session per connection. It answers each packet through the command table
(`commands/__init__.py`), turns exceptions into replies in exactly one place
(`_dispatch`), and guarantees one stop reply per resume.
"""

from __future__ import annotations

import enum
import logging

from ..target.events import StopEvent, StopKind
from ..target.interface import Target
from .commands import COMMANDS, packet_name
from .commands.memory import handle_m, next_read
from .errors import LocalProtocolError, RspError, Unsupported
from .outputs import Close, InterruptRun, Output, Reply, StartRun
from .stop_reply import format_stop_reply

log = logging.getLogger("gdbstub.rsp")


class State(enum.Enum):
    IDLE = "idle"          # the program is stopped; packets are answered at once
    RUNNING = "running"    # a StartRun is out; only Ctrl-C is expected until its StopEvent
    CLOSED = "closed"      # detached or killed; the connection is ending


class Session:
    def __init__(self, target: Target):
        self.target = target
        self.state = State.IDLE
        self.gdb_features: set[bytes] = set()   # what gdb offered in qSupported ("swbreak", ...)
        self.last_stop: StopEvent = target.initial_stop()

    # ----- inputs -------------------------------------------------------------

    def packet(self, payload: bytes) -> list[Output]:
        if self.state is State.RUNNING:
            # All-stop gdb sends nothing but Ctrl-C while the target runs.
            log.warning("packet %r while the target runs: ignored", payload[:40])
            return []
        if self.state is State.CLOSED:
            return []
        return self._dispatch(payload)

    def interrupt(self) -> list[Output]:
        """A lone 0x03 from gdb."""
        if self.state is State.RUNNING:
            return [InterruptRun()]
        # Stopped: the interrupt is queued and taken at the next resume (RSP "Interrupts").
        self.target.request_stop()
        return []

    def stopped(self, event: StopEvent) -> list[Output]:
        """The CPU returned from a run: send its one stop reply."""
        if self.state is not State.RUNNING:
            raise LocalProtocolError(f"stop event {event.kind} while {self.state}")
        self.state = State.IDLE
        self.last_stop = event
        return [Reply(self.stop_reply(event))]

    def continue_read(self, request: bytes, reply: bytes) -> tuple[bytes, bytes] | None:
        """After an `m` and its reply, the `m` that would continue that read, and its reply made
        now (a reply made ahead: see server.py); None if `request` is no `m`, or the next reply
        would be an error (that is made, and logged, if the client asks)."""
        follow = next_read(request, reply)
        if follow is None:
            return None
        try:
            return follow, handle_m(self, follow[1:])
        except RspError:
            return None

    def disconnected(self) -> None:
        """The client went away (EOF, detach or kill): release what this session held."""
        self.target.release_debugger_state()
        self.state = State.CLOSED

    # ----- helpers for the command handlers ------------------------------------

    def resume(self, *, step: bool, signal: int = 0) -> list[Output]:
        """Start a run, or report at once when passing a signal ends the program."""
        if signal:
            event = self.target.deliver_signal(signal)
            if event is not None:
                self.last_stop = event
                return [Reply(self.stop_reply(event))]
        if self.target.exited:
            return [Reply(self.stop_reply(self.last_stop))]
        self.state = State.RUNNING
        return [StartRun(step=step)]

    def stop_reply(self, event: StopEvent) -> bytes:
        expedited = [] if event.kind in (StopKind.EXITED, StopKind.KILLED) else self.target.expedited_registers()
        return format_stop_reply(
            event,
            expedited=expedited,
            swbreak=b"swbreak" in self.gdb_features,
            hwbreak=b"hwbreak" in self.gdb_features,
        )

    def close(self, reason: str) -> Output:
        self.state = State.CLOSED
        return Close(reason)

    # ----- the one place where errors become replies --------------------------

    def _dispatch(self, payload: bytes) -> list[Output]:
        name, args = packet_name(payload)
        handler = COMMANDS.get(name)
        try:
            if handler is None:
                raise Unsupported(name.decode(errors="replace"))
            result = handler(self, args)
        except RspError as exc:
            if exc.reply is None:
                raise      # a protocol bug: the server closes the connection and logs it
            if not isinstance(exc, Unsupported):
                log.info("%s: %s -> %r", payload[:40], exc, exc.reply)
            return [Reply(exc.reply)]
        if isinstance(result, bytes):
            return [Reply(result)]
        if isinstance(result, list):
            return result
        return [result]
