"""`issues.labeled` with the Honk label: the permission gate, then a queued run."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from app.github.client import WRITE_ROLES, GitHubClient
from app.handlers.context import HandlerContext
from app.models import ACTIVE_STATES, RunKind
from app.progress import Progress
from app.repo_config import RepoConfigError, load_repo_config
from app.store import NewRun

router = routing.Router()
log = logging.getLogger(__name__)

NOT_ALLOWED = (
    "@{user} Honk only starts for people with write access to this repository "
    "(your permission here is `{permission}`). Ask a maintainer to add the `{label}` label."
)


ALREADY_RUNNING = "Honk is already working on this issue; its tracking comment follows the run."


def is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


@router.register("issues", action="labeled")
async def on_issue_labeled(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    label = (event.data.get("label") or {}).get("name", "")
    if label.lower() != ctx.settings.label.lower() and not await _repo_label(event, gh, ctx, label):
        return
    await request_run(event, gh, ctx)


async def _repo_label(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, label: str
) -> bool:
    """Whether the repository's `.github/honk.yml` names this label as its Honk label."""
    repo = event.data["repository"]
    try:
        # ref None: the default branch as GitHub has it now, not as the payload recorded it.
        config = await load_repo_config(gh, repo["full_name"], None, ctx.config_cache)
    except RepoConfigError:
        return False  # the run would stop on it anyway; the default label still works
    return bool(config.label) and config.label.lower() == label.lower()


async def request_run(event: sansio.Event, gh: GitHubClient, ctx: HandlerContext) -> None:
    """Queue a run for the event's issue if its sender may ask for one."""
    issue = event.data["issue"]
    repo = event.data["repository"]["full_name"]
    sender = event.data["sender"]
    if is_bot(sender):
        log.info("ignoring %s on %s#%s: sender is a bot", event.event, repo, issue["number"])
        return
    if issue.get("pull_request"):
        return  # a label on a PR is not a request for a new PR
    permission = await gh.permission(repo, sender["login"])
    if permission not in WRITE_ROLES:
        log.info("refusing run for %s on %s: permission %s", sender["login"], repo, permission)
        await gh.comment(
            repo,
            issue["number"],
            NOT_ALLOWED.format(
                user=sender["login"], permission=permission, label=ctx.settings.label
            ),
        )
        return
    number = issue["number"]
    if await ctx.store.find_runs(repo=repo, issue_number=number, states=ACTIVE_STATES, limit=1):
        log.info("%s#%s already has an active run; nothing new queued", repo, number)
        return
    # Acknowledge and post the tracking comment before the run is queued, so a worker
    # that claims it at once finds the comment to update instead of writing a second one.
    await gh.react(f"/repos/{repo}/issues/{number}", "eyes")
    comment = await gh.comment(repo, number, Progress(None).render())
    run = await ctx.store.enqueue_run(
        NewRun(
            repo=repo,
            installation_id=event.data["installation"]["id"],
            kind=RunKind.ISSUE,
            issue_number=number,
            requested_by=sender["login"],
            delivery_id=event.delivery_id,
            tracking_comment_id=comment["id"],
        )
    )
    if run is None:  # another delivery queued one in the meantime
        await gh.edit_comment(repo, comment["id"], ALREADY_RUNNING)
        return
    log.info("queued run %s for %s#%s", run.id, repo, number)
    ctx.wake_workers()
