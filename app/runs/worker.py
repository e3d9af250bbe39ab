"""Workers: claim a run, hold its lease while the pipeline works, record how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Callable

from app import metrics
from app.config import Settings
from app.errors import RunFailure
from app.log import describe_error, log_context
from app.models import Run, RunState
from app.runs.context import Outcome
from app.runs.pipeline import Pipeline
from app.store import Store

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 600.0  # seconds between sweeps of the checkouts directory (also at claims)


def _nothing() -> None:
    return None


class WorkerPool:
    """`n` concurrent workers in this process, sharing the queue with any other process."""

    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.host_id = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._lost: set[int] = set()  # runs whose lease another worker now holds
        # Called when a fleet's run ends, so its fleet moves on at once, not at its next poll.
        self.on_fleet_run_ended: Callable[[], None] = _nothing

    def wake(self) -> None:
        self._wake.set()

    def start(self, count: int) -> None:
        for index in range(count):
            worker_id = f"{self.host_id}:w{index}"
            self._tasks.append(asyncio.create_task(self._loop(worker_id), name=worker_id))
        if count:
            # Checkouts left by a process that died (this one's predecessor, or another
            # sharing the checkouts directory) go now, and every SWEEP_INTERVAL.
            self._tasks.append(asyncio.create_task(self._sweep_loop(), name="honk-sweep"))
            log.info("started %d worker(s)", count)

    async def _sweep_loop(self) -> None:
        while True:
            await self.sweep_checkouts()
            await asyncio.sleep(SWEEP_INTERVAL)

    async def sweep_checkouts(self) -> None:
        """Remove the checkouts of attempts that are over, whoever made them; never raises."""
        try:
            removed = await self.pipeline.workspaces.sweep(self._attempt_in_use)
        except Exception as exc:
            log.warning("could not sweep the checkouts: %s", describe_error(exc))
            return
        if removed:
            log.info("removed %d checkout(s) of runs that ended or were claimed again", removed)

    async def _attempt_in_use(self, run_id: int, attempt: int) -> bool:
        """Whether that attempt of the run may still work in its checkout: the run is active
        and not claimed again since (a later attempt's claim may not be stored yet: kept)."""
        run = await self.store.runs.get(run_id)
        return run is not None and run.state.active and run.attempts <= attempt

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _loop(self, worker_id: str) -> None:
        while not self._stopping:
            try:
                run = await self.store.runs.claim(worker_id, self.settings.store.lease_seconds)
            except Exception:
                log.exception("worker %s: cannot claim from the store", worker_id)
                run = None
            if run is None:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                # cancellation that stops this loop when the event fires at that moment.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.store.poll_interval):
                        await self._wake.wait()
                self._wake.clear()
                continue
            await self.work(run, worker_id)

    async def work(self, run: Run, worker_id: str) -> None:
        """Run the pipeline for a claimed run while renewing its lease; never raises."""
        with log_context(run_id=run.id, delivery_id=run.delivery_id):
            log.info(
                "claimed run %s (%s #%s, attempt %d)",
                run.id,
                run.repo,
                run.issue_number or run.pr_number,
                run.attempts,
            )
            await self.store.runs.add_step(run.id, "claimed", worker_id)
            if run.attempts > 1:  # another attempt's checkout may be left here: it goes now
                await self.sweep_checkouts()
            task = asyncio.create_task(self.pipeline.execute(run))
            heartbeat = asyncio.create_task(self._heartbeat(run, worker_id, task))
            try:
                outcome = await task
                if run.id in self._lost:
                    # Another worker claimed it after our lease ran out: its outcome counts.
                    log.warning("run %s: lease lost; leaving its outcome to the new owner", run.id)
                else:
                    await self.store.runs.finish(run.id, outcome.state, error=outcome.error)
                    metrics.runs_finished.labels(run.kind.value, outcome.state.value).inc()
            except asyncio.CancelledError:
                if self._stopping and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                if self._stopping:
                    # Shutting down: hand the run back so another worker resumes it.
                    with contextlib.suppress(Exception):
                        await self.store.runs.release(run.id, worker_id)
                    raise
                await self.store.runs.finish(run.id, RunState.CANCELLED, error="cancelled")
                metrics.runs_finished.labels(run.kind.value, RunState.CANCELLED.value).inc()
            except Exception as exc:
                if isinstance(exc, RunFailure):  # expected: its message says it all
                    log.warning("run %s failed: %s", run.id, describe_error(exc))
                else:
                    log.exception("run %s failed", run.id)
                await self.store.runs.finish(run.id, RunState.FAILED, error=describe_error(exc))
                metrics.runs_finished.labels(run.kind.value, RunState.FAILED.value).inc()
            finally:
                self._lost.discard(run.id)
                if run.fleet_id is not None:
                    self.on_fleet_run_ended()
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                if not self._stopping:
                    await self.sweep_checkouts()

    async def _heartbeat(self, run: Run, worker_id: str, task: asyncio.Task[Outcome]) -> None:
        """Renew the lease; stop the pipeline when the run is cancelled or the lease is lost."""
        interval = max(self.settings.store.lease_seconds / 3, 0.05)
        while not task.done():
            await asyncio.sleep(interval)
            try:
                held = await self.store.runs.renew_lease(
                    run.id, worker_id, self.settings.store.lease_seconds
                )
                current = await self.store.runs.get(run.id)
            except Exception:
                log.warning("could not renew the lease of run %s; will try again", run.id)
                continue
            if not held or (current is not None and current.cancel_requested):
                log.info("run %s: %s", run.id, "cancel requested" if held else "lease lost")
                if not held:
                    self._lost.add(run.id)
                self.pipeline.request_stop(run.id)
                return
