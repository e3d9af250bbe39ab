"""The suite's check on the event loop blames code that blocks it, not a stalled machine."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.loop_watch import WATCHDOG_CATCH_UP_SECONDS, Stall, Watchdog, overlap, own_seconds


def test_a_stall_of_the_whole_process_is_taken_out_of_a_slow_callback() -> None:
    stalls = [Stall(2.0, 3.0), Stall(8.6, 9.9)]
    assert own_seconds(1.5, 10.0, stalls) == pytest.approx(0.2)
    assert own_seconds(1.5, 5.0, stalls) == 1.5
    assert overlap(2.5, 9.0, stalls) == pytest.approx(0.9)


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
