"""RunThread: the connection's CPU thread, polled briefly and then awaited the trio way."""

import threading

import pytest
import trio

from gdbstub.rsp.run_thread import RunThread


@pytest.fixture
def runner():
    thread = RunThread(name="cpu-test")
    yield thread
    thread.close()


async def test_a_short_job_is_done_within_the_poll_and_runs_in_the_thread(runner):
    runner.start(lambda: threading.current_thread().name)
    assert runner.poll(5.0)
    assert runner.result() == "cpu-test"


async def test_a_long_job_outlasts_the_poll_and_is_awaited(runner):
    release = threading.Event()
    runner.start(lambda: release.wait(5) and 42)
    assert not runner.poll(0.01)
    trio.lowlevel.current_trio_token().run_sync_soon(release.set)
    with trio.fail_after(5):
        await runner.wait()
    assert runner.result() == 42
    # the next job starts from a clean state even though this one was awaited, not polled
    runner.start(lambda: 7)
    assert runner.poll(5.0) and runner.result() == 7


async def test_the_jobs_exception_is_raised_by_result(runner):
    def fail():
        raise ValueError("from the job")

    runner.start(fail)
    with trio.fail_after(5):
        await runner.wait()
    with pytest.raises(ValueError, match="from the job"):
        runner.result()


async def test_a_cancelled_wait_leaves_the_job_running_and_close_ends_the_thread():
    release = threading.Event()
    runner = RunThread()
    runner.start(lambda: release.wait(5))
    with trio.move_on_after(0.05) as scope:
        await runner.wait()
    assert scope.cancelled_caught
    runner.close()
    assert runner._thread.is_alive()
    release.set()
    runner._thread.join(5)
    assert not runner._thread.is_alive()
