"""Fleet changes asked for from Slack: `/honk fleet` opens a form, its submission plans and
starts the fleet in a thread of its own (the summary's buttons are fleet_buttons.py's).

The form opens at once (Slack's trigger lasts 3 seconds); what can be checked without
GitHub (the request, the selection's lines, the canary) is checked as it is submitted, so
Slack shows the mistake beside its field. The rest happens from the inbox: who the person
is on GitHub, the selection resolved with the installation's client, a message in the
channel that becomes the fleet's thread, the plan in it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import InputBlock, PlainTextInputElement
from slack_sdk.models.views import View

from app.fleet.requests import FleetError, start_fleet
from app.fleet.selection import Plan, SelectionError, describe_plan, parse_selection
from app.fleet_models import Fleet, FleetOrigin, NewFleet
from app.handlers.fleet import canary_line, default_canary, fleet_limit, plan_fleet
from app.handlers.slack.conversation import SlackContext, unmapped_reason
from app.handlers.slack.parsing import Command, Origin, interaction_user
from app.log import describe_error
from app.models import SlackThread
from app.slack import blocks

log = logging.getLogger(__name__)

FLEET_VIEW = "honk_fleet_modal"
REQUEST_BLOCK, REPOS_BLOCK, OWNER_BLOCK, CANARY_BLOCK = (
    "fleet_request",
    "fleet_repositories",
    "fleet_owner",
    "fleet_canary",
)
INPUT = "text"

SELECTION_HINT = (
    "One a line: owner/name, owner/*, topic:NAME, language:NAME, search:CODE QUERY; "
    "include:archived and include:forks take those in too."
)
NOT_STARTED = "Honk did not start the fleet: {why}"
NOT_INSTALLED = "Honk is not installed on the GitHub account `{owner}`."
CANNOT_POST = (
    "Honk cannot post in this conversation (invite it with `/invite @Honk`), so the fleet "
    "has no Slack thread; follow it on its page{page}."
)


# -- the form -------------------------------------------------------------------------------


def fleet_view(metadata: str, request: str = "") -> dict[str, Any]:
    """The form: the request, the repositories, whose installation, the canary's size."""

    def text(**more: Any) -> PlainTextInputElement:
        return PlainTextInputElement(action_id=INPUT, **more)

    return View(
        type="modal",
        callback_id=FLEET_VIEW,
        title="Fleet change",
        submit="Plan and start",
        close="Cancel",
        private_metadata=metadata,
        blocks=[
            InputBlock(
                block_id=REQUEST_BLOCK,
                label="What should change in each repository?",
                element=text(multiline=True, max_length=3000, initial_value=request or None),
            ),
            InputBlock(
                block_id=REPOS_BLOCK,
                label="Which repositories?",
                hint=SELECTION_HINT,
                element=text(
                    multiline=True, max_length=3000, placeholder="octo-org/*\nlanguage:python"
                ),
            ),
            InputBlock(
                block_id=OWNER_BLOCK,
                optional=True,
                label="GitHub account",
                hint="Whose installation of Honk; only needed when no line above names an "
                "owner (owner/name, owner/*).",
                element=text(max_length=39, placeholder="octo-org"),
            ),
            InputBlock(
                block_id=CANARY_BLOCK,
                optional=True,
                label="How many to try first",
                hint="The canary: Honk waits for Continue after these. 1 when left empty.",
                element=text(max_length=4, placeholder="1"),
            ),
        ],
    ).to_dict()


async def open_form(
    ctx: SlackContext, origin: Origin, asked: Command, trigger_id: str
) -> str | None:
    """`/honk fleet [request]`: the form, opened within Slack's 3 seconds. What to tell the
    person when it could not be opened, else None."""
    metadata = json.dumps(
        {
            "channel": origin.channel,
            "user": origin.user.key,
            "response_url": origin.response_url,
            "is_dm": origin.is_dm,
        }
    )
    try:
        await ctx.slack.client.views_open(
            trigger_id=trigger_id, view=fleet_view(metadata, asked.text)
        )
    except SlackApiError as exc:
        return f"Honk could not open the form: {describe_error(exc)}"
    return None


@dataclass(frozen=True)
class FleetForm:
    """What the form's fields say."""

    request: str
    repositories: str
    owner: str
    canary: str


def submitted(view: Mapping[str, Any]) -> FleetForm:
    values = (view.get("state") or {}).get("values") or {}

    def field(block: str) -> str:
        return str(((values.get(block) or {}).get(INPUT) or {}).get("value") or "").strip()

    return FleetForm(
        field(REQUEST_BLOCK), field(REPOS_BLOCK), field(OWNER_BLOCK), field(CANARY_BLOCK)
    )


_NAMED_OWNER = re.compile(
    r"^\s*(?:-\s+)?(?P<owner>[A-Za-z0-9][A-Za-z0-9-]*)/(?:\*|[A-Za-z0-9._-]+)\s*(?:#.*)?$"
)


def owners_named(selection: str) -> list[str]:
    """The accounts the selection's `owner/name` and `owner/*` lines name, in order, once."""
    found: dict[str, str] = {}
    for line in selection.splitlines():
        if (match := _NAMED_OWNER.match(line)) is not None:
            found.setdefault(match["owner"].lower(), match["owner"])
    return list(found.values())


def form_errors(payload: Mapping[str, Any]) -> dict[str, str]:
    """Mistakes in a submitted fleet form, by field, for Slack to show beside them (no
    GitHub needed); empty for anything else, or a form without mistakes."""
    view = payload.get("view") or {}
    if payload.get("type") != "view_submission" or view.get("callback_id") != FLEET_VIEW:
        return {}
    form = submitted(view)
    errors: dict[str, str] = {}
    if not form.request:
        errors[REQUEST_BLOCK] = "Say what should change."
    try:
        parse_selection(form.repositories)
    except SelectionError as exc:
        errors[REPOS_BLOCK] = blocks.clip(str(exc), 150)
    owners = owners_named(form.repositories)
    if not form.owner and len(owners) != 1:
        errors[OWNER_BLOCK] = (
            "Name the GitHub account: no line above names an owner."
            if not owners
            else blocks.clip(f"Name one: a fleet runs in one account ({', '.join(owners)}).", 150)
        )
    if form.canary and (not form.canary.isdigit() or int(form.canary) < 1):
        errors[CANARY_BLOCK] = "A number of repositories, 1 or more."
    return errors


async def on_submitted(ctx: SlackContext, payload: Mapping[str, Any]) -> None:
    """The submitted form, from the inbox: the person, the plan, the fleet and its thread."""
    view = payload.get("view") or {}
    user = interaction_user(payload)
    try:
        metadata = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("user") != user.key:
        log.warning("a fleet form was submitted without its metadata, or by someone else")
        return
    origin = Origin(
        user,
        str(metadata.get("channel") or ""),
        request_id=f"view:{view.get('id', '')}",
        response_url=metadata.get("response_url") or None,
        is_dm=bool(metadata.get("is_dm")),
    )
    await ctx.guard(start(ctx, origin, submitted(view)), origin)


async def start(ctx: SlackContext, origin: Origin, form: FleetForm) -> None:
    owners = owners_named(form.repositories)
    owner = form.owner or (owners[0] if owners else "")
    installation_id = await installation_of(ctx, owner)
    if installation_id is None:
        await ctx.tell(origin, NOT_INSTALLED.format(owner=blocks.escape(owner)))
        return
    gh = await ctx.github.installation_client(installation_id)
    who = await ctx.identity.github_login(origin.user, gh, owner)
    if who.login is None:
        why = unmapped_reason(who, owner)
        await ctx.tell(origin, NOT_STARTED.format(why=f"Honk doesn't know who you are: {why}."))
        return
    try:
        plan = await plan_fleet(
            gh, form.repositories, requester=who.login, limit=fleet_limit(ctx.settings)
        )
    except SelectionError as exc:
        await ctx.tell(origin, NOT_STARTED.format(why=blocks.escape(str(exc))))
        return
    if not plan.chosen:
        why = f"it chose no repository.\n{slack_markdown(describe_plan(plan))}"
        await ctx.tell(origin, NOT_STARTED.format(why=why))
        return
    thread = await open_thread(ctx, origin, form.request, who.login, len(plan.chosen))
    new = NewFleet(
        installation_id=installation_id,
        requested_by=who.login,
        request=form.request,
        selection=form.repositories,
        origin=FleetOrigin.SLACK,
        canary_size=int(form.canary) if form.canary else default_canary(ctx.settings),
        slack_thread=thread,
    )
    try:
        # Woken once the plan is in the thread, so the thread reads plan, then summary.
        fleet = await start_fleet(ctx.store, new, plan.targets)
    except FleetError as exc:
        await ctx.tell(origin, NOT_STARTED.format(why=str(exc)))
        return
    chosen = len(plan.chosen)
    log.info("fleet %s asked from Slack by %s: %d repositories", fleet.id, who.login, chosen)
    said = plan_message(fleet, plan, ctx.settings.web.fleet_url(fleet.id))
    try:
        if thread is None:
            page = ctx.settings.web.fleet_url(fleet.id)
            cannot = CANNOT_POST.format(page=f" {page}" if page else "")
            await ctx.tell(origin, f"{said}\n\n{cannot}")
        else:
            await ctx.slack.client.chat_postMessage(
                channel=thread.channel, thread_ts=thread.ts, text=said, unfurl_links=False
            )
    finally:
        ctx.wake_fleets()


async def installation_of(ctx: SlackContext, owner: str) -> int | None:
    """The installation of Honk on the GitHub account `owner` (asked with the App's JWT)."""
    if not owner:
        return None
    async for installation in ctx.github.app_client().getiter("/app/installations"):
        account = installation.get("account") or {}
        if str(account.get("login") or "").lower() == owner.lower():
            return int(installation["id"])
    return None


async def open_thread(
    ctx: SlackContext, origin: Origin, request: str, login: str, count: int
) -> SlackThread | None:
    """A message in the channel the form was opened from: the fleet's thread, where its
    summary and milestones go. None where Honk cannot post."""
    quoted = "\n".join(f"&gt; {line}" for line in blocks.escape(request).splitlines())
    head = (
        f"<@{origin.user.id}> asked for a fleet change in {count} repositories "
        f"(as `{blocks.escape(login)}` on GitHub):\n{quoted}"
    )
    try:
        posted = await ctx.slack.client.chat_postMessage(
            channel=origin.channel, text=blocks.clip(head, 3000), unfurl_links=False
        )
    except SlackApiError as exc:
        log.warning("cannot post the fleet's thread in %s: %s", origin.channel, describe_error(exc))
        return None
    return SlackThread(str(posted["channel"]), str(posted["ts"]))


def plan_message(fleet: Fleet, plan: Plan, page: str | None) -> str:
    """The plan in the fleet's thread, with what happens next."""
    link = f" Its page: <{page}|fleet {fleet.id}>." if page else ""
    return (
        f"*Fleet {fleet.id}*: the plan.\n{slack_markdown(describe_plan(plan))}\n\n"
        f"*Next:* Honk tries {canary_line(fleet, plan)} and reports here; the rest wait "
        "for *Continue* on the fleet's summary in this thread. Its other buttons: *Pause* "
        f"and *Resume*, *Stop*, *Retry failed*, *Merge all green* (as you), *Roll back*.{link}"
    )


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.M)
_BULLET = re.compile(r"^(\s*)[-*]\s+", re.M)


def slack_markdown(markdown: str) -> str:
    """GitHub's Markdown (the plan's) as Slack's mrkdwn: bold, links, headings, bullets."""
    text = blocks.escape(markdown)
    text = _HEADING.sub(r"**\1**", text)
    text = _BULLET.sub(r"\1• ", text)
    text = _BOLD.sub(r"*\1*", text)
    return _LINK.sub(r"<\2|\1>", text)
