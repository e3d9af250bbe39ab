"""What a run works on: the issue as a writer approved it, and a follow-up's PR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.github.client import GitHubClient
from app.issue_snapshots import EDITED_NOTE, approved_snapshot, as_approved
from app.models import Run
from app.progress import Progress
from app.store import Store


@dataclass
class Subject:
    """What a run works on: the issue, and for a follow-up the PR it continues."""

    issue: dict[str, Any] | None
    pull: dict[str, Any] | None
    title: str

    @property
    def as_issue(self) -> dict[str, Any] | None:
        """The issue, or for a follow-up without one the PR (its title and description)."""
        if self.issue is not None:
            return self.issue
        if self.pull is not None:
            return {"title": self.pull["title"], "body": self.pull.get("body"), "number": 0}
        return None


async def load_subject(
    run: Run, gh: GitHubClient, store: Store, progress: Progress, *, continues_pull: bool
) -> Subject:
    """The issue (with its title and body as approved, not as edited since), the PR a
    follow-up continues (`continues_pull`: its kind does), and the title the branch, commit
    and PR take. An issue edited since it was approved gets a note on the `progress`."""
    issue = await gh.issue(run.repo, run.issue_number) if run.issue_number else None
    if issue is not None and run.issue_number:
        snapshot = await approved_snapshot(store, run.repo, run.issue_number)
        issue, edited = as_approved(issue, snapshot)
        if edited:
            progress.notes["queued"] = EDITED_NOTE
    pull = None
    if continues_pull and run.pr_number:
        pull = await gh.pull(run.repo, run.pr_number)
    request = run.instructions.strip()
    title = (
        (issue or {}).get("title")
        or (pull or {}).get("title", "").removeprefix("[unfinished] ")
        or (request.splitlines()[0][:72] if request else "")
        or "change"
    )
    return Subject(issue, pull, title)
