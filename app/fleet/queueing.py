"""Queueing a fleet's runs: the next repositories as ordinary runs of kind FLEET, within the
fleet's cap and the installation's (so ordinary runs keep workers); a run a crash left
queued without its note on the fleet is adopted rather than queued again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from app.fleet.following import RunFollower
from app.fleet_models import Fleet, FleetRepo, FleetRepoState
from app.models import ACTIVE_STATES, Run, RunKind
from app.store import Store
from app.store.queue import NewRun

log = logging.getLogger(__name__)

Wake = Callable[[], None]

RUN_LIMIT = 10_000  # active runs read at once (an installation's, a fleet's)


class RunQueuer:
    """Queues runs only through `store.runs.enqueue`, which refuses a second active run for
    one fleet repository."""

    def __init__(
        self,
        store: Store,
        follower: RunFollower,
        *,
        concurrency: int,
        run_cap: int,
        wake_workers: Wake,
    ) -> None:
        self.store = store
        self.follower = follower
        self.concurrency = concurrency  # runs in flight per fleet
        self.run_cap = run_cap  # fleet runs active per installation
        self.wake_workers = wake_workers

    async def queue(
        self, fleet: Fleet, repos: list[FleetRepo], candidates: Sequence[FleetRepo]
    ) -> None:
        """Queue runs for `candidates` in order, within the fleet's and the installation's caps."""
        room = self.concurrency - sum(repo.state.in_flight for repo in repos)
        if room <= 0 or not candidates:
            return
        active = await self.store.runs.find(
            installation_id=fleet.installation_id, states=list(ACTIVE_STATES), limit=RUN_LIMIT
        )
        room = min(room, self.run_cap - sum(run.fleet_id is not None for run in active))
        queued = 0
        for repo in candidates:
            if queued >= room:
                break
            moved = await self._queue_one(fleet, repo)
            if moved is not None and moved.state.in_flight:
                queued += 1
        if queued:
            self.wake_workers()

    async def _queue_one(self, fleet: Fleet, repo: FleetRepo) -> FleetRepo | None:
        """Queue one repository's run, or adopt the run a crash left without its note."""
        for _ in range(2):
            earlier = await self._newest_fleet_run(fleet.id, repo)
            if earlier is not None:
                log.info("fleet %s: %s adopts run %s", fleet.id, repo.repo, earlier.id)
                return await self.follower.take_outcome(fleet, repo, earlier, adopted=True)
            run = await self.store.runs.enqueue(
                NewRun(
                    repo=repo.repo,
                    installation_id=fleet.installation_id,
                    kind=RunKind.FLEET,
                    fleet_id=fleet.id,
                    requested_by=fleet.requested_by,
                    instructions=fleet.request,
                )
            )
            if run is not None:
                return await self.store.fleets.set_repo(
                    fleet.id,
                    repo.repo,
                    FleetRepoState.QUEUED,
                    expect=[FleetRepoState.PLANNED],
                    queued=True,
                    run_id=run.id,
                    reason=None,
                )
            # Refused: another process queued it between our look and the insert.
        return None

    async def _newest_fleet_run(self, fleet_id: int, repo: FleetRepo) -> Run | None:
        """The fleet's run in the repository newer than the one it knows of, if any."""
        runs = await self.store.runs.find(fleet_id=fleet_id, repo=repo.repo, limit=20)
        for run in runs:  # newest first
            if run.kind is RunKind.FLEET:
                return run if repo.run_id is None or run.id > repo.run_id else None
        return None
