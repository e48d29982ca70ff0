"""`gdbstub serve` stays responsive with a client connected: a second client is refused, and Ctrl-C in the
server's terminal ends it cleanly, promptly, whether the client is idle, busy, or running the program.
Each test runs the real command and talks to it over TCP."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio

from gdbstub.rsp.client import RspClient

from tests.programs.build import build

from .stub import StubProcess

pytestmark = pytest.mark.gdb
PROMPT_SECONDS = 2.0       # generous for a loaded machine


async def assert_ends_promptly_on_sigint(stub: StubProcess) -> None:
    stub.proc.send_signal(signal.SIGINT)
    with trio.fail_after(PROMPT_SECONDS):
        while stub.proc.poll() is None:
            await trio.sleep(0.02)
    assert stub.proc.returncode == 0, stub.stderr_text()
    assert "Traceback" not in stub.stderr_text()


async def refused_reply(port: int) -> bytes:
    """Connect a second client, send one packet, and return the payload of the server's answer."""
    async with await RspClient.connect("127.0.0.1", port) as second:
        return await second.request(b"qSupported")


async def test_a_second_client_is_refused_promptly_while_the_first_sits_idle(serve):
    stub = serve(None)                                    # the bundled demo
    async with await RspClient.connect("127.0.0.1", stub.port) as first:
        assert (await first.request(b"qC")).startswith(b"QC")
        with trio.fail_after(PROMPT_SECONDS):
            assert (await refused_reply(stub.port)).startswith(b"E.another debugger")
        assert (await first.request(b"qC")).startswith(b"QC")


async def test_a_second_client_is_refused_promptly_while_the_first_keeps_sending(serve):
    stub = serve(None)
    sent = 0
    async with await RspClient.connect("127.0.0.1", stub.port) as first:
        async with trio.open_nursery() as nursery:
            async def chatter() -> None:
                nonlocal sent
                while True:                               # packet after packet, no pause
                    assert (await first.request(b"m400000,1")) != b""
                    sent += 1

            nursery.start_soon(chatter)
            await trio.sleep(0.2)
            with trio.fail_after(PROMPT_SECONDS):
                assert (await refused_reply(stub.port)).startswith(b"E.another debugger")
            nursery.cancel_scope.cancel()
        assert sent > 10


async def test_sigint_ends_the_server_promptly_while_a_client_sits_idle(serve):
    stub = serve(None)
    async with await RspClient.connect("127.0.0.1", stub.port) as first:
        assert (await first.request(b"qC")).startswith(b"QC")
        await assert_ends_promptly_on_sigint(stub)


async def test_sigint_ends_the_server_promptly_while_the_program_runs(serve):
    stub = serve("spin")                                  # never ends by itself
    async with await RspClient.connect("127.0.0.1", stub.port) as first:
        await first.send_packet(b"vCont;c")
        await trio.sleep(0.3)
        await assert_ends_promptly_on_sigint(stub)


async def test_sigint_ends_a_stdio_server_promptly_while_the_program_runs(need_gdb):
    # With --stdio the connection is trio's main task: the Ctrl-C arrives as a KeyboardInterrupt there.
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gdbstub", "serve", "--stdio", str(build("spin"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        client = RspClient(trio.StapledStream(proc.stdin, proc.stdout))
        await client.request(b"qC")                  # the server is up and answering
        await client.send_packet(b"vCont;c")
        await trio.sleep(0.3)                        # running now
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(PROMPT_SECONDS):       # (stdin stays open: the client has not left)
            await proc.wait()
        err = b"".join([chunk async for chunk in proc.stderr])
        assert proc.returncode == 0, err.decode(errors="replace")
        assert b"Traceback" not in err and b"Fatal Python error" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
