"""A fleet PR's state from what happens to it: its run opens it (or pushes to it), CI gives
its verdict, a person approves it, it is merged or closed.

Each change is a compare-and-set on the fleet's repository (`store.fleets.set_repo` with
`expect=`): an event that comes late (CI on a commit the branch has moved past, a review of a
PR already merged) changes nothing, and the conductor, which reconciles the same repository
from its runs, never sees a state go backwards. Runs, CI and the pull_request handlers share
this module; none of them imports `app.fleet`.
"""

from __future__ import annotations

import logging
from typing import Any

from app.fleet_models import FleetRepo, FleetRepoState
from app.models import Run, RunKind
from app.store import Store

log = logging.getLogger(__name__)

# The states of a repository whose PR is open.
WITH_OPEN_PR = tuple(state for state in FleetRepoState if state.has_pr)
# A fleet run (or a follow-up of one) may push to its PR while the repository is in these:
# its run in flight, its PR open, or a draft the review stopped that a retry takes up again.
PUBLISHABLE = (FleetRepoState.QUEUED, FleetRepoState.RUNNING, *WITH_OPEN_PR, FleetRepoState.VETOED)
# CI passing changes an approved PR's state no more: approval is the later news.
GREEN_FROM = (FleetRepoState.PR_OPEN, FleetRepoState.CI_RED, FleetRepoState.CI_GREEN)
APPROVED_FROM = (FleetRepoState.PR_OPEN, FleetRepoState.CI_GREEN, FleetRepoState.CI_RED)
# A PR merged or closed: the review's draft too, should a person merge or close it.
CLOSABLE = (*WITH_OPEN_PR, FleetRepoState.VETOED)


async def pr_published(store: Store, run: Run, *, vetoed: bool, model: str) -> FleetRepo | None:
    """A fleet's run (or a follow-up of one) pushed to its PR: the repository shows the PR
    and its commit (CI on it is still to come: PR_OPEN), with what the fleet's runs there
    cost so far (priced at `model`), at once, so CI's verdict finds it whenever it comes.

    A follow-up's veto shows as VETOED. The fleet's own run's veto is left to the conductor,
    which takes a run's failed end as one of the failures in a row it pauses after."""
    if run.fleet_id is None or run.pr_number is None:
        return None
    own = run.kind == RunKind.FLEET
    if own and vetoed:
        return None
    if await store.fleets.repo(run.fleet_id, run.repo) is None:
        return None  # not one of the fleet's repositories (any more): nothing to follow
    state = FleetRepoState.VETOED if vetoed else FleetRepoState.PR_OPEN
    runs = await store.runs.find(fleet_id=run.fleet_id, repo=run.repo, limit=100)
    fields: dict[str, Any] = {
        "pr_number": run.pr_number,
        "pr_url": run.pr_url,
        "head_sha": run.head_sha,
        "cost_usd": round(sum(r.usage.cost_usd(model) for r in runs), 6),
    }
    if own:
        fields["run_id"] = run.id
    changed = await store.fleets.set_repo(
        run.fleet_id, run.repo, state, expect=PUBLISHABLE, **fields
    )
    if changed is not None:
        log.info("fleet %s: %s #%s %s", run.fleet_id, run.repo, run.pr_number, state.value)
    return changed


async def ci_verdict(store: Store, run: Run, sha: str, *, passed: bool) -> FleetRepo | None:
    """CI's verdict on `sha`, a commit `run` pushed to a fleet PR: CI_GREEN or CI_RED. A
    verdict on a commit the PR has moved past changes nothing."""
    if run.pr_number is None:
        return None
    found = await store.fleets.of_pr(run.repo, run.pr_number)
    if found is None or (found.head_sha is not None and found.head_sha != sha):
        return None
    state = FleetRepoState.CI_GREEN if passed else FleetRepoState.CI_RED
    expect = GREEN_FROM if passed else WITH_OPEN_PR
    return await _move(store, found, state, expect)


async def reviewed(store: Store, repo: str, pr_number: int) -> FleetRepo | None:
    """A person approved a fleet PR: APPROVED."""
    found = await store.fleets.of_pr(repo, pr_number)
    if found is None:
        return None
    return await _move(store, found, FleetRepoState.APPROVED, APPROVED_FROM)


async def closed(store: Store, repo: str, pr_number: int, *, merged: bool) -> FleetRepo | None:
    """A fleet PR was merged (MERGED) or closed unmerged (CLOSED)."""
    found = await store.fleets.of_pr(repo, pr_number)
    if found is None:
        return None
    state = FleetRepoState.MERGED if merged else FleetRepoState.CLOSED
    return await _move(store, found, state, CLOSABLE)


async def _move(
    store: Store,
    found: FleetRepo,
    state: FleetRepoState,
    expect: tuple[FleetRepoState, ...],
) -> FleetRepo | None:
    if found.state == state:
        return found  # said twice (a delivery came again): no new transition
    changed = await store.fleets.set_repo(found.fleet_id, found.repo, state, expect=expect)
    if changed is None:
        log.info(
            "fleet %s: %s #%s stays %s (not %s)",
            found.fleet_id, found.repo, found.pr_number, found.state.value, state.value,
        )  # fmt: skip
    else:
        log.info("fleet %s: %s #%s %s", found.fleet_id, found.repo, found.pr_number, state.value)
    return changed
