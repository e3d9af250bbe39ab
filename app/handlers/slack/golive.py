"""The go-live card's buttons (Merge, Approve, Close PR) and Continue after a limit.

Merge, Approve and Close PR act as the person who pressed them, with their own GitHub token
(app/as_person.py): someone not yet connected is offered to connect first. What GitHub
refuses is shown as GitHub says it, to that person only. Continue is a follow-up run, for
writers, through the same write gate as Retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import gidgethub

from app.as_person import (
    OWN_APPROVAL,
    Refused,
    approve_pull,
    close_pull,
    github_words,
    merge_method,
    merge_pull,
)
from app.ci import records
from app.github.client import GitHubClient
from app.github.connections import Connection
from app.handlers.slack.conversation import UNKNOWN_RUN, SlackContext, run_of
from app.handlers.slack.link import offer_connect
from app.handlers.slack.parsing import Origin
from app.log import describe_error
from app.models import Run, RunKind
from app.repo_config import RepoConfigError
from app.run_requests import queue_follow_up
from app.slack import card
from app.slack.blocks import escape, pr_link

log = logging.getLogger(__name__)

ACTIONS = frozenset(
    {card.MERGE_ACTION, card.APPROVE_ACTION, card.CLOSE_ACTION, card.CONTINUE_ACTION}
)
VERBS = {
    card.MERGE_ACTION: ("merge", "Merge"),
    card.APPROVE_ACTION: ("approve", "Approve"),
    card.CLOSE_ACTION: ("close the pull request", "Close PR"),
}
CONNECT_FIRST = (
    "To {verb} as yourself, connect your GitHub account first: Honk acts with your own "
    "GitHub permissions, never its own. Then press *{label}* again."
)


async def on_action(
    ctx: SlackContext, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    action_id = str(action.get("action_id") or "")
    run = await run_of(ctx, action)
    if run is None:
        await ctx.tell(origin, UNKNOWN_RUN)
        return
    if action_id == card.CONTINUE_ACTION:
        await continue_run(ctx, payload, run, origin)
        return
    target = card.parse_target(str(action.get("value") or ""))
    if target is None or run.pr_number is None:
        await ctx.tell(origin, UNKNOWN_RUN)
        return
    found = await ctx.connections.client(origin.user.key) if ctx.connections else None
    if found is None:
        verb, label = VERBS[action_id]
        await offer_connect(ctx, origin, CONNECT_FIRST.format(verb=verb, label=label))
        return
    connection, gh = found
    _run_id, sha = target
    try:
        if action_id == card.MERGE_ACTION:
            await merge(ctx, payload, run, sha, connection, gh, origin)
        elif action_id == card.APPROVE_ACTION:
            await approve(ctx, run, sha, connection, gh, origin)
        else:
            await close(ctx, payload, run, connection, gh, origin)
    except Refused as exc:
        said = str(exc)
        if exc.status == 401 and ctx.connections is not None:
            # Revoked on GitHub (the webhook may not have come yet): connect again.
            await ctx.connections.forget(origin.user.key, "GitHub refused its token")
            verb, label = VERBS[action_id]
            await offer_connect(ctx, origin, CONNECT_FIRST.format(verb=verb, label=label))
            return
        log.info("%s: %s refused for %s: %s", run.repo, action_id, connection.login, said)
        who = "" if said == OWN_APPROVAL else "GitHub refused: "
        await ctx.tell(origin, f"{who}{said}")


async def merge(
    ctx: SlackContext,
    payload: Mapping[str, Any],
    run: Run,
    sha: str,
    connection: Connection,
    gh: GitHubClient,
    origin: Origin,
) -> None:
    """The repository's merge method (`merge:`), GitHub's merge as the person, then the
    merge commit recorded so its CI and deployments reach the thread."""
    assert run.pr_number is not None
    installation = await ctx.github.installation_client(run.installation_id)
    try:
        config = await ctx.config(installation, run.repo)
    except RepoConfigError as exc:
        raise Refused(f"Honk cannot read `.github/honk.yml`: {exc}") from None
    try:
        repo_info = await gh.getitem(f"/repos/{run.repo}")
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None
    method = merge_method(repo_info, config.merge)
    merged_sha = await merge_pull(gh, run, sha=sha, method=method)
    pr = await installation.pull(run.repo, run.pr_number)
    base = str((pr.get("base") or {}).get("ref") or repo_info.get("default_branch") or "")
    await records.record_merge(
        ctx.store,
        run.repo,
        merged_sha,
        records.Merge(run.id, run.pr_number, connection.login, origin.user.id, base, method),
    )
    await ctx.store.runs.add_step(
        run.id, "merge", f"merged by @{connection.login} ({method}) as {merged_sha[:7]}"
    )
    log.info("%s#%s merged by %s from Slack", run.repo, run.pr_number, connection.login)
    text, blocks = card.merged(
        user_id=origin.user.id,
        login=connection.login,
        method=method,
        sha=merged_sha,
        base=base,
        pr_url=run.pr_url or "",
        pr_number=run.pr_number,
    )
    # The card first: by the time the thread says it was merged, no one is offered Merge.
    await ctx.mark_clicked(payload, f":tada: Merged by <@{origin.user.id}>.")
    await _tell_thread(ctx, run, origin, text, blocks)


async def approve(
    ctx: SlackContext,
    run: Run,
    sha: str,
    connection: Connection,
    gh: GitHubClient,
    origin: Origin,
) -> None:
    """A review APPROVE as the person; the card stays for whoever merges."""
    assert run.pr_number is not None
    await approve_pull(gh, run, sha=sha, login=connection.login)
    await ctx.store.runs.add_step(run.id, "approve", f"approved by @{connection.login}")
    pr = pr_link(run.pr_url or "", run.pr_number)
    text = (
        f":white_check_mark: <@{escape(origin.user.id)}> approved {pr} "
        f"(as `{escape(connection.login)}` on GitHub)."
    )
    fallback = f"{escape(connection.login)} approved PR #{run.pr_number}"
    await _tell_thread(ctx, run, origin, *card.note(text, fallback))


async def close(
    ctx: SlackContext,
    payload: Mapping[str, Any],
    run: Run,
    connection: Connection,
    gh: GitHubClient,
    origin: Origin,
) -> None:
    assert run.pr_number is not None
    await close_pull(gh, run)
    await ctx.store.runs.add_step(run.id, "close", f"closed by @{connection.login}")
    pr = pr_link(run.pr_url or "", run.pr_number)
    text = f":no_entry_sign: <@{escape(origin.user.id)}> closed {pr}; nothing was merged."
    await ctx.mark_clicked(payload, f":no_entry_sign: Closed by <@{origin.user.id}>.")
    await _tell_thread(ctx, run, origin, *card.note(text, f"PR #{run.pr_number} closed"))


async def continue_run(
    ctx: SlackContext, payload: Mapping[str, Any], run: Run, origin: Origin
) -> None:
    """Carry on where a run stopped at its limit: a follow-up on the same branch, for
    writers (its budget is the repository's, within the operator's HONK_MAX_TURNS)."""
    allowed = await ctx.authorize(origin, run.repo, run.installation_id)
    if allowed is None:
        return
    follow_up = await queue_follow_up(
        ctx.store,
        run,
        requested_by=allowed.login,
        instructions=run.instructions,
        kind=RunKind.CONTINUE,
        wake_workers=ctx.wake_workers,
    )
    log.info("queued run %s, continuing run %s, from Slack", follow_up.id, run.id)
    note = f":arrow_forward: <@{origin.user.id}> asked Honk to continue: run {follow_up.id}."
    await ctx.mark_clicked(payload, note)


async def _tell_thread(
    ctx: SlackContext, run: Run, origin: Origin, text: str, blocks: list[dict[str, Any]]
) -> None:
    """In the run's thread (where the card is); never raises."""
    thread = run.slack_thread
    try:
        if thread is not None:
            await ctx.slack.client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
        else:
            await ctx.tell(origin, text, blocks=blocks)
    except Exception as exc:
        log.warning("could not post in the run's thread: %s", describe_error(exc))
