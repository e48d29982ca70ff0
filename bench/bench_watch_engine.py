"""How much do armed debug-register slots cost the emulated CPU?

A hand-assembled loop (N iterations of `add qword ptr [counter], 1` plus some
register work) runs on gdbstub.target.cpu.Cpu in several configurations;
each is timed as the median of 3 runs and printed as a ratio to the unarmed
run measured in the same process.

    python bench/bench_watch_engine.py [--iterations N]

Cases (the Cpu's default watch mode, AUTO, unless the name says otherwise):
  unarmed                   no slot, no breakpoint: no Python hook at all
  1 slot, other page        one write slot that never fires, on a page the loop does not touch
  4 slots, other pages      four such slots
  1 slot, same page         one never-firing slot on the counter's page (false sharing)
      protect               page protection only: every counter write faults and is stepped
                            (N_HITS iterations; the engine before hot pages)
      auto                  protection until the page proves hot (64 false faults), then hooks
      hook                  the page hooked from the start: a memory hook and counted runs
  hits/s protect / hook     a write slot on the counter itself, delivered to a handler
                            that only counts (N_HITS iterations, reported as hits per second)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdbstub.hwbp.attr import HW_BREAKPOINT_W, Hit, WatchSlot  # noqa: E402
from gdbstub.target.cpu import Cpu  # noqa: E402
from gdbstub.target.debugregs import WatchMode  # noqa: E402
from gdbstub.target.events import SIGTRAP, StopKind  # noqa: E402
from tests.target.asm import DATA_BASE, RawProgram  # noqa: E402

COUNTER = DATA_BASE + 0x40
OTHER_PAGES = [DATA_BASE + 0x1000 * i for i in (1, 2, 3)] + [DATA_BASE + 0x3800]

LOOP = """
    .set COUNTER, {counter:#x}
    mov rcx, {n}
    xor rdx, rdx
loop:
    add qword ptr [COUNTER], 1
    mov rax, rcx
    imul rax, rax
    xor rdx, rax
    add rdx, 3
    dec rcx
    jnz loop
    int3
"""


def run_case(n: int, slots: list[WatchSlot], on_hit: Callable[[Hit], bool] | None = None,
             mode: WatchMode = WatchMode.AUTO) -> float:
    prog = RawProgram(LOOP.format(counter=COUNTER, n=n))
    cpu = Cpu(prog.uc, watch_mode=mode)
    cpu.on_debug_exception = on_hit
    cpu.set_debug_slots(slots)
    started = time.perf_counter()
    stop = cpu.run()
    elapsed = time.perf_counter() - started
    assert (stop.kind, stop.signal) == (StopKind.SIGNAL, SIGTRAP), stop
    assert int.from_bytes(cpu.read_memory(COUNTER, 8), "little") == n
    return elapsed


def median_of_3(fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5_000_000)
    parser.add_argument("--hit-iterations", type=int, default=20_000,
                        help="iterations for the cases that fault on every iteration")
    args = parser.parse_args()
    n, n_hits = args.iterations, args.hit_iterations

    never = lambda hit: True  # noqa: E731 -- would stop if it ever fired
    run_case(n // 10, [])          # warm up: first-use costs of Unicorn and the asm cache
    unarmed = median_of_3(lambda: run_case(n, []))
    print(f"unarmed: {unarmed:.3f} s for {n} iterations ({n / unarmed / 1e6:.1f} M iterations/s)")

    cases = {
        "1 slot, other page": [WatchSlot(0, OTHER_PAGES[0], 8, HW_BREAKPOINT_W)],
        "4 slots, other pages": [WatchSlot(i, a, 8, HW_BREAKPOINT_W) for i, a in enumerate(OTHER_PAGES)],
    }
    for name, slots in cases.items():
        t = median_of_3(lambda: run_case(n, slots, never))
        print(f"{name:28s} ratio {t / unarmed:6.2f}   ({t:.3f} s)")

    same_page = [WatchSlot(0, COUNTER + 64, 8, HW_BREAKPOINT_W)]
    for mode in (WatchMode.AUTO, WatchMode.HOOK):
        t = median_of_3(lambda: run_case(n, same_page, never, mode))
        print(f"{'1 slot, same page, ' + mode.value:28s} ratio {t / unarmed:6.2f}   ({t:.3f} s)")

    # Faulting cases run fewer iterations; their ratio is scaled to the same work.
    unarmed_small = unarmed * n_hits / n
    t = median_of_3(lambda: run_case(n_hits, same_page, never, WatchMode.PROTECT))
    print(f"{'1 slot, same page, protect':28s} ratio {t / unarmed_small:6.1f}   "
          f"({t / n_hits * 1e6:.1f} us per faulting iteration, false sharing)")

    hits = 0

    def count(hit: Hit) -> bool:
        nonlocal hits
        hits += 1
        return False

    for mode in (WatchMode.PROTECT, WatchMode.HOOK):
        hits = 0
        t = median_of_3(lambda: run_case(n_hits, [WatchSlot(0, COUNTER, 8, HW_BREAKPOINT_W)], count, mode))
        assert hits == 3 * n_hits
        print(f"{'hits/s (counting), ' + mode.value:28s} {n_hits / t:8.0f} hits/s   ratio {t / unarmed_small:6.1f}   "
              f"({t / n_hits * 1e6:.1f} us per hit)")


if __name__ == "__main__":
    main()
