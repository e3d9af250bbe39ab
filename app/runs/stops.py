"""Stopping a run on request: at once while the agent, setup or verification works, else soon."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from app.models import Run
from app.runs.context import RunCancelled

T = TypeVar("T")


class Stops:
    """The runs asked to stop, and the work of each that a stop request cancels."""

    def __init__(self) -> None:
        self._requested: set[int] = set()
        self._interruptible: dict[int, asyncio.Future[Any]] = {}

    def request(self, run_id: int) -> None:
        self._requested.add(run_id)
        work = self._interruptible.get(run_id)
        if work is not None:
            work.cancel()

    def requested(self, run_id: int) -> bool:
        return run_id in self._requested

    def forget(self, run_id: int) -> None:
        self._requested.discard(run_id)

    def check(self, run: Run) -> None:
        """RunCancelled once the run was asked to stop."""
        if run.id in self._requested:
            raise RunCancelled()

    async def until_stopped(self, run: Run, work: Awaitable[T]) -> T:
        """Await `work`; a stop request cancels it (killing its sandboxed command)."""
        self.check(run)
        task = asyncio.ensure_future(work)
        self._interruptible[run.id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if run.id in self._requested and (current is None or not current.cancelling()):
                raise RunCancelled() from None
            raise
        finally:
            self._interruptible.pop(run.id, None)
