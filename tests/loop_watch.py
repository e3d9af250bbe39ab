"""Tell a test's code holding the event loop from the machine stalling the whole process.

asyncio's debug mode times each callback by the wall clock, so a callback reported as
taking 1.5 s may be code that blocked the loop (a sync call, a sleep, a long computation)
or the process itself not running: descheduled on a loaded 2-core machine, or inside
Python's cyclic garbage collector, which holds the interpreter lock throughout, or the
loop's thread runnable but waiting for a CPU the other processes hold. Only the first is the
test's fault.

A watchdog thread wakes every few tens of milliseconds and records each time it woke late.
Code on the loop cannot make it late: a blocking call releases the interpreter lock, and
Python code running on the loop hands the lock over every switch interval (5 ms). The
process being stopped or collecting garbage makes it late. So the stall a watchdog also
felt is the machine's. Waiting for a CPU it does not feel (a sleeper is scheduled ahead of
a busy thread), so it also samples the loop thread's run-queue delay, which Linux keeps per
thread (`/proc/self/task/<tid>/schedstat`: time runnable but not running). What is left of a
slow callback once both are taken out is the code's own.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Delays:
    """Samples of the loop thread's run-queue delay: (monotonic time, seconds waited so far)."""

    samples: list[tuple[float, float]]

    def at(self, moment: float) -> float:
        """The delay accumulated by `moment`, by the last sample at or before it."""
        index = bisect.bisect_right(self.samples, (moment, float("inf"))) - 1
        return self.samples[index][1] if index >= 0 else 0.0

    def within(self, start: float, end: float) -> float:
        """Seconds the thread surely waited for a CPU between start and end: from the first
        sample at or after `start` to the last at or before `end` (never more than it did)."""
        first = bisect.bisect_left(self.samples, (start, float("-inf")))
        if first >= len(self.samples) or self.samples[first][0] > end:
            return 0.0
        return max(0.0, self.at(end) - self.samples[first][1])


NO_DELAYS = Delays([])


def own_seconds(
    took: float, ended: float, stalls: list[Stall], delays: Delays = NO_DELAYS
) -> float:
    """Of a callback that took `took` seconds and ended at `ended`, the time neither stalled
    nor waiting for a CPU."""
    start = ended - took
    return took - overlap(start, ended, stalls) - delays.within(start, ended)


def run_delay(thread_id: int) -> float | None:
    """Seconds `thread_id` (of this process) has waited runnable for a CPU, or None."""
    try:
        fields = Path(f"/proc/self/task/{thread_id}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[1]) / 1e9


class Watchdog:
    """A daemon thread recording the process's stalls (at most the last 1000)."""

    def __init__(self, thread_id: int | None = None) -> None:
        """Samples `thread_id`'s run-queue delay (by default the thread that made it)."""
        self._thread_id = thread_id if thread_id is not None else threading.get_native_id()
        self._stalls: collections.deque[Stall] = collections.deque(maxlen=1000)
        # Two minutes of samples: longer than any callback a test could be failed for.
        self._delays: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=int(120 / TICK_SECONDS)
        )
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

    def delays(self) -> Delays:
        with self._lock:
            return Delays(list(self._delays))

    def _watch(self) -> None:
        own_thread = threading.get_native_id()
        while not self._stop.is_set():
            before, own_before = time.monotonic(), run_delay(own_thread) or 0.0
            time.sleep(TICK_SECONDS)
            after = time.monotonic()
            waited = run_delay(self._thread_id)
            # Late because this thread itself waited for a CPU is not a stall of the process
            # (a loaded machine does that to every thread; the loop's own waits are sampled).
            late = after - before - TICK_SECONDS - ((run_delay(own_thread) or 0.0) - own_before)
            with self._lock:
                if waited is not None:
                    self._delays.append((after, waited))
                if late > LATE_SECONDS:
                    self._stalls.append(Stall(after - late, after))
