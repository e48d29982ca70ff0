"""The ksym tracer: watch a program's symbols and log every access (kernel/trace/trace_ksym.c).

A consumer of the core breakpoint API, like gdb's Z packets (kgdb.py): each
filter entry is one wide (all-CPU) 4-byte breakpoint, owner "ksym", whose
handler records the access in a bounded ring and never stops the program.

The control file protocol is Linux's `ksym_trace_filter` (version of 2010),
with the six fixes of reference §5.3:

- `sym:rw-` watch reads and writes, `sym:-w-` writes, `sym:---` remove;
- `r--` is refused by the parser (EINVAL): x86 has no read-only watchpoints,
  so nothing is registered and no slot is touched;
- empty input, `0` and `*:---` clear every entry;
- a change of access re-registers, and a failed re-registration drops the
  entry and raises its errno (never a silent success);
- the input is exactly the bytes given (never read past `count`), stripped;
- a trace record holds values (ip, type, address, task name, cpu), never the
  breakpoint, so it prints correctly after its entry was removed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from errno import EINVAL, ENOSPC

from .hwbp.attr import TYPE_NAMES
from .hwbp import (
    HW_BREAKPOINT_LEN_4,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    Breakpoint,
    BreakpointAttr,
    BreakpointCore,
    Hit,
    HwBreakpointError,
)

__all__ = ["KsymFilterError", "KsymTracer", "TraceRecord", "parse_filter", "symbol_address", "symbol_addresses"]

log = logging.getLogger("gdbstub.ksym")

Symbolize = Callable[[int], "tuple[str, int, int] | None"]
Disassemble = Callable[[int], str]
TaskName = Callable[[Hashable | None], str]

OWNER = "ksym"
DEFAULT_CAPACITY = 4096
REMOVE = 0  # the op `---`

# The only access strings the filter accepts; anything else is EINVAL.
_OPS = {"rw-": HW_BREAKPOINT_RW, "-w-": HW_BREAKPOINT_W, "---": REMOVE}
_OP_TEXT = {op_type: text for text, op_type in _OPS.items()}
_CLEAR_ALL = ("", "0", "*:---")


class KsymFilterError(OSError):
    """A filter write was refused; `.errno` is what write(2) would have failed with."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)


def parse_filter(text: str) -> tuple[str, int]:
    """`symbol:op` -> (symbol, HW_BREAKPOINT_RW / _W, or REMOVE); EINVAL otherwise.

    Split at the first colon, so `mod:sym:rw-` leaves an op of 7 characters
    and fails like any op that is not exactly three characters.
    """
    symbol, colon, op = text.partition(":")
    if not colon:
        raise KsymFilterError(EINVAL, f"{text!r}: expected symbol:op (op is rw-, -w- or ---)")
    if not symbol:
        raise KsymFilterError(EINVAL, f"{text!r}: the symbol name is empty")
    if len(op) != 3:
        raise KsymFilterError(EINVAL, f"{text!r}: the op must be exactly 3 characters (rw-, -w- or ---)")
    if op == "r--":
        raise KsymFilterError(EINVAL, "r--: read-only watchpoints do not exist on x86 (DR7 has no read-only type)")
    if op not in _OPS:
        raise KsymFilterError(EINVAL, f"{op!r}: unknown op (rw-, -w- or ---; execute is not traceable)")
    return symbol, _OPS[op]


@dataclass(frozen=True)
class TraceRecord:
    """One recorded access: values only, so it outlives the breakpoint that made it."""

    ip: int          # the accessing instruction
    bp_type: int     # the watched access (HW_BREAKPOINT_RW / _W): x86 does not say which one happened
    addr: int        # the watched symbol's address
    task: str        # the task's name at the time of the hit
    cpu: int


@dataclass
class _Entry:
    """One line of the filter: a watched symbol and its per-CPU breakpoints."""

    symbol: str
    addr: int
    bp_type: int
    bps: list[Breakpoint] = field(default_factory=list)
    counter: int = 0


class KsymTracer:
    """The filter, the profile and the trace ring of one traced program."""

    def __init__(
        self,
        core: BreakpointCore,
        symbols: Mapping[str, object],
        *,
        symbolize: Symbolize | None = None,
        disassemble: Disassemble | None = None,
        task_name: TaskName | None = None,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.core = core
        self.symbols = symbol_addresses(symbols)
        self._names = {addr: name for name, addr in reversed(list(self.symbols.items()))}
        self.symbolize = symbolize
        self.disassemble = disassemble
        self.task_name = task_name or _default_task_name
        self.capacity = capacity
        self._entries: list[_Entry] = []          # newest first, as the filter file lists them
        self._lock = threading.Lock()              # entries' counters and the ring: hits come from the CPU thread
        self._ring: deque[TraceRecord] = deque(maxlen=capacity)
        self._written = 0                          # records ever written (lost = written - kept)

    # ----- ksym_trace_filter ---------------------------------------------------------

    def write_filter(self, data: str | bytes, count: int | None = None) -> int:
        """write(2) on ksym_trace_filter: returns the bytes consumed or raises KsymFilterError.

        `count` bytes of `data` are taken (all of it by default), never more,
        then surrounding whitespace is stripped (so `echo sym:rw- >` works).
        """
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if count is None:
            count = len(raw)
        if not 0 <= count <= len(raw):
            raise KsymFilterError(EINVAL, f"count {count} is outside the {len(raw)}-byte buffer")
        try:
            text = raw[:count].decode("ascii").strip()
        except UnicodeDecodeError:
            raise KsymFilterError(EINVAL, "the filter takes ASCII symbol names") from None

        if text in _CLEAR_ALL:
            self.clear()
            return count
        symbol, op = parse_filter(text)
        addr = self.symbols.get(symbol)
        if not addr:
            raise KsymFilterError(EINVAL, f"{symbol}: no such symbol in the program")

        entry = self._find(addr)
        if entry is None:
            if op == REMOVE:
                raise KsymFilterError(EINVAL, f"{symbol}: not in the filter, nothing to remove")
            self._add(symbol, addr, op)
            return count
        if entry.bp_type == op:
            raise KsymFilterError(EINVAL, f"{symbol}:{_OP_TEXT[op]} is already in the filter")
        self._change(entry, op)
        return count

    def read_filter(self) -> str:
        """read(2) on ksym_trace_filter: `symbol:op` lines, newest first; "" when empty."""
        return "".join(f"{e.symbol}:{_OP_TEXT[e.bp_type]}\n" for e in list(self._entries))

    def clear(self) -> None:
        """Remove every entry (what `echo > ksym_trace_filter` does)."""
        entries, self._entries = self._entries, []
        for entry in entries:
            self.core.unregister_wide(entry.bps)

    # ----- ksym_profile and the trace ------------------------------------------------

    def profile(self) -> str:
        """ksym_profile: Access Type | Symbol | Counter, one row per entry in filter order."""
        lines = [
            f"  {'Access Type':<12}  {'Symbol':<36} {'Counter':>15}",
            f"  {'-----------':<12}  {'------':<36} {'-------':>15}",
        ]
        with self._lock:
            rows = [(e.bp_type, e.symbol, e.counter) for e in self._entries]
        for bp_type, symbol, counter in rows:
            lines.append(f"  {TYPE_NAMES.get(bp_type, 'NA'):<12}  {symbol:<36} {counter:>15}")
        return "\n".join(lines) + "\n"

    def records(self) -> list[TraceRecord]:
        """The records still in the ring, oldest first."""
        with self._lock:
            return list(self._ring)

    @property
    def lost(self) -> int:
        """Records overwritten because the ring was full."""
        with self._lock:
            return self._written - len(self._ring)

    def trace(self) -> str:
        """The trace file: a header, then one line per recorded access, oldest first."""
        with self._lock:
            records = list(self._ring)
            written = self._written
        lines = [
            "# tracer: ksym_tracer",
            f"# entries-in-buffer/entries-written: {len(records)}/{written}   #lost: {written - len(records)}",
            "#",
            f"# {'TASK':>15}  {'CPU#':<5}  {'Symbol':<24}  {'Type':<4}  Function",
            f"# {'|':>15}  {'|':<5}  {'|':<24}  {'|':<4}  |",
        ]
        lines.extend(self._format_record(r) for r in records)
        return "\n".join(lines) + "\n"

    def reset_trace(self) -> None:
        """Empty the ring (echo > trace)."""
        with self._lock:
            self._ring.clear()
            self._written = 0

    # ----- internals -------------------------------------------------------------------

    def _find(self, addr: int) -> _Entry | None:
        # By address, as Linux does: two names of one variable are one entry.
        return next((e for e in self._entries if e.addr == addr), None)

    def _add(self, symbol: str, addr: int, bp_type: int) -> None:
        entry = _Entry(symbol, addr, bp_type)
        entry.bps = self._register(entry)
        self._entries.insert(0, entry)

    def _change(self, entry: _Entry, bp_type: int) -> None:
        """A new access for a present symbol: unregister, then register again (or drop on `---`)."""
        self.core.unregister_wide(entry.bps)
        entry.bps = []
        if bp_type == REMOVE:
            self._entries.remove(entry)
            return
        entry.bp_type = bp_type
        try:
            entry.bps = self._register(entry)
        except KsymFilterError:
            # The old breakpoint is gone already: the entry goes too, and the caller hears why.
            self._entries.remove(entry)
            raise

    def _register(self, entry: _Entry) -> list[Breakpoint]:
        attr = BreakpointAttr(bp_addr=entry.addr, bp_len=HW_BREAKPOINT_LEN_4, bp_type=entry.bp_type)
        try:
            return self.core.register_wide(attr, self._handler_for(entry), owner=OWNER)
        except HwBreakpointError as exc:
            if exc.errno == ENOSPC:
                limit = self.core.slots(entry.bp_type)
                message = (f"ksym_tracer: Maximum limit reached ({limit} debug-register slots per CPU): "
                           f"no new requests for tracing can be accepted now ({exc.strerror})")
            else:
                message = f"ksym_tracer: request for {entry.symbol} failed: {exc.strerror}"
            log.warning("%s", message)
            raise KsymFilterError(exc.errno, message) from exc

    def _handler_for(self, entry: _Entry) -> Callable[[Breakpoint, Hit], bool]:
        def on_hit(bp: Breakpoint, hit: Hit) -> bool:
            record = TraceRecord(hit.ip, bp.attr.bp_type, bp.attr.bp_addr, self.task_name(hit.task), hit.cpu)
            with self._lock:
                entry.counter += 1
                self._ring.append(record)
                self._written += 1
            return False  # a tracer never stops the program

        return on_hit

    def _format_record(self, record: TraceRecord) -> str:
        line = (f"  {record.task:>15}  [{record.cpu:03d}]  {self._name_of(record.addr):<24}  "
                f"{TYPE_NAMES.get(record.bp_type, 'NA'):<4}  {self._name_of(record.ip)}")
        if self.disassemble is not None:
            line += f"  {self.disassemble(record.ip)}"
        return line

    def _name_of(self, addr: int) -> str:
        """`symbol+0xoff/0xsize` (Linux %pS), resolved now, from the address alone."""
        if self.symbolize is not None:
            found = self.symbolize(addr)
            if found is not None:
                name, offset, size = found
                return f"{name}+{offset:#x}/{size:#x}"
        return self._names.get(addr, f"{addr:#x}")


def _default_task_name(task: Hashable | None) -> str:
    if task is None:
        return "<idle>"
    for attribute in ("comm", "name"):
        value = getattr(task, attribute, None)
        if isinstance(value, str):
            return value
    return str(task)


def symbol_address(value: object) -> int:
    """The address of one symbol table value: an int, or anything with `.addr` (elf.Symbol)."""
    return value if isinstance(value, int) else int(getattr(value, "addr"))


def symbol_addresses(symbols: Mapping[str, object]) -> dict[str, int]:
    """name -> address from a table whose values are ints or carry `.addr` (elf.Symbol)."""
    return {name: symbol_address(value) for name, value in symbols.items()}
