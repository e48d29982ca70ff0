"""The trio I/O around the sans-IO session: sockets, the CPU worker thread, one client at a time.

Per connection (design-style.md §6.4, simplified where measurement said so):
while the program is stopped the connection task reads the socket itself and
answers each packet. A step, and the first millisecond of a continue, run
inline: most continues under a debugger end there, and thread hand-offs cost
more than such a run. A continue that goes on moves to the connection's CPU
thread (run_thread.py) while a reader task, alive only for that run, watches
the socket for Ctrl-C or a vanished client. Waiting is done by polling first
and sleeping after: on a VM, being put to sleep and woken costs more than a
request/reply exchange with gdb. The connection task is the only writer of the
stream.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import trio

from ..target.interface import Target
from .codec import FRAME_OVERHEAD, NEED_DATA, BadChecksum, Codec, Interrupt, Oversized, Packet
from .errors import RemoteProtocolError
from .limits import PACKET_SIZE
from .outputs import Close, EnterNoAck, InterruptRun, Output, Reply, StartRun
from .run_thread import RunThread
from .session import Session

log = logging.getLogger("gdbstub.server")

_SHUTDOWN_STOP_SECONDS = 5.0
# How long to poll before sleeping the trio way: for the client's next packet after a reply, and
# for a continue to end (run_thread.py). Measured through gdb on a 2-vCPU VM: 2000 `stepi` took
# 2.6-3.0 s without the read poll and 1.5-1.8 s with 0.3 ms (0.1 ms: 2.0 s; 1 ms: 2.2 s).
_READ_POLL_SECONDS = 0.0003
_RUN_POLL_SECONDS = 0.001
# The longest the connection task runs on without letting trio's other tasks in.
_BUSY_SECONDS = 0.005
# How long a continue runs on the trio thread (which then reads nothing: a Ctrl-C waits) before
# it moves to the CPU thread.
_INLINE_RUN_SECONDS = 0.001
# gdb reads a large block (`dump memory`, `x/4096x`, an array) as a run of `m` packets of one
# length, each starting where the last reply ended, and decodes each reply (~1.3 ms for 32 KiB)
# while we would sit idle; making the next one takes 0.2-1.4 ms (run-length encoding depends on
# the bytes). So after a reply carrying at least this much, the next one is made at once, and
# sent as soon as gdb asks for exactly it.
_READ_AHEAD_MIN = 0x1000


def _is_shutdown(exc: BaseException) -> bool:
    """Is this the server being stopped (Ctrl-C, or the cancellation that spreads it)?"""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split((trio.Cancelled, KeyboardInterrupt))[1] is None
    return isinstance(exc, (trio.Cancelled, KeyboardInterrupt))


@dataclass(frozen=True)
class _ReadAhead:
    request: bytes            # the `m` packet it answers
    reply: bytes              # its reply's payload (hex)
    frame: bytes              # the same, framed


def _server_codec() -> Codec:
    # PacketSize limits the data characters, not the `$`/`#xx` frame (GDB manual, qSupported).
    return Codec(role="server", max_packet_size=PACKET_SIZE + FRAME_OVERHEAD)


class Connection:
    """One client: the session plus the I/O state around it."""

    def __init__(self, stream: trio.abc.Stream, machine: Target, *, log_packets: bool = False):
        self.stream = stream
        self.machine = machine
        self.log_packets = log_packets
        self.codec = _server_codec()
        self.session = Session(machine)
        self.closing: str | None = None
        socket = getattr(stream, "socket", None)          # a SocketStream; stdio has none
        self._fd = socket.fileno() if socket is not None else None
        self._cpu_thread: RunThread | None = None      # started by the first long continue
        self._read_ahead: _ReadAhead | None = None
        self._checkpoint_due = 0.0                      # see _read_socket

    async def serve(self) -> None:
        try:
            while not self.closing:
                await self._receive(await self._receive_some())
        except BaseException as exc:
            if _is_shutdown(exc):
                self.closing = self.closing or "the server is shutting down"
            raise
        finally:
            if self._cpu_thread is not None:
                self._cpu_thread.close()
            self.session.disconnected()
            log.info("connection closed: %s", self.closing or "error")
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _receive_some(self, *, poll_first: bool = True) -> bytes:
        try:
            if self._fd is not None:
                data = await self._read_socket(poll_first)
            else:
                data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            data = b""
        if not data:
            self.closing = self.closing or "client disconnected"
        return data

    async def _receive(self, data: bytes) -> None:
        """Feed bytes to the codec and act on every complete event, in order."""
        self.codec.receive_data(data)
        await self._handle_events()

    async def _handle_events(self) -> None:
        """Act on every complete event the codec holds (packets, Ctrl-C), in order."""
        codec = self.codec
        while not self.closing:
            try:
                event = codec.next_event()
            except RemoteProtocolError as exc:
                log.warning("dropped a bad packet: %s", exc)   # the codec already skipped it
                continue
            if event is NEED_DATA:
                break
            outputs: list[Output] = []
            if isinstance(event, Packet):
                if self.log_packets:
                    log.info("<- %r", event.payload[:200])
                # A reply made ahead answers the very next packet or none (acks and a Ctrl-C
                # change no memory; any packet might).
                ahead, self._read_ahead = self._read_ahead, None
                if ahead is not None and event.payload == ahead.request:
                    await self._flush_acks()
                    await self._send(ahead.reply, ahead.frame, " (read ahead)")
                    self._read_ahead = self._prepare_read(ahead.request, ahead.reply)
                    continue
                outputs = self.session.packet(event.payload)
            elif isinstance(event, Interrupt):
                if self.log_packets:
                    log.info("<- ^C")
                outputs = self.session.interrupt()
            elif isinstance(event, (BadChecksum, Oversized)):
                log.warning("refused a packet (%s): sent '-'", event)
            await self._flush_acks()
            await self._perform(outputs)
            if isinstance(event, Packet) and len(outputs) == 1 and isinstance(outputs[0], Reply) \
                    and not self.closing:
                self._read_ahead = self._prepare_read(event.payload, outputs[0].payload)
        await self._flush_acks()

    def _prepare_read(self, request: bytes, reply: bytes) -> _ReadAhead | None:
        """After a reply carrying at least _READ_AHEAD_MIN bytes to an `m`, the reply to the `m`
        that would continue it, made and framed now."""
        if len(reply) < 2 * _READ_AHEAD_MIN:          # hex: two characters a byte
            return None
        made = self.session.continue_read(request, reply)
        return None if made is None else _ReadAhead(*made, self.codec.frame(made[1]))

    async def _send(self, payload: bytes, frame: bytes, note: str = "") -> None:
        """Send one reply, framed by codec.frame (logged with --log-packets)."""
        if self.log_packets:
            log.info("-> %r%s", payload[:200], note)
        await self._write(self.codec.send_frame(frame))

    async def _flush_acks(self) -> None:
        pending = self.codec.data_to_send()
        if pending:
            await self._write(pending)

    async def _perform(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Reply):
                await self._send(out.payload, self.codec.frame(out.payload, binary=out.binary))
            elif isinstance(out, StartRun):
                # A Ctrl-C that came in the same read as this resume is already buffered:
                # take it now, so the run stops at once instead of waiting for another one.
                await self._handle_events()
                if out.step:
                    event = self.machine.run(True)
                else:
                    # Most continues under a debugger end within a millisecond: that long here.
                    event = self.machine.run(False, within=_INLINE_RUN_SECONDS)
                    if event is None:
                        event = await self._run_in_thread()
                if not self.closing:
                    await self._perform(self.session.stopped(event))
            elif isinstance(out, InterruptRun):
                self.machine.request_stop()
            elif isinstance(out, EnterNoAck):
                self.codec.start_no_ack()
            elif isinstance(out, Close):
                self.closing = out.reason

    async def _run_in_thread(self):
        """Run the CPU until it stops, reading the socket meanwhile (Ctrl-C, disconnect)."""
        if self._cpu_thread is None:
            self._cpu_thread = RunThread()
        cpu = self._cpu_thread
        cpu.start(self.machine.run, False)
        try:
            if not cpu.poll(_RUN_POLL_SECONDS):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read_while_running)
                    await cpu.wait()
                    nursery.cancel_scope.cancel()
        except BaseException:
            # The server is shutting down (Ctrl-C in its terminal: a Cancelled, or with --stdio
            # a KeyboardInterrupt): end the run, and wait for the CPU thread, which must be
            # done with Unicorn before the connection is released and the process exits.
            self.machine.detach_stop()
            if not cpu.poll(_SHUTDOWN_STOP_SECONDS):
                log.warning("the CPU did not stop within %g s of the shutdown", _SHUTDOWN_STOP_SECONDS)
            raise
        return cpu.result()

    async def _read_while_running(self) -> None:
        while True:
            data = await self._receive_some(poll_first=False)
            if self.closing:
                self.machine.detach_stop()   # the client left: end the run; nothing is reported
                return
            # Only Ctrl-C is expected now; the session ignores anything else while RUNNING.
            await self._receive(data)

    async def _read_socket(self, poll_first: bool) -> bytes:
        """receive_some without its trailing scheduler pass: read if data is there, else wait.

        gdb's next packet usually follows our reply within a few hundred microseconds, so first
        poll for that long, giving the CPU away between polls (gdb may be waiting for it): being
        put to sleep and woken up again costs both sides more than that on a VM."""
        fd = self._fd
        deadline = time.perf_counter() + _READ_POLL_SECONDS if poll_first else 0.0
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                if time.perf_counter() < deadline:
                    os.sched_yield()
                else:
                    await trio.lowlevel.wait_readable(fd)
                    self._checkpoint_due = time.perf_counter() + _BUSY_SECONDS
                continue
            if time.perf_counter() > self._checkpoint_due:
                # A client that never pauses for longer than the poll never lets this task sleep:
                # now and then let trio's other tasks run (refusing a second client, a Ctrl-C).
                await trio.lowlevel.checkpoint()
                self._checkpoint_due = time.perf_counter() + _BUSY_SECONDS
            return data

    async def _write(self, data: bytes) -> None:
        try:
            if self._fd is not None:
                # A reply almost always fits the socket buffer: write it at once and skip the
                # scheduler pass send_all makes (measured: one epoll_wait less per packet).
                try:
                    data = data[os.write(self._fd, data):]
                except BlockingIOError:
                    pass
                if not data:
                    return
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, BrokenPipeError, ConnectionError):
            self.closing = self.closing or "client disconnected"


async def refuse_busy(stream: trio.abc.Stream) -> None:
    """A second client while one is connected: answer its first packet with an error and close."""
    codec = _server_codec()
    message = b"E.another debugger is already connected to this gdbstub"
    try:
        with trio.move_on_after(5):
            while True:
                data = await stream.receive_some(4096)
                if not data:
                    break
                codec.receive_data(data)
                event = codec.next_event()
                while event is not NEED_DATA and not isinstance(event, Packet):
                    event = codec.next_event()
                if isinstance(event, Packet):
                    await stream.send_all(codec.data_to_send() + codec.send(message))
                    break
    except (RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as exc:
        log.info("the refused client went away: %s", exc)    # it is being turned away anyway
    finally:
        await stream.aclose()


class Server:
    """Serves one machine to one client at a time, over and over (unless `once`)."""

    def __init__(self, machine: Target, *, once: bool = False, log_packets: bool = False):
        self.machine = machine
        self.once = once
        self.log_packets = log_packets
        self.busy = False
        self.done = trio.Event()

    async def handle(self, stream: trio.abc.Stream) -> None:
        if self.busy:
            log.warning("refused a second client: one is already connected")
            await refuse_busy(stream)
            return
        self.busy = True
        try:
            self.machine.restart_if_ended()
            await Connection(stream, self.machine, log_packets=self.log_packets).serve()
        except Exception:
            # A bug in one connection must not take the server down.
            log.exception("connection failed")
        finally:
            self.busy = False
            if self.once:
                self.done.set()

    async def serve_tcp(self, listeners, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self.handle, listeners)
            task_status.started(listeners)
            await self.done.wait()
            nursery.cancel_scope.cancel()
