"""The fleet conductor's pure rules: a repository's state for its run's outcome, the canary,
which repositories the fleet runs, what is still open; the reasons and milestones it writes."""

from __future__ import annotations

from collections.abc import Sequence

from app.fleet.requests import ROLLBACK_REQUESTED
from app.fleet_models import Fleet, FleetRepo, FleetRepoState
from app.models import ReviewVerdict, Run, RunState

REASON_LIMIT = 200

# Milestones said once each (besides requests.CANARY_DONE and ROLLBACK_REQUESTED).
HALF = "half"
DONE = "done"
PAUSED = "paused"  # the first pause by itself; later ones are "paused 2", "paused 3"...
ROLLED_BACK = "rolled-back"

NOTHING_TO_CHANGE = "nothing to change"
PAUSED_ITSELF = "paused by itself"
STOPPED_BEFORE = "not run: the fleet was stopped"
ROLLED_BACK_REASON = "rolled back"


def outcome_of(run: Run) -> tuple[FleetRepoState, str | None]:
    """The fleet repository's state for its run, and why (for people) when it did not work."""
    if run.state is RunState.QUEUED:
        return FleetRepoState.QUEUED, None
    if run.state is RunState.RUNNING:
        return FleetRepoState.RUNNING, None
    if run.state is RunState.CANCELLED:
        return FleetRepoState.FAILED, "cancelled"
    verdict = _verdict(run.review)
    if verdict is not None and verdict.stopped and run.state is not RunState.NO_CHANGE:
        why = "the review stopped the change"
        return FleetRepoState.VETOED, f"{why}: {short(run.error)}" if run.error else why
    if run.state is RunState.SUCCEEDED:
        if run.pr_number is None:
            return FleetRepoState.FAILED, "ended without a pull request"
        return FleetRepoState.PR_OPEN, None
    if run.state is RunState.NO_CHANGE:
        return FleetRepoState.SKIPPED, NOTHING_TO_CHANGE
    return FleetRepoState.FAILED, short(run.error) or "failed"


def _verdict(value: str | None) -> ReviewVerdict | None:
    try:
        return ReviewVerdict(value) if value else None
    except ValueError:
        return None


def short(text: str | None, limit: int = REASON_LIMIT) -> str:
    """A run's error as a short reason: its first line, cut."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return clip(line, limit)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def planned_ones(repos: Sequence[FleetRepo]) -> list[FleetRepo]:
    """The repositories the fleet runs: all but those the selection left out (never run)."""
    return [repo for repo in repos if not (repo.state is FleetRepoState.SKIPPED and not repo.runs)]


def canary_of(repos: Sequence[FleetRepo], size: int) -> list[FleetRepo]:
    """The canary: the first `size` repositories the fleet runs, in the selection's order
    (stable across restarts: the ones left out never run)."""
    return planned_ones(repos)[: max(size, 1)]


def has_open_pr(repo: FleetRepo) -> bool:
    """Its PR is open: one with CI and review to come, or a vetoed change's draft."""
    return repo.pr_number is not None and (repo.state.has_pr or repo.state is FleetRepoState.VETOED)


def has_work_left(fleet: Fleet, repos: Sequence[FleetRepo]) -> bool:
    """An ended fleet whose runs still end or whose roll back is not done."""
    if any(repo.state.in_flight for repo in repos):
        return True
    if ROLLBACK_REQUESTED in fleet.milestones:
        return any(has_open_pr(repo) for repo in repos) or ROLLED_BACK not in fleet.milestones
    return False
