"""What people can ask of a run, from GitHub comments or Slack alike: retry it, cancel it."""

from __future__ import annotations

from app.models import ACTIVE_STATES, Run, RunKind
from app.store import NewRun, Store


async def honk_run_for_pr(store: Store, repo: str, pr_number: int) -> Run | None:
    """The newest run on that pull request, or None when Honk did not open it."""
    runs = await store.find_runs(repo=repo, pr_number=pr_number, limit=1)
    return runs[0] if runs else None


async def queue_follow_up(
    store: Store,
    origin: Run,
    *,
    requested_by: str | None,
    instructions: str,
    kind: RunKind = RunKind.RETRY,
    round: int = 0,
    delivery_id: str | None = None,
) -> Run:
    """Queue another run on `origin`'s branch and PR; it waits behind any active run there."""
    run = await store.enqueue_run(
        NewRun(
            repo=origin.repo,
            installation_id=origin.installation_id,
            kind=kind,
            issue_number=origin.issue_number,
            pr_number=origin.pr_number,
            branch=origin.branch,
            base_branch=origin.base_branch,
            requested_by=requested_by,
            instructions=instructions,
            delivery_id=delivery_id,
            slack_channel=origin.slack_channel,
            slack_ts=origin.slack_ts,
            round=round,
        )
    )
    if run is None:  # pragma: no cover - follow-ups are never de-duplicated by the store
        raise RuntimeError("the store refused a follow-up run")
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
    runs = await store.find_runs(
        repo=repo, issue_number=issue_number, pr_number=pr_number, states=ACTIVE_STATES
    )
    cancelled = []
    for run in runs:
        await store.add_step(
            run.id, "cancel", f"asked for by @{requested_by}" if requested_by else ""
        )
        cancelled.append(await store.request_cancel(run.id))
    return cancelled
