"""Following a fleet's runs: each repository in flight takes its run's state (a PR opened,
vetoed, failed, nothing to change, cancelled), its PR, head and, once it ends, its cost."""

from __future__ import annotations

from app.fleet.rules import outcome_of
from app.fleet_models import Fleet, FleetRepo
from app.models import Run
from app.store import Store


class RunFollower:
    """Moves fleet repositories from their runs, compare-and-set on `store.fleets`."""

    def __init__(self, store: Store, model: str) -> None:
        self.store = store
        self.model = model  # what a run's usage is priced at

    async def follow(self, fleet: Fleet, repos: list[FleetRepo]) -> list[FleetRepo]:
        """Each repository in flight takes its run's state; those that ended, in order."""
        settled: list[FleetRepo] = []
        for index, repo in enumerate(repos):
            if not repo.state.in_flight or repo.run_id is None:
                continue
            run = await self.store.runs.get(repo.run_id)
            if run is None:
                continue
            moved = await self.take_outcome(fleet, repo, run)
            if moved is not None:
                repos[index] = moved
                if moved.state.settled:
                    settled.append(moved)
        return settled

    async def take_outcome(
        self, fleet: Fleet, repo: FleetRepo, run: Run, *, adopted: bool = False
    ) -> FleetRepo | None:
        """Set the repository from `run` (None if nothing changed or another moved it)."""
        state, reason = outcome_of(run)
        fields: dict[str, object] = {}
        if reason != repo.reason:
            fields["reason"] = reason
        for name in ("pr_number", "pr_url", "head_sha"):
            value = getattr(run, name)
            if value is not None and value != getattr(repo, name):
                fields[name] = value
        if adopted:
            fields["run_id"] = run.id
        if state == repo.state and not fields:
            return None
        if state != repo.state and state.settled:
            fields["cost_usd"] = await self._cost(fleet.id, repo.repo)
        return await self.store.fleets.set_repo(
            fleet.id, repo.repo, state, expect=[repo.state], queued=adopted, **fields
        )

    async def _cost(self, fleet_id: int, repo: str) -> float:
        """What every run of the fleet took in the repository (retries and repairs too)."""
        runs = await self.store.runs.find(fleet_id=fleet_id, repo=repo, limit=100)
        return round(sum(run.usage.cost_usd(self.model) for run in runs), 6)
