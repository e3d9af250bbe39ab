"""Roll back: every unmerged PR of a fleet closed, as the installation, at BULK priority; a PR
merged meanwhile is marked merged; said once in the thread when nothing is left open."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import gidgethub

from app.fleet import summary
from app.fleet.rules import ROLLED_BACK, ROLLED_BACK_REASON, has_open_pr
from app.fleet_models import Fleet, FleetRepo, FleetRepoState
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.log import describe_error
from app.slack.blocks import Message
from app.store import Store

log = logging.getLogger(__name__)

# Says a milestone in the fleet's thread, once ever for its name.
Milestone = Callable[[Fleet, str, Message], Awaitable[None]]


class RollBack:
    def __init__(self, store: Store, github: GitHubApp, milestone: Milestone) -> None:
        self.store = store
        self.github = github
        self.milestone = milestone

    async def roll_back(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """Close every unmerged PR of the fleet, as the installation, at BULK priority."""
        open_prs = [repo for repo in repos if has_open_pr(repo)]
        if not open_prs:
            if not any(repo.state.in_flight for repo in repos):
                closed = sum(
                    r.state is FleetRepoState.CLOSED and r.reason == ROLLED_BACK_REASON
                    for r in repos
                )
                await self.milestone(fleet, ROLLED_BACK, summary.rolled_back(fleet, closed))
            return
        gh = await self.github.installation_client(fleet.installation_id)
        with writes_at(Priority.BULK):
            for repo in open_prs:
                await self._close_pr(gh, fleet, repo)

    async def _close_pr(self, gh: GitHubClient, fleet: Fleet, repo: FleetRepo) -> None:
        assert repo.pr_number is not None
        state, reason = FleetRepoState.CLOSED, ROLLED_BACK_REASON
        try:
            pr = await gh.patch(
                f"/repos/{repo.repo}/pulls/{repo.pr_number}", data={"state": "closed"}
            )
            if isinstance(pr, dict) and pr.get("merged"):
                state, reason = FleetRepoState.MERGED, "merged before the roll back"
        except gidgethub.BadRequest as exc:
            # Refused: merged or closed meanwhile (its webhook may not have come yet), or gone.
            try:
                pr = await gh.pull(repo.repo, repo.pr_number)
            except Exception:
                log.warning("fleet %s: %s: cannot close its PR: %s", fleet.id, repo.repo, exc)
                return
            if pr.get("merged"):
                state, reason = FleetRepoState.MERGED, "merged before the roll back"
            elif pr.get("state") != "closed":
                log.warning("fleet %s: %s: cannot close its PR: %s", fleet.id, repo.repo, exc)
                return
        except Exception as exc:
            log.warning(
                "fleet %s: %s: cannot close its PR yet: %s",
                fleet.id,
                repo.repo,
                describe_error(exc),
            )
            return
        await self.store.fleets.set_repo(
            fleet.id, repo.repo, state, expect=[repo.state], reason=reason
        )
