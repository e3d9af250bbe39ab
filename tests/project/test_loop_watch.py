"""The suite's check on the event loop blames code that blocks it, not a stalled machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.loop_watch import (
    WATCHDOG_CATCH_UP_SECONDS,
    Delays,
    Stall,
    Watchdog,
    overlap,
    own_seconds,
)


def test_a_stall_of_the_whole_process_is_taken_out_of_a_slow_callback() -> None:
    stalls = [Stall(2.0, 3.0), Stall(8.6, 9.9)]
    assert own_seconds(1.5, 10.0, stalls) == pytest.approx(0.2)
    assert own_seconds(1.5, 5.0, stalls) == 1.5
    assert overlap(2.5, 9.0, stalls) == pytest.approx(0.9)
    # The loop's thread waited 0.7 s for a CPU during a 1.5 s callback: 0.8 s is its own.
    delays = Delays([(1.0, 0.0), (4.0, 0.1), (4.5, 0.5), (5.0, 0.8), (6.0, 0.8)])
    assert own_seconds(1.5, 5.0, [], delays) == pytest.approx(0.8)


def test_the_watchdog_does_not_feel_code_that_blocks_the_loop() -> None:
    watchdog = Watchdog()
    watchdog.start()
    try:
        time.sleep(0.1)
        start = time.monotonic()
        time.sleep(0.8)  # what a blocking call on the loop would do
        sum(range(3_000_000))  # and Python code running on it
        end = time.monotonic()
        time.sleep(WATCHDOG_CATCH_UP_SECONDS)
        assert overlap(start, end, watchdog.stalls()) < 0.3
    finally:
        watchdog.stop()


def test_the_watchdog_feels_the_process_being_stopped() -> None:
    watchdog = Watchdog()
    watchdog.start()
    try:
        time.sleep(0.1)
        start = time.monotonic()
        # Another process stops this one for 0.6 s, as a loaded machine's scheduler can.
        subprocess.run(
            ["sh", "-c", f"kill -STOP {os.getpid()}; sleep 0.6; kill -CONT {os.getpid()}"],
            check=True,
        )
        end = time.monotonic()
        time.sleep(WATCHDOG_CATCH_UP_SECONDS)
        assert end - start >= 0.6
        assert overlap(start, end, watchdog.stalls()) >= 0.4
    finally:
        watchdog.stop()


def test_the_watchdog_samples_the_loop_threads_wait_for_a_cpu() -> None:
    """Three busy processes on this thread's one CPU: its busy loop takes three or four times
    as long by the wall clock, and the samples say the difference was waiting for the CPU."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile 1: pass"]
        )
        for _ in range(3)
    ]
    watchdog = Watchdog()
    watchdog.start()
    try:
        time.sleep(0.3)
        start, cpu_start = time.monotonic(), time.thread_time()
        while time.thread_time() - cpu_start < 0.3:
            pass
        end = time.monotonic()
        time.sleep(WATCHDOG_CATCH_UP_SECONDS)
        waited = watchdog.delays().within(start, end)
        assert end - start > 0.6
        assert waited >= 0.5 * (end - start - 0.3), (end - start, waited)
    finally:
        watchdog.stop()
        for process in busy:
            process.kill()
            process.wait()
        os.sched_setaffinity(0, before)
