"""The target interface (gdbstub/target/interface.py) is what Machine offers and all the protocol
layer uses: a second architecture implementing it would serve gdb as well."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

import gdbstub.rsp
from gdbstub.target.interface import Target
from gdbstub.target.machine import Machine
from tests.programs.build import build, have_compiler

MEMBERS = set(Target.__annotations__) | {name for name, value in vars(Target).items()
                                         if callable(value) and not name.startswith("_")}


@pytest.mark.skipif(not have_compiler(), reason="gcc builds the test program")
def test_machine_has_every_member_of_the_interface():
    machine = Machine(str(build("counter")), stdout=io.BytesIO())
    assert isinstance(machine, Target)
    assert [name for name in sorted(MEMBERS) if not hasattr(machine, name)] == []


def test_the_protocol_layer_uses_nothing_else_of_a_target():
    """Every `target.x`, `session.target.x`, `self.target.x` and `self.machine.x` in gdbstub/rsp."""
    used = {}
    for path in Path(gdbstub.rsp.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            holder = node.value
            name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", None)
            if name in ("target", "machine"):
                used.setdefault(node.attr, f"{path.name}:{node.lineno}")
    assert len(used) > 20                                  # the scan sees the layer's uses
    assert {name: where for name, where in used.items() if name not in MEMBERS} == {}
