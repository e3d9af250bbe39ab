"""Tell a test's code holding the event loop from the machine stalling the whole process.

asyncio's debug mode times each callback by the wall clock, so a callback reported as
taking 1.5 s may be code that blocked the loop (a sync call, a sleep, a long computation)
or the process itself not running: descheduled on a loaded 2-core machine, or inside
Python's cyclic garbage collector, which holds the interpreter lock throughout. Only the
first is the test's fault.

A watchdog thread wakes every few tens of milliseconds and records each time it woke late.
Code on the loop cannot make it late: a blocking call releases the interpreter lock, and
Python code running on the loop hands the lock over every switch interval (5 ms). The
process being stopped or collecting garbage makes it late. So the stall a watchdog also
felt is the machine's, and what is left of a slow callback once those stalls are taken
out is the code's own.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

TICK_SECONDS = 0.02
# A wake-up later than this is a stall of the whole process, not a scheduling jitter.
LATE_SECONDS = 0.1
# Long enough for the watchdog to wake once more after a stall that has just ended.
WATCHDOG_CATCH_UP_SECONDS = 2 * TICK_SECONDS + LATE_SECONDS


@dataclass(frozen=True)
class Stall:
    """[start, end] on the monotonic clock, when the whole process did not run."""

    start: float
    end: float


def overlap(start: float, end: float, stalls: list[Stall]) -> float:
    """Seconds of [start, end] that fall inside the stalls (which do not overlap each other)."""
    return sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in stalls)


def own_seconds(took: float, ended: float, stalls: list[Stall]) -> float:
    """Of a callback that took `took` seconds and ended at `ended`, the time not stalled."""
    return took - overlap(ended - took, ended, stalls)


class Watchdog:
    """A daemon thread recording the process's stalls (at most the last 1000)."""

    def __init__(self) -> None:
        self._stalls: collections.deque[Stall] = collections.deque(maxlen=1000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def stalls(self) -> list[Stall]:
        with self._lock:
            return list(self._stalls)

    def _watch(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(TICK_SECONDS)
            after = time.monotonic()
            if after - before - TICK_SECONDS > LATE_SECONDS:
                with self._lock:
                    self._stalls.append(Stall(before + TICK_SECONDS, after))
