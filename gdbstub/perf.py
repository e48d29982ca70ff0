"""perf-style breakpoint counting: `perf stat -e mem:<addr>[/len][:access]`.

A consumer of the core breakpoint API: one counting breakpoint per event
(owner "perf"), whose handler counts and never stops the program. The event
syntax and defaults are perf's (tools/perf/util/parse-events.c, reference §6):

- `mem:<addr>[/len][:access][:modifiers]`, address and length decimal or 0x-hex;
- access letters r, w, x, each at most once; none means RW;
- length defaults to 4, or sizeof(long) = 8 for a pure `x`;
- modifiers u (user only) and k (kernel only), as perf's `mem:0:u`;
- as an extension, a symbol of the program may stand for the address.

Syntax errors raise ValueError at parse time. Whether the arch can count an
event is decided at registration: an event it refuses (`:r` on x86) is shown
as `<not supported>` with the reason, and the others still count.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from .hwbp.attr import SIZEOF_LONG
from .ksym import symbol_address
from .hwbp import (
    HW_BREAKPOINT_LEN_4,
    HW_BREAKPOINT_R,
    HW_BREAKPOINT_RW,
    HW_BREAKPOINT_W,
    HW_BREAKPOINT_X,
    Breakpoint,
    BreakpointAttr,
    BreakpointCore,
    Hit,
    HwBreakpointError,
)

__all__ = ["Counter", "PerfSession", "parse_event"]

OWNER = "perf"

_ACCESS_LETTERS = {"r": HW_BREAKPOINT_R, "w": HW_BREAKPOINT_W, "x": HW_BREAKPOINT_X}
_MODIFIERS = frozenset("uk")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$@]*")


def parse_event(text: str, symbols: Mapping[str, object] | None = None) -> BreakpointAttr:
    """`mem:0x404028/8:w` -> BreakpointAttr(0x404028, 8, W); ValueError on bad syntax."""
    if not text.startswith("mem:"):
        raise ValueError(f"{text!r}: a breakpoint event starts with 'mem:'")
    location, *suffixes = text[len("mem:"):].split(":")
    if len(suffixes) > 2:
        raise ValueError(f"{text!r}: too many ':' (mem:<addr>[/len][:access][:modifiers])")
    where, slash, length_text = location.partition("/")
    addr = _parse_address(where, symbols, text)
    length = _parse_number(length_text, "length", text) if slash else None
    if length is not None and length <= 0:
        raise ValueError(f"{text!r}: the length must be positive")

    bp_type = 0
    modifiers = ""
    if suffixes and suffixes[0] and set(suffixes[0]) <= _ACCESS_LETTERS.keys():
        bp_type = _parse_access(suffixes.pop(0), text)
    if suffixes:
        modifiers = suffixes.pop(0)
        if not modifiers or not set(modifiers) <= _MODIFIERS or len(set(modifiers)) != len(modifiers):
            raise ValueError(f"{text!r}: {modifiers!r} is neither an access (r, w, x) nor modifiers (u, k)")
    if suffixes:
        raise ValueError(f"{text!r}: the access must come before the modifiers")

    bp_type = bp_type or HW_BREAKPOINT_RW
    if length is None:
        length = SIZEOF_LONG if bp_type == HW_BREAKPOINT_X else HW_BREAKPOINT_LEN_4
    # perf: naming u or k excludes what is not named.
    exclude_user = bool(modifiers) and "u" not in modifiers
    exclude_kernel = bool(modifiers) and "k" not in modifiers
    return BreakpointAttr(bp_addr=addr, bp_len=length, bp_type=bp_type,
                          exclude_user=exclude_user, exclude_kernel=exclude_kernel)


def _parse_access(letters: str, text: str) -> int:
    bp_type = 0
    for letter in letters:
        bit = _ACCESS_LETTERS[letter]
        if bp_type & bit:
            raise ValueError(f"{text!r}: access letter {letter!r} given twice")
        bp_type |= bit
    return bp_type


def _parse_number(digits: str, what: str, text: str) -> int:
    if not _NUMBER.fullmatch(digits):
        raise ValueError(f"{text!r}: {what} {digits!r} is not a decimal or 0x-hex number")
    return int(digits, 0) if digits[:2].lower() == "0x" else int(digits, 10)


def _parse_address(where: str, symbols: Mapping[str, object] | None, text: str) -> int:
    if _NUMBER.fullmatch(where):
        return _parse_number(where, "address", text)
    if symbols is not None and _SYMBOL.fullmatch(where):
        if where not in symbols:
            raise ValueError(f"{text!r}: no symbol {where!r} in the program")
        return symbol_address(symbols[where])
    raise ValueError(f"{text!r}: address {where!r} is not a number" + ("" if symbols is None else " or a symbol"))


@dataclass
class Counter:
    """One event of a session: its name as written, its breakpoints, its count or why it has none."""

    name: str
    attr: BreakpointAttr
    count: int = 0
    error: HwBreakpointError | None = None
    bps: list[Breakpoint] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return self.error is None

    def _on_hit(self, bp: Breakpoint, hit: Hit) -> bool:
        self.count += 1   # only the CPU thread writes; sample_period 1: called on every hit
        return False      # a counter never stops the program


class PerfSession:
    """`perf stat`: count every event while the program runs, then print the counts.

    With a `task` the breakpoints follow that task on every CPU
    (register_user); without one they are system-wide, one per CPU
    (register_wide), like `perf stat -a`. All events are parsed before any
    is registered, so a syntax error leaves the core untouched.
    """

    def __init__(
        self,
        core: BreakpointCore,
        events: Iterable[str],
        *,
        task: Hashable | None = None,
        symbols: Mapping[str, object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.core = core
        self.task = task
        self.clock = clock
        self.counters = [Counter(text, parse_event(text, symbols)) for text in events]
        self._started: float | None = None
        self._stopped: float | None = None
        self._open = False

    def open(self) -> None:
        """Register every event; one the arch refuses keeps its error and the rest still count.
        Each open is a new measurement: counts, errors and the clock start afresh. Opening an open
        session is an error: it would register every event a second time."""
        if self._open:
            raise RuntimeError("this perf session is already open")
        self._open = True
        for counter in self.counters:
            counter.count, counter.error = 0, None
            try:
                if self.task is None:
                    counter.bps = self.core.register_wide(counter.attr, counter._on_hit, owner=OWNER)
                else:
                    counter.bps = [self.core.register_user(counter.attr, self.task, counter._on_hit,
                                                           owner=OWNER, privileged=False)]
            except HwBreakpointError as exc:
                counter.error = exc
        self._started = self.clock()
        self._stopped = None

    def close(self) -> None:
        """Stop the clock and give every slot back; the counts stay readable."""
        if self._started is not None and self._stopped is None:
            self._stopped = self.clock()
        for counter in self.counters:
            self.core.unregister_wide(counter.bps)
            counter.bps = []
        self._open = False

    def __enter__(self) -> PerfSession:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        if self._started is None:
            return 0.0
        end = self._stopped if self._stopped is not None else self.clock()
        return end - self._started

    def format_stat(self, command: str | None = None) -> str:
        """What `perf stat` prints: one line per event, then the elapsed time."""
        label = command if command is not None else ("system wide" if self.task is None else str(self.task))
        lines = ["", f" Performance counter stats for '{label}':", ""]
        for counter in self.counters:
            if counter.error is None:
                lines.append(f"{counter.count:>18}      {counter.name}")
            else:
                reason = f"{counter.error.errno_name}: {counter.error.strerror}"
                lines.append(f"{'<not supported>':>18}      {counter.name}   ({reason})")
        lines += ["", f"{self.elapsed:>18.9f} seconds time elapsed", ""]
        return "\n".join(lines) + "\n"
