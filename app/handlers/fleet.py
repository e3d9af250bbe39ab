"""Fleet changes asked for on GitHub: an issue labelled `honk-fleet`, and `/honk fleet …` on it.

The issue's body holds the request and a `repositories:` block (docs/fleet.md, "Asking for a
fleet"); the label, put on by someone with write access to the issue's repository, resolves
the selection with the installation's client, stores the fleet and comments its plan. That
comment is the fleet's summary, which the conductor keeps current. What Slack's form and the
command line share with it (the limit, the canary's default, the words of the plan) is here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from gidgethub import routing

from app.config import Settings
from app.errors import HonkError
from app.fleet.requests import FleetCommand, FleetError, command, start_fleet
from app.fleet.resolving import resolve
from app.fleet.selection import Plan, SelectionError, describe_plan, parse_selection
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetTarget, NewFleet
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.github.payloads import IssueCommentEvent, IssuesEvent
from app.github.users import is_bot
from app.handlers.comments import Where, first_time, parse_command
from app.handlers.context import Context
from app.run_requests import may_act
from app.store import Store

router = routing.Router()
log = logging.getLogger(__name__)

FLEET_LABEL = "honk-fleet"
FLEET_LABEL_COLOR = "5319e7"
FLEET_LABEL_DESCRIPTION = "Ask Honk to take this issue's request to many repositories"
STEER_WORDS = tuple(asked.value for asked in FleetCommand)

FORMAT = (
    "Write the request in the issue's body, then a `repositories:` block: one line each, "
    "until a blank line (or a fenced block), and optionally `canary: N`:\n\n"
    "```\n"
    "Replace the deprecated `fetch_all()` with `fetch(page_size=100)`.\n\n"
    "repositories:\n"
    "octo-org/*\n"
    "language:python\n"
    "search:fetch_all(\n\n"
    "canary: 2\n"
    "```\n\n"
    "A line is `owner/name`, `owner/*`, `topic:NAME`, `language:NAME`, `search:CODE QUERY`, "
    "`include:archived` or `include:forks`."
)
NOT_STARTED = "@{user} Honk did not start this fleet: {why}"
ALREADY = (
    "@{user} This issue already has fleet {fleet_id} ({state}); steer it with `/honk fleet …`."
)
NO_FLEET = "@{user} This issue has no fleet: label it `{label}` to ask for one."
NOT_YOURS = (
    "@{user} Fleet {fleet_id} is steered by @{requester}, who asked for it, or by someone "
    "with write access to `{repo}`; your permission there is `{role}`."
)
MERGE_AS_YOURSELF = (
    "@{user} *Merge all green* merges as you, with your own GitHub token: press it on "
    "the fleet's page{page} or on its summary in Slack."
)
STEER_HELP = (
    "Steer a fleet with a comment on its issue (the requester, or write access):\n\n"
    "- `/honk fleet continue`: fan out to the rest after the canary (or without waiting "
    "for it)\n"
    "- `/honk fleet pause` and `/honk fleet resume`: queue nothing more for now; carry on\n"
    "- `/honk fleet stop`: queue nothing more and cancel what runs; the fleet ends\n"
    "- `/honk fleet retry`: take the failed and vetoed repositories up again\n"
    "- `/honk fleet rollback`: stop, and close every unmerged PR of the fleet"
)


class FleetAskError(HonkError):
    """An issue body that does not ask for a fleet as docs/fleet.md shows; for people."""


@dataclass(frozen=True)
class FleetAsk:
    """What a `honk-fleet` issue asks for."""

    request: str  # the change, as written (everything outside the blocks)
    repositories: str  # the selection as written (the `repositories:` block's lines)
    canary: int | None = None  # `canary: N`, when given


def fleet_limit(settings: Settings) -> int:
    """The most repositories one fleet takes (the selection leaves the rest out, saying so)."""
    return settings.fleet.max_repos


def default_canary(settings: Settings) -> int:
    """How many repositories a fleet tries first when its requester does not say."""
    return settings.fleet.canary_size


# -- the issue's body ------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_BLOCK_START = re.compile(r"^\s*(?:#{1,6}\s*)?\**repositories\**\s*:\**\s*(?P<rest>.*)$", re.I)
_CANARY = re.compile(r"^\s*\**canary\**\s*:\**\s*(?P<value>.*?)\s*$", re.I)
_FENCE = re.compile(r"^\s*(```+|~~~+)")


def parse_fleet_issue(body: str | None) -> FleetAsk:
    """The request, the `repositories:` block and `canary: N` of a fleet issue's body.

    The block runs from its line to the first blank line, or is the fenced block right
    after it; `canary:` may be anywhere outside it; everything else is the request.
    """
    lines = _HTML_COMMENT.sub("", body or "").splitlines()
    request: list[str] = []
    block: list[str] | None = None
    canary: int | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        start = _BLOCK_START.match(line) if block is None else None
        if start is not None:
            block, index = _read_block(lines, index, start["rest"].strip())
            continue
        if (found := _CANARY.match(line)) is not None:
            canary = _canary(found["value"])
            continue
        request.append(line)
    if block is None or not any(line.strip() for line in block):
        raise FleetAskError(f"the issue's body has no `repositories:` block.\n\n{FORMAT}")
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(request)).strip()
    if not text:
        raise FleetAskError(f"the issue's body says no request, only repositories.\n\n{FORMAT}")
    return FleetAsk(text, "\n".join(block).strip(), canary)


def _read_block(lines: list[str], index: int, rest: str) -> tuple[list[str], int]:
    """The block after `repositories:` (which may hold its first line): a fenced block, or
    lines up to a blank one. Blank lines right after the heading are passed over."""
    if rest and not _FENCE.match(rest):
        block = [rest]
    else:
        block = []
        if not rest:
            while index < len(lines) and not lines[index].strip():
                index += 1
            if index < len(lines) and _FENCE.match(lines[index]):
                rest = lines[index]
                index += 1
        if rest:  # fenced: up to the closing fence
            fence = _FENCE.match(rest)
            assert fence is not None
            while index < len(lines) and not lines[index].strip().startswith(fence.group(1)):
                block.append(lines[index])
                index += 1
            return block, index + 1
    while index < len(lines) and lines[index].strip():
        block.append(lines[index])
        index += 1
    return block, index


def _canary(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise FleetAskError(
            f"`canary: {value}` is not a number of repositories to try first (1 or more)."
        )
    return int(value)


# -- planning and starting, for every entry ------------------------------------------------


async def plan_fleet(gh: GitHubClient, selection: str, *, requester: str, limit: int) -> Plan:
    """The selection as written, resolved with the installation's client `gh`."""
    return await resolve(parse_selection(selection), gh, requester=requester, limit=limit)


def plan_of(targets: list[FleetTarget]) -> Plan:
    """A stored fleet's plan again (its repositories as chosen, skipped ones with why)."""
    return Plan(targets=tuple(targets))


async def stored_plan(store: Store, fleet: Fleet) -> Plan:
    repos = await store.fleets.repos(fleet.id)
    return plan_of(
        [
            FleetTarget(
                r.repo, (r.reason or "left out") if r.state is FleetRepoState.SKIPPED else None
            )
            for r in repos
        ]
    )


def canary_line(fleet: Fleet, plan: Plan) -> str:
    first = plan.chosen[: fleet.canary_size]
    named = ", ".join(f"`{repo}`" for repo in first)
    return f"the first {len(first)} (the canary: {named})"


def issue_plan_comment(fleet: Fleet, plan: Plan, page: str | None) -> str:
    """The plan as the fleet issue shows it: the comment the summary keeps current."""
    link = f" [The fleet's page]({page}) follows every repository." if page else ""
    return (
        f"**Fleet {fleet.id}**, asked for by @{fleet.requested_by}: Honk takes this issue's "
        "request to the repositories below.\n\n"
        f"{describe_plan(plan)}\n\n"
        f"**Next:** Honk tries {canary_line(fleet, plan)} and shows their pull requests, "
        "verdicts and cost here; the rest wait until you say `/honk fleet continue`.\n\n"
        f"{STEER_HELP}\n\n"
        f"This comment is kept up to date as the fleet goes.{link}"
    )


# -- the label ------------------------------------------------------------------------------


@router.register("issues", action="labeled")
async def on_issue_labeled(context: Context) -> None:
    payload = cast(IssuesEvent, context.payload)
    labelled = payload.get("label")
    if (labelled.get("name", "") if labelled else "").lower() != FLEET_LABEL:
        return
    # Its writes answer a person: ahead of runs' and bulk writes.
    with writes_at(Priority.URGENT):
        await ask_for_fleet(context)


async def ask_for_fleet(context: Context) -> None:
    """The gate, the body read as GitHub has it now, then the plan: stored and commented."""
    payload = cast(IssuesEvent, context.payload)
    repo, number, user = context.repo, context.number, payload["sender"]["login"]
    if context.is_bot or payload["issue"].get("pull_request"):
        log.info("ignoring %s on %s#%s: a bot, or a pull request", FLEET_LABEL, repo, number)
        return
    issue = await context.gh.issue(repo, number)
    names = {str(one.get("name") or "").lower() for one in issue.get("labels") or []}
    if FLEET_LABEL not in names:
        log.info("%s#%s no longer has the %s label; no fleet", repo, number, FLEET_LABEL)
        return  # a delivery replayed after the label was taken off
    permission = await may_act(context.gh, repo, user)
    if not permission.allowed:
        then = f"Ask a maintainer to add the `{FLEET_LABEL}` label."
        await context.comment(permission.refusal("Starting a fleet", then=then))
        return
    store = context.store
    existing = await store.fleets.find(issue_repo=repo, issue_number=number, limit=1)
    if existing and not existing[0].state.ended:
        await _comment_once(context, existing[0])
        return
    try:
        ask = parse_fleet_issue(issue.get("body"))
        plan = await plan_fleet(
            context.gh, ask.repositories, requester=user, limit=fleet_limit(context.settings)
        )
        new = NewFleet(
            installation_id=context.installation_id,
            requested_by=user,
            request=ask.request,
            selection=ask.repositories,
            origin=FleetOrigin.ISSUE,
            canary_size=ask.canary or default_canary(context.settings),
            issue_repo=repo,
            issue_number=number,
        )
        # Not woken yet: the conductor would write a summary comment of its own if it
        # came before the plan's comment is stored as the summary.
        fleet = await start_fleet(store, new, plan.targets)
    except (FleetAskError, SelectionError) as exc:
        await context.comment(NOT_STARTED.format(user=user, why=_sentence(exc)))
        return
    except FleetError as exc:
        why = f"{_sentence(exc)}\n\n{describe_plan(plan)}"
        await context.comment(NOT_STARTED.format(user=user, why=why))
        return
    chosen = len(plan.chosen)
    log.info("fleet %s asked on %s#%s by %s: %d repositories", fleet.id, repo, number, user, chosen)
    try:
        await _summary_comment(context, fleet, plan)
    finally:
        context.services.wake_fleets()  # the comment or not, the canary goes on


async def _comment_once(context: Context, fleet: Fleet) -> None:
    """The label again while a fleet of this issue goes on: its plan comment, if a crash
    lost it, else a pointer to the fleet."""
    if fleet.summary_comment_id is None:
        await _summary_comment(context, fleet, await stored_plan(context.store, fleet))
        return
    user = context.sender.get("login", "")
    await context.comment(ALREADY.format(user=user, fleet_id=fleet.id, state=fleet.state.value))


async def _summary_comment(context: Context, fleet: Fleet, plan: Plan) -> None:
    page = context.settings.web.fleet_url(fleet.id)
    posted = await context.comment(issue_plan_comment(fleet, plan, page))
    await context.store.fleets.update(fleet.id, summary_comment_id=int(posted["id"]))


def _sentence(exc: Exception) -> str:
    """The error's message to follow a colon: "Nothing to run" as "nothing to run"."""
    said = str(exc).strip()
    return said[:1].lower() + said[1:] if said[1:2].islower() else said


# -- /honk fleet … on the fleet issue ----------------------------------------------------------


@router.register("issue_comment", action="created")
async def on_fleet_comment(context: Context) -> None:
    payload = cast(IssueCommentEvent, context.payload)
    comment = payload["comment"]
    asked = parse_command(comment.get("body"))
    if asked is None or asked.name != "fleet":
        return  # comments.py answers every other /honk command
    author: Mapping[str, Any] = comment.get("user") or {}
    if context.is_bot or is_bot(author):
        return
    where = Where.of_issue_comment(context.repo, payload)
    with writes_at(Priority.URGENT):
        await steer(context, where, asked.text, payload["sender"]["login"])


async def steer(context: Context, where: Where, text: str, user: str) -> None:
    """`/honk fleet <word>`: the gate (the requester, or write access), then the request."""
    word = text.split(maxsplit=1)[0].lower() if text.split() else ""
    store = context.store
    found = await store.fleets.find(issue_repo=where.repo, issue_number=where.number, limit=1)
    if not found:
        await context.comment(NO_FLEET.format(user=user, label=FLEET_LABEL))
        return
    fleet = found[0]
    if word == "merge":
        page = context.settings.web.fleet_url(fleet.id)
        where_page = f" ({page})" if page else ""
        await context.comment(MERGE_AS_YOURSELF.format(user=user, page=where_page))
        return
    if word not in STEER_WORDS:
        said = f"`/honk fleet {word}` is not a fleet command." if word else "Which one?"
        await context.comment(f"@{user} {said}\n\n{STEER_HELP}")
        return
    if user.lower() != fleet.requested_by.lower():
        permission = await may_act(context.gh, where.repo, user)
        if not permission.allowed:
            await context.comment(
                NOT_YOURS.format(
                    user=user,
                    fleet_id=fleet.id,
                    requester=fleet.requested_by,
                    repo=where.repo,
                    role=permission.role,
                )
            )
            return
    if not await first_time(store, where):
        return  # this comment was carried out already (the delivery came twice)
    try:
        said = await command(
            store, fleet.id, FleetCommand(word), by=user, wake=context.services.wake_fleets
        )
    except FleetError as exc:
        said = str(exc)
    log.info("/honk fleet %s on fleet %s by %s: %s", word, fleet.id, user, said)
    await context.comment(f"@{user} {said}")
