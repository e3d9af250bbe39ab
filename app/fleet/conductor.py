"""The fleet conductor: takes each fleet from its plan through its canary to every repository,
as ordinary runs, and keeps what people see of it current.

It is store-driven and idempotent, so a restart or a second process loses nothing and queues
nothing twice. Each pass it leases its fleets (`store.fleets.claim`, as workers lease runs),
then for each:

1. follows every repository in flight from its run (`following`);
2. acts on the fleet's state: runs the canary, waits for Continue, fans out within the caps
   (`queueing`), pauses itself after failures in a row, ends the fleet when every repository
   has; on Stop it cancels what still runs; on Roll back it closes the fleet's unmerged PRs
   (`rollback`);
3. shows the fleet on its issue and in Slack when it changed, and says each milestone once
   (`reporting`), then gives an ended fleet fully shown back.

It refreshes the fleet gauges too. The rules it goes by are pure (`rules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable
from statistics import mean

from app import metrics
from app.config import Settings
from app.fleet import summary
from app.fleet.following import RunFollower
from app.fleet.queueing import RunQueuer, Wake
from app.fleet.reporting import REPORT_EVERY, FleetReporter
from app.fleet.requests import CANARY_DONE, ROLLBACK_REQUESTED
from app.fleet.rollback import RollBack
from app.fleet.rules import (
    DONE,
    HALF,
    PAUSED,
    PAUSED_ITSELF,
    STOPPED_BEFORE,
    canary_of,
    clip,
    planned_ones,
)
from app.fleet_models import Fleet, FleetRepo, FleetRepoState, FleetState
from app.github.auth import GitHubApp
from app.log import describe_error
from app.slack.notify import SlackNotifier
from app.store import Store

log = logging.getLogger(__name__)

METRICS_EVERY = 15.0  # seconds between readings of the store for the fleet gauges
FLEETS_PER_PASS = 100


def _no_wake() -> None:
    return None


class FleetConductor:
    """One per process with workers; fleets are shared with other processes by lease."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: SlackNotifier,
        *,
        wake_workers: Wake = _no_wake,
        workers: int | None = None,
        owner: str | None = None,
        report_every: float = REPORT_EVERY,
        fleets_per_pass: int = FLEETS_PER_PASS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.wake_workers = wake_workers
        self.owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}:fleets"
        count = settings.store.workers if workers is None else workers
        self.run_cap = settings.fleet.run_cap(count)
        self.fleets_per_pass = fleets_per_pass
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._held: set[int] = set()
        self._metrics_at = -math.inf
        self.follower = RunFollower(store, settings.agent.model)
        self.queuer = RunQueuer(
            store,
            self.follower,
            concurrency=settings.fleet.concurrency,
            run_cap=self.run_cap,
            wake_workers=wake_workers,
        )
        self.reporter = FleetReporter(
            settings,
            store,
            github,
            slack,
            let_go=self._let_go,
            report_every=report_every,
            clock=clock,
        )
        self.rollback = RollBack(store, github, self.reporter.milestone)

    @property
    def lease_seconds(self) -> float:
        # Renewed at every pass: a lease outlives a few missed polls.
        return max(self.settings.store.lease_seconds, 3 * self.settings.fleet.poll_seconds)

    def wake(self) -> None:
        """Look at the fleets now: a fleet was started or steered, a run ended."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="honk-fleet-conductor")

    async def stop(self) -> None:
        """Stop conducting and give the fleets' leases back, for another process at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for fleet_id in sorted(self._held):
            with contextlib.suppress(Exception):
                await self.store.fleets.release(fleet_id, self.owner)
        self._held.clear()

    async def _loop(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except Exception:
                log.exception("the fleet conductor's pass failed; it tries again")
                delay = self.settings.fleet.poll_seconds
            # asyncio.timeout, not wait_for: see WorkerPool._loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> float:
        """One pass over every fleet this process may conduct; seconds until one is due."""
        fleets = await self.store.fleets.claim(
            self.owner, self.lease_seconds, limit=self.fleets_per_pass
        )
        self._held |= {fleet.id for fleet in fleets}
        due = self.settings.fleet.poll_seconds
        for fleet in fleets:
            try:
                due = min(due, await self.conduct(fleet))
            except Exception:
                log.exception("fleet %s: the conductor's pass failed", fleet.id)
        await self._refresh_metrics()
        return max(due, 0.01)

    async def conduct(self, fleet: Fleet) -> float:
        """Follow, act on and report one fleet; seconds until its summaries may be edited."""
        repos = await self.store.fleets.repos(fleet.id)
        settled = await self.follower.follow(fleet, repos)
        current = await self.store.fleets.get(fleet.id)
        if current is None:
            return self.settings.fleet.poll_seconds
        await self._act(current, repos, settled)
        return await self.reporter.report(fleet.id)

    # -- 2. acting on the fleet's state --------------------------------------------------

    async def _act(self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]) -> None:
        if ROLLBACK_REQUESTED in fleet.milestones:
            await self.rollback.roll_back(fleet, repos)
        if fleet.state is FleetState.PLANNED:
            canary = canary_of(repos, fleet.canary_size)
            moved = await self.store.fleets.set_state(
                fleet.id,
                FleetState.CANARY,
                f"trying {len(canary)} of {len(planned_ones(repos))} repositories first",
                expect=[FleetState.PLANNED],
            )
            if moved is None:
                return
            fleet = moved
        if fleet.state is FleetState.CANARY:
            await self._canary(fleet, repos)
        elif fleet.state is FleetState.RUNNING:
            await self._fan_out(fleet, repos, settled)
        elif fleet.state is FleetState.STOPPED:
            await self._stopped(fleet, repos)
        if fleet.state in (FleetState.WAITING, FleetState.RUNNING):
            await self._canary_milestone(fleet, repos)

    async def _canary(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        canary = canary_of(repos, fleet.canary_size)
        if all(repo.state.settled for repo in canary):
            rest = [repo for repo in repos if repo.state.waiting]
            if not rest:  # the canary was all of it
                await self._finish(fleet, repos)
                return
            moved = await self.store.fleets.set_state(
                fleet.id,
                FleetState.WAITING,
                f"the canary is done: Continue to run the other {len(rest)}",
                expect=[FleetState.CANARY],
            )
            if moved is not None:
                await self._canary_milestone(moved, repos)
            return
        await self.queuer.queue(fleet, repos, [repo for repo in canary if repo.state.waiting])

    async def _canary_milestone(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """Say once that the canary is done: its PRs, verdicts, cost, and an estimate."""
        canary = canary_of(repos, fleet.canary_size)
        if CANARY_DONE in fleet.milestones or not all(r.state.settled for r in canary):
            return
        results = []
        durations = []
        for repo in canary:
            run = await self.store.runs.get(repo.run_id) if repo.run_id else None
            results.append(summary.CanaryResult(repo, run.review if run else None))
            if run is not None and run.started_at and run.finished_at:
                durations.append((run.finished_at - run.started_at).total_seconds() / 60)
        left = sum(repo.state.waiting for repo in repos)
        at_once = max(1, min(self.settings.fleet.concurrency, self.run_cap))
        estimate = summary.Estimate(
            repos=left,
            cost_usd=mean(r.cost_usd for r in canary) * left if canary else None,
            minutes=mean(durations) * math.ceil(left / at_once) if durations else None,
        )
        await self.reporter.milestone(
            fleet, CANARY_DONE, summary.canary_done(fleet, results, estimate, self.settings.web)
        )

    async def _fan_out(
        self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]
    ) -> None:
        if any(repo.state.failed for repo in settled) and await self._pause_if_failing(
            fleet, repos, settled
        ):
            return
        waiting = [repo for repo in repos if repo.state.waiting]
        if waiting:
            await self.queuer.queue(fleet, repos, waiting)
        elif not any(repo.state.in_flight for repo in repos):
            await self._finish(fleet, repos)
            return
        ran = planned_ones(repos)
        if ran and 2 * sum(repo.state.settled for repo in ran) >= len(ran):
            await self.reporter.milestone(fleet, HALF, summary.half_way(fleet, repos))

    async def _finish(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        counts = summary.counts_of(repos)
        moved = await self.store.fleets.set_state(
            fleet.id,
            FleetState.DONE,
            f"every repository has an end: {summary.counts_line(counts)}",
            expect=[fleet.state],
        )
        if moved is not None:
            await self.reporter.milestone(moved, DONE, summary.done(moved, repos))

    async def _pause_if_failing(
        self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]
    ) -> bool:
        """Pause the fleet when this pass's failures make HONK_FLEET_PAUSE_AFTER in a row
        (and again at each further multiple: a resumed fleet gets as many more)."""
        limit = self.settings.fleet.pause_after
        streak = await self._failures_in_a_row(fleet.id)
        before = max(0, len(streak) - sum(repo.state.failed for repo in settled))
        if len(streak) // limit <= before // limit:
            return False
        by_name = {repo.repo: repo for repo in repos}
        named = [
            f"{name} ({summary.reason_text(by_name[name]) or by_name[name].state.value})"
            for name in streak[-limit:]
        ]
        reason = f"{PAUSED_ITSELF} after {len(streak)} failures in a row: " + "; ".join(named)
        moved = await self.store.fleets.set_state(
            fleet.id, FleetState.PAUSED, clip(reason, 1000), expect=[FleetState.RUNNING]
        )
        if moved is None:
            return False
        pauses = sum(m == PAUSED or m.startswith(f"{PAUSED} ") for m in moved.milestones)
        name = PAUSED if pauses == 0 else f"{PAUSED} {pauses + 1}"
        await self.reporter.milestone(moved, name, summary.paused(moved))
        log.info("fleet %s: %s", fleet.id, reason)
        return True

    async def _failures_in_a_row(self, fleet_id: int) -> list[str]:
        """The repositories whose runs ended in failure last, in a row, in the order they
        ended (a run's end is a repository's move from in flight to an end)."""
        last: dict[str, FleetRepoState] = {}
        ends: list[tuple[str, bool]] = []
        for step in await self.store.fleets.transitions(fleet_id):
            before = last.get(step.repo)
            if before is not None and before.in_flight and step.state.settled:
                ends.append((step.repo, step.state.failed))
            last[step.repo] = step.state
        streak: list[str] = []
        for repo, failed in reversed(ends):
            if not failed:
                break
            streak.append(repo)
        return streak[::-1]

    async def _stopped(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """A stopped fleet: what still runs is cancelled, what never ran is told so."""
        for repo in repos:
            if repo.state.in_flight and repo.run_id is not None:
                run = await self.store.runs.get(repo.run_id)
                if run is not None and run.state.active and not run.cancel_requested:
                    await self.store.runs.request_cancel(run.id)
            elif repo.state.waiting:
                await self.store.fleets.set_repo(
                    fleet.id,
                    repo.repo,
                    FleetRepoState.SKIPPED,
                    expect=[FleetRepoState.PLANNED],
                    reason=STOPPED_BEFORE,
                )

    async def _let_go(self, fleet_id: int) -> None:
        """An ended fleet fully shown is nobody's work: its lease goes back."""
        if fleet_id in self._held:
            await self.store.fleets.release(fleet_id, self.owner)
            self._held.discard(fleet_id)
            self.reporter.forget(fleet_id)

    # -- metrics --------------------------------------------------------------------------

    async def _refresh_metrics(self) -> None:
        """The fleet gauges: a reading of the store (every process reads the same)."""
        now = self._clock()
        if now - self._metrics_at < METRICS_EVERY:
            return
        self._metrics_at = now
        try:
            by_state = await self.store.fleets.count_by_state()
            repos = await self.store.fleets.open_repo_counts()
        except Exception as exc:
            log.warning("the fleet gauges were not refreshed: %s", describe_error(exc))
            return
        for fleet_state, count in by_state.items():
            metrics.fleets.labels(fleet_state.value).set(count)
        for repo_state, n in repos.items():
            metrics.fleet_repos.labels(repo_state.value).set(n)
