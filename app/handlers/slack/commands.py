"""Slack requests (slash commands, mentions, DMs), done from the stored inbox: ask, repo, link."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock

from app.github.pacing import Priority, writes_at
from app.handlers.slack.channels import channel_repo, on_repo_command
from app.handlers.slack.conversation import SlackContext, SlackRouter
from app.handlers.slack.link import on_link_command, on_unlink_command
from app.handlers.slack.parsing import (
    Command,
    Origin,
    command_request,
    event_request,
    issue_body,
    issue_title,
)
from app.log import describe_error
from app.models import SlackThread
from app.run_requests import start_issue_run
from app.slack import blocks
from app.slack.threads import mark_user_root

log = logging.getLogger(__name__)

SLACK_EVENT = "slack"  # the event name of a stored Slack request in the deliveries inbox
router = SlackRouter()  # this module's kinds of stored request: command, event

HELP = (
    "*Ask Honk from Slack*\n"
    "• `/honk owner/repo <what to do>`: Honk opens an issue there and turns it into a tested "
    "pull request; every update comes to the thread of the request.\n"
    "• `@Honk <what to do> in owner/repo`: the same from a mention or a direct message.\n"
    "• `/honk repo owner/repo` gives this channel a default repository, so "
    "`/honk <what to do>` is enough here (`/honk repo` shows it, `/honk repo clear` removes it).\n"
    "• `/honk link` connects your GitHub account (you sign in with GitHub): Honk then knows "
    "you, and *Merge* and *Approve* act as you, with your own permissions "
    "(`/honk unlink` forgets it).\n"
    "• `/honk fleet` opens a form to take one change to many repositories (a fleet): Honk "
    "shows the plan, tries a few first, and fans out when you press *Continue*.\n"
    "Honk's messages have *Retry* (with optional instructions), *Cancel* and *Open PR* buttons; "
    "a green PR gets *Merge*, *Approve*, *Request changes* and *Close PR*. "
    "As on GitHub, you need write access to the repository."
)
NEED_REPO = (
    "Which repository? Ask with `/honk owner/repo <what to do>` or `@Honk <what to do> in "
    "owner/repo`, or give this channel a default with `/honk repo owner/repo`."
)
NEED_TEXT = "What should Honk do in `{repo}`? For example `/honk {repo} fix the login crash`."
FLEET_BY_COMMAND = (
    "Ask for a fleet change with the `/honk fleet` command: it opens a form for the request, "
    "the repositories and how many to try first."
)
CANNOT_POST = (
    "Honk cannot post in this conversation (invite it with `/invite @Honk`); the run's "
    "updates go to Honk's default channel."
)


def quick_answer(command: Command) -> str | None:
    """Answers that need no outside call: help, and a request with nothing to do."""
    if command.kind == "help":
        return HELP
    if command.kind == "fleet":  # a mention or a DM: only a slash command can open the form
        return FLEET_BY_COMMAND
    if command.kind == "ask" and not command.text:
        return NEED_TEXT.format(repo=command.repo or "owner/repo")
    return None


def acknowledgement(command: Command) -> str:
    """What Slack shows at once, while the request waits in the inbox."""
    if command.kind == "ask":
        where = f" in `{command.repo}`" if command.repo else ""
        return f"On it: asking Honk{where}…"
    return "One moment…"


@router.register("command")
async def on_stored_command(ctx: SlackContext, stored: Mapping[str, Any]) -> None:
    """A slash command's slow work, from the inbox."""
    await _carry_out(ctx, *command_request(stored.get("form") or {}))


@router.register("event")
async def on_stored_event(ctx: SlackContext, stored: Mapping[str, Any]) -> None:
    """A mention's or a direct message's slow work, from the inbox."""
    request = event_request(stored.get("payload") or {})
    if request is not None:
        await _carry_out(ctx, *request)


async def _carry_out(ctx: SlackContext, origin: Origin, command: Command) -> None:
    quick = quick_answer(command)
    await ctx.guard(
        ctx.tell(origin, quick) if quick is not None else _handle(ctx, command, origin), origin
    )


async def _handle(ctx: SlackContext, command: Command, origin: Origin) -> None:
    if command.kind == "ask":
        await ask(ctx, command, origin)
    elif command.kind == "repo":
        await on_repo_command(ctx, command, origin)
    elif command.kind == "link":
        await on_link_command(ctx, origin)
    elif command.kind == "unlink":
        await on_unlink_command(ctx, origin)


async def ask(ctx: SlackContext, command: Command, origin: Origin) -> None:
    """Open an issue with the request, queue its run, and say so in the request's thread."""
    repo = command.repo or await channel_repo(ctx.store, origin.channel)
    if repo is None:
        await ctx.tell(origin, NEED_REPO)
        return
    allowed = await ctx.authorize(origin, repo)
    if allowed is None:
        return
    thread, own_root = await _open_thread(ctx, origin, repo, command.text)
    asked_in = SlackThread(origin.channel, origin.message_ts) if origin.message_ts else own_root
    permalink = await _permalink(ctx, asked_in)
    with writes_at(Priority.URGENT):  # a person waits for it
        issue = await allowed.gh.create_issue(
            repo,
            issue_title(command.text),
            issue_body(command.text, allowed.login, permalink),
            labels=[ctx.settings.github.label],
        )
    # Queued here, not by the issues.labeled webhook: that event's sender is Honk's bot,
    # which the labeled handler ignores (and one active run per issue holds anyway).
    run = await start_issue_run(
        allowed.gh,
        ctx.store,
        repo=repo,
        installation_id=allowed.installation_id,
        issue=issue,
        requested_by=allowed.login,
        delivery_id=origin.request_id[:100] or None,
        slack_thread=thread,
        wake_workers=ctx.wake_workers,
    )
    if run is None:  # pragma: no cover - a new issue has no run yet
        await ctx.tell(origin, f"{issue['html_url']} already has an active run.")
        return
    log.info("queued run %s for %s#%s from Slack", run.id, repo, issue["number"])
    text, blks = blocks.run_started(
        blocks.Headline(
            repo=repo,
            issue_number=issue["number"],
            issue_title=issue["title"],
            issue_url=issue["html_url"],
            requested_by=allowed.login,
            run_id=run.id,
        )
    )
    client = ctx.slack.client
    if thread is None:
        await ctx.tell(origin, f"Honk opened {issue['html_url']} and is on it.")
    elif own_root is not None:
        await client.chat_update(channel=own_root.channel, ts=own_root.ts, text=text, blocks=blks)
    else:
        await client.chat_postMessage(
            channel=thread.channel, thread_ts=thread.ts, text=text, blocks=blks, unfurl_links=False
        )


async def _open_thread(
    ctx: SlackContext, origin: Origin, repo: str, request: str
) -> tuple[SlackThread | None, SlackThread | None]:
    """The run's thread, and the root message Honk posted itself (which it may edit).

    A mention or DM is a message: its thread is the place. A slash command leaves no
    message, so Honk posts the request as the root; where it cannot post (a private
    channel it is not in), the run reports in the default channel instead.
    """
    if origin.message_ts is not None:
        thread = SlackThread(origin.channel, origin.thread_root or origin.message_ts)
        await mark_user_root(ctx.store, thread)
        return thread, None
    quoted = "\n".join(f"&gt; {line}" for line in blocks.escape(request).splitlines())
    head = blocks.clip(f"<@{origin.user.id}> asked Honk in `{repo}`:\n{quoted}", 3000)
    try:
        posted = await ctx.slack.client.chat_postMessage(
            channel=origin.channel,
            text=head,
            blocks=[SectionBlock(text=MarkdownTextObject(text=head)).to_dict()],
            unfurl_links=False,
        )
    except SlackApiError as exc:
        log.warning("cannot post in %s: %s", origin.channel, describe_error(exc))
        await ctx.tell(origin, CANNOT_POST)
        return None, None
    root = SlackThread(str(posted["channel"]), str(posted["ts"]))
    return root, root


async def _permalink(ctx: SlackContext, message: SlackThread | None) -> str | None:
    if message is None:
        return None
    try:
        answer = await ctx.slack.client.chat_getPermalink(
            channel=message.channel, message_ts=message.ts
        )
    except SlackApiError as exc:
        log.warning("no permalink for the request: %s", describe_error(exc))
        return None
    return str(answer.get("permalink") or "") or None
