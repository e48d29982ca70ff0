"""trio-gdbstub: a GDB remote stub for an emulated x86-64 Linux CPU."""

__version__ = "0.1.0"
