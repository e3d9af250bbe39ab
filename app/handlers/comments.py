"""`/honk retry|cancel|help` in a comment on a PR or issue, or a review comment's first line."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from gidgethub import routing

from app.github.pacing import Priority, writes_at
from app.github.payloads import IssueCommentEvent, PullRequestReviewCommentEvent
from app.github.users import is_bot
from app.handlers.context import Context
from app.issue_snapshots import record_approved
from app.models import ACTIVE_STATES, Run, RunKind, RunState
from app.progress import Progress
from app.run_requests import cancel_active, honk_run_for_pr, may_act, queue_follow_up
from app.store import Store
from app.store.kv import Namespace

router = routing.Router()
log = logging.getLogger(__name__)

# "<repo>/<kind>/<comment id>": that comment's command was carried out (once)
_CARRIED_OUT: Namespace[dict[str, int]] = Namespace("command", owner=__name__)
_COMMAND = re.compile(r"^/honk\b(?:\s+([A-Za-z_-]+))?(.*)$", re.IGNORECASE)

HELP = (
    "Honk's commands, in a comment on a pull request Honk opened (or the first line of a "
    "review comment on it):\n\n"
    "- `/honk retry [instructions]`: run Honk again on the pull request's branch, with your "
    "instructions, the review comments and the last CI failure. Needs write access.\n"
    "- `/honk cancel`: stop the run queued or working on this pull request or issue. "
    "Needs write access.\n"
    "- `/honk fleet continue|pause|resume|stop|retry|rollback`: on an issue labelled "
    "`honk-fleet`, steer its fleet (the requester, or write access).\n"
    "- `/honk help`: this list."
)
UNKNOWN = "@{user} Honk has no `/honk {name}` command.\n\n" + HELP
FOREIGN_PR = (
    "@{user} Honk did not open this pull request, so `/honk retry` has no run to continue. "
    "Label an issue `{label}` to have Honk work on it."
)
NO_RUN = "@{user} Honk has not worked on this issue yet: label it `{label}` to start."
QUEUED_BEHIND = "@{user} Queued as run {run_id}; it starts when run {active_id} is done."
CANCELLING = "@{user} Cancelling {runs}."
NOTHING_TO_CANCEL = "@{user} Nothing to cancel: no Honk run is queued or working here."
CANCELLED_NOTE = "Cancelled by @{user}."


@dataclass(frozen=True)
class Command:
    name: str  # retry, cancel, help, or whatever was typed
    text: str  # what follows the command: new instructions for a retry


@dataclass(frozen=True)
class Where:
    """The comment a command came in, and the issue or PR it is on."""

    repo: str
    number: int
    is_pull: bool
    comment_id: int
    comment_url: str
    kind: str  # "issue_comment" or "review_comment"
    context: str = ""  # for review comments: the file and line it is on

    @classmethod
    def of_issue_comment(cls, repo: str, payload: IssueCommentEvent) -> Where:
        """Where an `issue_comment` delivery's comment is: its issue or PR in `repo`."""
        comment, issue = payload["comment"], payload["issue"]
        return cls(
            repo=repo,
            number=int(issue["number"]),
            is_pull=bool(issue.get("pull_request")),
            comment_id=int(comment["id"]),
            comment_url=comment["url"],
            kind="issue_comment",
        )


def parse_command(body: str | None) -> Command | None:
    """The `/honk ...` command on the comment's first line; None when there is none."""
    first, _, rest = (body or "").lstrip().partition("\n")
    match = _COMMAND.match(first.strip())
    if match is None:
        return None
    text = f"{match.group(2).strip()}\n{rest}".strip()
    return Command((match.group(1) or "help").lower(), text)


@router.register("issue_comment", action="created")
async def on_issue_comment_created(context: Context) -> None:
    payload = cast(IssueCommentEvent, context.payload)
    comment = payload["comment"]
    command = parse_command(comment.get("body"))
    if command is None:
        return
    await carry_out(context, command, Where.of_issue_comment(context.repo, payload))


@router.register("pull_request_review_comment", action="created")
async def on_review_comment_created(context: Context) -> None:
    payload = cast(PullRequestReviewCommentEvent, context.payload)
    comment, pull = payload["comment"], payload["pull_request"]
    command = parse_command(comment.get("body"))
    if command is None:
        return
    line = comment.get("line") or comment.get("original_line") or comment.get("position")
    where = Where(
        repo=context.repo,
        number=int(pull["number"]),
        is_pull=True,
        comment_id=int(comment["id"]),
        comment_url=comment["url"],
        kind="review_comment",
        context=f"(Asked in a review comment on `{comment.get('path', '?')}`, line {line}.)",
    )
    await carry_out(context, command, where)


async def carry_out(context: Context, command: Command, where: Where) -> None:
    """Check who asked, then retry, cancel or answer; bots are never listened to.

    The answers (reactions, replies) go ahead of runs' and bulk writes: a person waits.
    """
    with writes_at(Priority.URGENT):
        await _carry_out(context, command, where)


async def _carry_out(context: Context, command: Command, where: Where) -> None:
    payload = cast(IssueCommentEvent | PullRequestReviewCommentEvent, context.payload)
    author: Mapping[str, object] = payload["comment"].get("user") or {}
    if context.is_bot or is_bot(author):
        return
    if command.name == "fleet":
        return  # a fleet's own commands: app/handlers/fleet.py answers them
    user = payload["sender"]["login"]
    if command.name == "help":
        await context.comment(HELP)
        return
    if command.name not in ("retry", "cancel"):
        await context.comment(UNKNOWN.format(user=user, name=command.name))
        return
    permission = await may_act(context.gh, where.repo, user)
    if not permission.allowed:
        log.info(
            "refusing /honk %s by %s on %s: %s", command.name, user, where.repo, permission.role
        )
        await context.comment(permission.refusal(f"`/honk {command.name}`"))
        return
    if command.name == "retry":
        await retry(context, command, where, user)
    else:
        await cancel(context, where, user)


async def retry(context: Context, command: Command, where: Where, user: str) -> None:
    store = context.store
    origin = await _origin(store, where)
    if origin is None:
        template = FOREIGN_PR if where.is_pull else NO_RUN
        await context.comment(template.format(user=user, label=context.settings.github.label))
        return
    if not await first_time(store, where):
        return  # this comment was carried out already (the delivery came twice)
    await context.gh.react(where.comment_url, "rocket")
    if not where.is_pull and "issue" in context.payload:
        # A writer asked again on the issue as it reads now: that text is approved.
        issue = cast(IssueCommentEvent, context.payload)["issue"]
        await record_approved(store, where.repo, issue, user)
    instructions = "\n\n".join(part for part in (command.text, where.context) if part)
    run = await queue_follow_up(
        store,
        origin,
        requested_by=user,
        instructions=instructions,
        kind=RunKind.RETRY,
        delivery_id=context.delivery_id,
        wake_workers=context.wake_workers,
    )
    await store.runs.add_step(origin.id, "retry", f"run {run.id} asked for by @{user}")
    log.info("queued retry run %s on %s#%s for %s", run.id, where.repo, where.number, user)
    ahead = [r for r in await _active(store, where, origin) if r.id < run.id]
    if ahead:
        text = QUEUED_BEHIND.format(user=user, run_id=run.id, active_id=ahead[0].id)
        await context.comment(text)


async def cancel(context: Context, where: Where, user: str) -> None:
    store, gh = context.store, context.gh
    if not await first_time(store, where):
        return
    if where.is_pull:
        runs = await cancel_active(store, where.repo, pr_number=where.number, requested_by=user)
    else:
        runs = await cancel_active(store, where.repo, issue_number=where.number, requested_by=user)
    await gh.react(where.comment_url, "+1")
    if not runs:
        await context.comment(NOTHING_TO_CANCEL.format(user=user))
        return
    for run in runs:
        if run.state == RunState.CANCELLED and run.tracking_comment_id:
            # A queued run ends at once; a working one reports when its pipeline stops.
            progress = Progress(run.id, outcome=CANCELLED_NOTE.format(user=user))
            try:
                await gh.edit_comment(run.repo, run.tracking_comment_id, progress.render())
            except Exception as exc:
                log.warning("could not update the tracking comment of run %s: %s", run.id, exc)
    described = ", ".join(
        f"run {r.id} ({'was queued' if r.state == RunState.CANCELLED else 'stops shortly'})"
        for r in runs
    )
    await context.comment(CANCELLING.format(user=user, runs=described))


async def _origin(store: Store, where: Where) -> Run | None:
    """The run to continue: the newest on that PR (Honk's), or on that issue."""
    if where.is_pull:
        return await honk_run_for_pr(store, where.repo, where.number)
    return await store.runs.newest(repo=where.repo, issue_number=where.number)


async def _active(store: Store, where: Where, origin: Run) -> list[Run]:
    if where.is_pull:
        found = await store.runs.find(repo=where.repo, pr_number=where.number, states=ACTIVE_STATES)
    else:
        found = []
    if origin.issue_number is not None:
        found += await store.runs.find(
            repo=where.repo, issue_number=origin.issue_number, states=ACTIVE_STATES
        )
    return sorted({r.id: r for r in found}.values(), key=lambda r: r.id)


async def first_time(store: Store, where: Where) -> bool:
    """Whether the command in `where`'s comment is carried out for the first time (a
    delivery may come twice); app/handlers/fleet.py's `/honk fleet` shares the record."""
    key = f"{where.repo}/{where.kind}/{where.comment_id}"
    return await _CARRIED_OUT.put_if_absent(store, key, {"number": where.number})
