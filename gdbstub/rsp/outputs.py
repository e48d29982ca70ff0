"""What the session asks its I/O layer to do. The session never writes bytes itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """Send one packet. `binary` payloads get `# $ } *` escaped on the wire."""

    payload: bytes
    binary: bool = False


@dataclass(frozen=True)
class StartRun:
    """Resume the CPU in the worker thread; exactly one StopEvent must come back."""

    step: bool


@dataclass(frozen=True)
class InterruptRun:
    """Ctrl-C while running: ask the CPU to stop; the stop reply comes with the StopEvent."""


@dataclass(frozen=True)
class EnterNoAck:
    """Switch the codec to no-ack mode (after the OK reply to QStartNoAckMode went out)."""


@dataclass(frozen=True)
class Close:
    """End this connection (detach or kill); the server keeps serving."""

    reason: str


Output = Reply | StartRun | InterruptRun | EnterNoAck | Close
