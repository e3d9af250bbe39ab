"""What a run works on: the issue as a writer approved it, a follow-up's PR, a fleet's request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import RunFailure
from app.fleet_models import Fleet
from app.github.client import GitHubClient
from app.issue_snapshots import EDITED_NOTE, approved_snapshot, as_approved
from app.models import Run
from app.progress import Progress
from app.store import Store


@dataclass
class Subject:
    """What a run works on: the issue, for a follow-up the PR it continues, for one
    repository of a fleet change the fleet (its request)."""

    issue: dict[str, Any] | None
    pull: dict[str, Any] | None
    title: str
    fleet: Fleet | None = None

    @property
    def as_issue(self) -> dict[str, Any] | None:
        """The issue, or for a follow-up without one the PR (its title and description),
        or for a fleet's run the fleet's request (as its requester wrote it)."""
        if self.issue is not None:
            return self.issue
        if self.pull is not None:
            return {"title": self.pull["title"], "body": self.pull.get("body"), "number": 0}
        if self.fleet is not None:
            return {
                "title": self.title,
                "body": self.fleet.request,
                "number": 0,
                "user": {"login": self.fleet.requested_by},
            }
        return None


async def load_subject(
    run: Run, gh: GitHubClient, store: Store, progress: Progress, *, continues_pull: bool
) -> Subject:
    """The issue (with its title and body as approved, not as edited since), the PR a
    follow-up continues (`continues_pull`: its kind does), the fleet change the run is one
    repository of, and the title the branch, commit and PR take. An issue edited since it
    was approved gets a note on the `progress`."""
    issue = await gh.issue(run.repo, run.issue_number) if run.issue_number else None
    if issue is not None and run.issue_number:
        snapshot = await approved_snapshot(store, run.repo, run.issue_number)
        issue, edited = as_approved(issue, snapshot)
        if edited:
            progress.notes["queued"] = EDITED_NOTE
    pull = None
    if continues_pull and run.pr_number:
        pull = await gh.pull(run.repo, run.pr_number)
    fleet = await store.fleets.get(run.fleet_id) if run.fleet_id is not None else None
    if run.fleet_id is not None and fleet is None and pull is None:
        raise RunFailure(f"fleet change {run.fleet_id} no longer exists")
    # A fleet's request as it is stored with the fleet, the one its every run takes.
    request = (fleet.request if fleet is not None else run.instructions).strip()
    title = (
        (issue or {}).get("title")
        or (pull or {}).get("title", "").removeprefix("[unfinished] ")
        or (request.splitlines()[0].lstrip("#").strip()[:72] if request else "")
        or "change"
    )
    return Subject(issue, pull, title, fleet)
