"""`issues.labeled` with the Honk label: the write gate, then a queued run."""

from __future__ import annotations

import logging
from typing import cast

from gidgethub import routing

from app.github.pacing import Priority, writes_at
from app.github.payloads import IssuesEvent
from app.handlers.context import Context
from app.models import ACTIVE_STATES
from app.repo_config import RepoConfigError
from app.run_requests import may_act, start_issue_run

router = routing.Router()
log = logging.getLogger(__name__)

ASK_A_MAINTAINER = "Ask a maintainer to add the `{label}` label."


@router.register("issues", action="labeled")
async def on_issue_labeled(context: Context) -> None:
    payload = cast(IssuesEvent, context.payload)
    labelled = payload.get("label")
    label = labelled.get("name", "") if labelled else ""
    if label.lower() != context.settings.github.label.lower() and not await _repo_label(
        context, label
    ):
        return
    await request_run(context, label)


async def _still_labelled(context: Context, label: str) -> bool:
    """Whether the issue carries the label now, as GitHub says: a delivery is a snapshot, and a
    captured one replayed later must not start a run once the label is gone."""
    repo, number = context.repo, context.number
    issue = await context.gh.issue(repo, number)
    names = {str(one.get("name") or "").lower() for one in issue.get("labels") or []}
    if label.lower() in names:
        return True
    log.info("%s#%s no longer has the %r label; nothing queued", repo, number, label)
    return False


async def _repo_label(context: Context, label: str) -> bool:
    """Whether the repository's `.github/honk.yml` names this label as its Honk label."""
    try:
        config = await context.config()
    except RepoConfigError:
        return False  # the run would stop on it anyway; the default label still works
    if not config.label:
        return False
    return config.label.lower() == label.lower()


async def request_run(context: Context, label: str) -> None:
    """Queue a run for the event's issue if its sender may ask for one and `label` is on it.

    Its writes (a refusal, the reaction, the tracking comment) answer a person: they go
    ahead of runs' and bulk writes when the installation's budget runs short.
    """
    with writes_at(Priority.URGENT):
        await _request_run(context, label)


async def _request_run(context: Context, label: str) -> None:
    payload = cast(IssuesEvent, context.payload)
    issue = payload["issue"]
    repo = context.repo
    sender = payload["sender"]
    number = issue["number"]
    if context.is_bot:
        log.info("ignoring %s on %s#%s: sender is a bot", context.name, repo, number)
        return
    if issue.get("pull_request"):
        return  # a label on a PR is not a request for a new PR
    if not await _still_labelled(context, label):
        return
    gh = context.gh
    permission = await may_act(gh, repo, sender["login"])
    if not permission.allowed:
        log.info("refusing run for %s on %s: permission %s", sender["login"], repo, permission.role)
        then = ASK_A_MAINTAINER.format(label=context.settings.github.label)
        await context.comment(permission.refusal("Starting Honk", then=then))
        return
    store = context.store
    if await store.runs.find(repo=repo, issue_number=number, states=ACTIVE_STATES, limit=1):
        log.info("%s#%s already has an active run; nothing new queued", repo, number)
        return
    await gh.react(f"/repos/{repo}/issues/{number}", "eyes")
    run = await start_issue_run(
        gh,
        store,
        repo=repo,
        installation_id=context.installation_id,
        issue=issue,
        requested_by=sender["login"],
        delivery_id=context.delivery_id,
        wake_workers=context.wake_workers,
    )
    if run is not None:
        log.info("queued run %s for %s#%s", run.id, repo, number)
