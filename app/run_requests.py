"""What people ask of runs, from GitHub or Slack alike: start, follow up, cancel; the write gate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.github.client import WRITE_ROLES, GitHubClient
from app.github.pacing import Priority, writes_at
from app.issue_snapshots import record_approved
from app.models import ACTIVE_STATES, Run, RunKind, SlackThread
from app.progress import Progress
from app.store import NewRun, Store

# The one refusal, wherever it is said: on GitHub (with a mention) or privately in Slack.
REFUSAL = (
    "{mention}{asked} needs write access to `{repo}`, as on GitHub; your permission there "
    "(as `{login}`) is `{permission}`.{then}"
)
ALREADY_RUNNING = "Honk is already working on this issue; its tracking comment follows the run."


@dataclass(frozen=True)
class Permission:
    """A person's role on a repository, as GitHub says it."""

    repo: str
    login: str
    role: str  # admin, maintain, write, triage, read or none

    @property
    def allowed(self) -> bool:
        return self.role in WRITE_ROLES

    def refusal(self, asked: str, *, mention: bool = True, then: str = "") -> str:
        """Why Honk will not do `asked` for this person, in the one wording Honk uses."""
        return REFUSAL.format(
            mention=f"@{self.login} " if mention else "",
            asked=asked,
            repo=self.repo,
            login=self.login,
            permission=self.role,
            then=f" {then}" if then else "",
        )


async def may_act(gh: GitHubClient, repo: str, login: str) -> Permission:
    """The write gate every entry calls: people with write access may steer Honk, no one else."""
    return Permission(repo, login, await gh.permission(repo, login))


async def start_issue_run(
    gh: GitHubClient,
    store: Store,
    *,
    repo: str,
    installation_id: int,
    issue: Mapping[str, Any],
    requested_by: str,
    delivery_id: str | None = None,
    slack_thread: SlackThread | None = None,
    wake_workers: Callable[[], None] = lambda: None,
) -> Run | None:
    """Queue a run for `issue` (as `requested_by` saw it); None when it already has one active.

    The tracking comment is posted first, so a worker that claims the run at once finds the
    comment to update instead of writing a second one. The issue's title and body are kept
    as they are now: the run follows them, not a later edit.
    """
    issue_number = int(issue["number"])
    # Before the run exists, so a worker that claims it at once finds it.
    await record_approved(store, repo, issue, requested_by)
    # The person sees Honk at work at once, ahead of runs' and bulk writes.
    with writes_at(Priority.URGENT):
        comment = await gh.comment(repo, issue_number, Progress(None).render())
    run = await store.runs.enqueue(
        NewRun(
            repo=repo,
            installation_id=installation_id,
            kind=RunKind.ISSUE,
            issue_number=issue_number,
            requested_by=requested_by,
            delivery_id=delivery_id,
            slack_thread=slack_thread,
            tracking_comment_id=comment["id"],
        )
    )
    if run is None:  # another delivery or request queued one in the meantime
        await gh.edit_comment(repo, comment["id"], ALREADY_RUNNING)
        return None
    wake_workers()
    return run


async def honk_run_for_pr(store: Store, repo: str, pr_number: int) -> Run | None:
    """The newest run on that pull request, or None when Honk did not open it."""
    return await store.runs.newest(repo=repo, pr_number=pr_number)


async def queue_follow_up(
    store: Store,
    origin: Run,
    *,
    requested_by: str | None,
    instructions: str,
    kind: RunKind = RunKind.RETRY,
    delivery_id: str | None = None,
    wake_workers: Callable[[], None] = lambda: None,
) -> Run:
    """Queue another run on `origin`'s branch and PR; it waits behind any active run there."""
    run = await store.runs.enqueue(
        NewRun.follow_up(
            origin,
            kind=kind,
            requested_by=requested_by,
            instructions=instructions,
            delivery_id=delivery_id,
        )
    )
    if run is None:  # pragma: no cover - follow-ups are never de-duplicated by the store
        raise RuntimeError("the store refused a follow-up run")
    wake_workers()
    return run


async def cancel_active(
    store: Store,
    repo: str,
    *,
    issue_number: int | None = None,
    pr_number: int | None = None,
    requested_by: str | None = None,
) -> list[Run]:
    """Cancel every queued or running run on that issue or PR; returns them, as they are now.

    A queued run is CANCELLED at once; a running one is flagged, and its worker's heartbeat
    stops the pipeline within a third of the lease.
    """
    if issue_number is None and pr_number is None:
        raise ValueError("cancel_active needs an issue or a pull request number")
    runs = await store.runs.find(
        repo=repo, issue_number=issue_number, pr_number=pr_number, states=ACTIVE_STATES
    )
    cancelled = []
    for run in runs:
        await store.runs.add_step(
            run.id, "cancel", f"asked for by @{requested_by}" if requested_by else ""
        )
        cancelled.append(await store.runs.request_cancel(run.id))
    return cancelled


async def cancel_run(store: Store, run: Run, *, requested_by: str | None) -> list[Run]:
    """Cancel `run` and whatever else is active on its issue (or PR)."""
    if run.issue_number is not None:
        return await cancel_active(
            store, run.repo, issue_number=run.issue_number, requested_by=requested_by
        )
    if run.pr_number is not None:
        return await cancel_active(
            store, run.repo, pr_number=run.pr_number, requested_by=requested_by
        )
    return [await store.runs.request_cancel(run.id)] if run.state.active else []
