"""The thread a connection's CPU runs in during a continue, and a cheap way to wait for it.

A continue first runs on the trio thread for a millisecond (server.py); one that goes on comes
here.  Handing a run to one of trio's worker threads and back cost far more than a short run
(measured through gdb: 810 us per watchpoint continue, of which the run was 110 us): trio's thread
cache, the nursery around the run, and waking sleeping threads.  So each connection keeps one
thread for the CPU, and the waiting side first waits for the result on a plain lock for a short
while (350 us per such continue) before it sleeps the trio way, with the socket watched for Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import trio


class RunThread:
    """One long-lived thread that runs one job at a time for a trio task."""

    def __init__(self, name: str = "cpu") -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Held while the current job runs, released when it ends. A lock per job: the release
        # of a job already awaited must not be taken for the end of the next one.
        self._finished = threading.Lock()
        self._outcome: tuple[Any, BaseException | None] | None = None   # (result, error) when done
        self._wake: Callable[[], None] | None = None                    # set by wait()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        """Begin fn(*args) in the thread (the previous job must be finished)."""
        self._outcome = None
        finished = self._finished = threading.Lock()
        finished.acquire()
        self._jobs.put((fn, args, finished))

    def poll(self, seconds: float) -> bool:
        """Is the job done, waiting at most `seconds` for it?  Blocks the caller: keep it short."""
        # Sleeping on a lock, not spinning: a spinning waiter would take the GIL back and forth
        # with the job's Python hooks (measured: 440 us per watchpoint continue against 350 us).
        return self._finished.acquire(timeout=seconds)

    async def wait(self) -> None:
        """Sleep until the job is done (cancellable: the job then goes on in the thread)."""
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        with self._lock:
            if self._outcome is not None:
                return
            self._wake = lambda: token.run_sync_soon(done.set)
        try:
            await done.wait()
        finally:
            with self._lock:
                self._wake = None

    def result(self) -> Any:
        """The finished job's return value, or its exception raised here."""
        assert self._outcome is not None, "the job is not finished"
        value, error = self._outcome
        if error is not None:
            raise error
        return value

    def close(self) -> None:
        """Let the thread end once its current job (if any) is done."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args, finished = job
            try:
                outcome = (fn(*args), None)
            except BaseException as exc:   # handed to the waiting task, which raises it
                outcome = (None, exc)
            with self._lock:
                self._outcome = outcome
                wake, self._wake = self._wake, None
            finished.release()
            if wake is not None:
                try:
                    wake()
                except trio.RunFinishedError:
                    pass    # the waiter's trio run ended (server shut down): nobody to tell
