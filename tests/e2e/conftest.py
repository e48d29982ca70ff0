import pytest

from tests.programs.build import build, have_compiler

from .stub import GDB, StubProcess

pytestmark = pytest.mark.gdb


@pytest.fixture
def need_gdb():
    if GDB is None:
        pytest.skip("gdb is not installed (.ci/run installs it)")
    if not have_compiler():
        pytest.skip("gcc is not installed (.ci/run installs it)")


@pytest.fixture
def serve(need_gdb):
    """serve("counter", "5") -> a running StubProcess for that test program; stopped afterwards."""
    started: list[StubProcess] = []

    def start(name: str | None, *args: str, once: bool = False, options: tuple[str, ...] = ()):
        program = [str(build(name)), *args] if name else []
        stub = StubProcess(*options, *program, once=once)
        started.append(stub)
        return stub

    yield start
    for stub in started:
        stub.stop()
