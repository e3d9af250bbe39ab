"""What a fleet tells people, as pure functions: the fleet issue's summary table (one comment,
edited in place), the Slack summary message with its buttons (one message, edited in place)
and the milestone messages (canary done, half, done, paused, rolled back).

Never one message per repository: a big fleet's table and lists are bounded, and the rest is
on the fleet's page. Repository names are `owner/name` as GitHub gave them; reasons come from
runs (their errors may hold what a repository or the model wrote), so they are shown as code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from app.config import WebSettings
from app.fleet_models import Fleet, FleetRepo, FleetRepoState, FleetState
from app.slack.blocks import Message, as_message, context, escape, fit_lines, link, section
from app.untrusted import code

# The summary's buttons; app/handlers/slack/fleet_buttons.py answers their clicks (value: fleet id).
CONTINUE_ACTION = "fleet_continue"
PAUSE_ACTION = "fleet_pause"
RESUME_ACTION = "fleet_resume"
STOP_ACTION = "fleet_stop"
RETRY_ACTION = "fleet_retry"
MERGE_GREEN_ACTION = "fleet_merge_green"
ROLLBACK_ACTION = "fleet_rollback"
VIEW_FLEET_ACTION = "fleet_view"

# The fleet issue's summary: a marker people do not see, so the comment can be recognised.
ISSUE_MARKER = "<!-- honk-fleet-summary -->"
ISSUE_ROWS = 100  # rows of the table; the rest are on the fleet's page
SLACK_LINES = 10  # repositories named in a Slack message (failures, canary results)
REASON_LIMIT = 120
COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters

STATE_LABELS: dict[FleetRepoState, str] = {
    FleetRepoState.PLANNED: "planned",
    FleetRepoState.QUEUED: "queued",
    FleetRepoState.RUNNING: "running",
    FleetRepoState.PR_OPEN: "PR open",
    FleetRepoState.CI_GREEN: "CI green",
    FleetRepoState.CI_RED: "CI red",
    FleetRepoState.APPROVED: "approved",
    FleetRepoState.MERGED: "merged",
    FleetRepoState.CLOSED: "closed",
    FleetRepoState.VETOED: "vetoed",
    FleetRepoState.FAILED: "failed",
    FleetRepoState.SKIPPED: "skipped",
}
FLEET_LABELS: dict[FleetState, str] = {
    FleetState.PLANNED: ":spiral_note_pad: planned",
    FleetState.CANARY: ":hatching_chick: trying its canary",
    FleetState.WAITING: ":raised_hand: waiting for Continue",
    FleetState.RUNNING: ":gear: running",
    FleetState.PAUSED: ":double_vertical_bar: paused",
    FleetState.STOPPED: ":no_entry_sign: stopped",
    FleetState.DONE: ":checkered_flag: done",
}
GREEN = (FleetRepoState.CI_GREEN, FleetRepoState.APPROVED)


@dataclass(frozen=True)
class CanaryResult:
    """One repository of the canary: where it ended and the review's verdict on its change."""

    repo: FleetRepo
    verdict: str | None = None


@dataclass(frozen=True)
class Estimate:
    """What the rest of a fleet may take, from what its canary took."""

    repos: int  # left to run
    cost_usd: float | None = None
    minutes: float | None = None  # wall time at the fleet's concurrency


def counts_of(repos: Sequence[FleetRepo]) -> dict[FleetRepoState, int]:
    """How many repositories are in each state (every state named)."""
    counts = dict.fromkeys(FleetRepoState, 0)
    for repo in repos:
        counts[repo.state] += 1
    return counts


def counts_line(counts: Mapping[FleetRepoState, int]) -> str:
    """ "3 PR open · 1 failed · 8 planned": the states some repository is in, in order."""
    parts = [f"{n} {STATE_LABELS[state]}" for state, n in counts.items() if n]
    return " · ".join(parts) or "no repositories"


def cost_of(repos: Sequence[FleetRepo]) -> float:
    return sum(repo.cost_usd for repo in repos)


def dollars(amount: float) -> str:
    return f"${amount:,.2f}"


def duration(minutes: float) -> str:
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{round(minutes)} min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def reason_text(repo: FleetRepo) -> str | None:
    """Why the repository ended where it did, one line, short."""
    if not repo.reason or not (repo.state.failed or repo.state is FleetRepoState.SKIPPED):
        return None
    line = " ".join(repo.reason.split())
    return line if len(line) <= REASON_LIMIT else line[: REASON_LIMIT - 1] + "…"


# -- the fleet issue ------------------------------------------------------------------------


def issue_summary(
    fleet: Fleet, repos: Sequence[FleetRepo], web: WebSettings, *, rows: int = ISSUE_ROWS
) -> str:
    """The fleet issue's summary comment: the fleet's state, counts, cost, and a table with a
    row per repository (the first `rows`; the rest on the fleet's page)."""
    counts = counts_of(repos)
    page = web.fleet_url(fleet.id)
    state = FLEET_LABELS[fleet.state].split(" ", 1)[1]
    lines = [ISSUE_MARKER, f"### Fleet {fleet.id}: {state}"]
    if fleet.state_reason:
        lines.append(f"> {_cell(fleet.state_reason, 300)}")
    head = f"**{len(repos)} repositories**: {counts_line(counts)}"
    if page:
        head += f" · [the fleet's page]({page})"
    lines += ["", head]
    cost = cost_of(repos)
    if cost:
        lines.append(f"Model cost so far: {dollars(cost)}")
    lines += ["", "| repository | state | pull request | run |", "| --- | --- | --- | --- |"]
    for repo in repos[:rows]:
        lines.append(_issue_row(repo, web))
    if len(repos) > rows:
        more = f"…and {len(repos) - rows} more"
        lines += ["", f"{more} on [the fleet's page]({page})." if page else f"{more}."]
    lines += ["", _steering(fleet)]
    body = "\n".join(lines)
    return body if len(body) <= COMMENT_LIMIT else body[: COMMENT_LIMIT - 1] + "…"


def _issue_row(repo: FleetRepo, web: WebSettings) -> str:
    state = STATE_LABELS[repo.state]
    if reason := reason_text(repo):
        state += f": {_cell(reason, REASON_LIMIT)}"
    pr = ""
    if repo.pr_number is not None:
        label = f"#{repo.pr_number}"
        pr = f"[{label}]({repo.pr_url})" if _web_link(repo.pr_url) else label
    run_url = web.run_url(repo.run_id)
    run = f"[run {repo.run_id}]({run_url})" if run_url else (str(repo.run_id or ""))
    return f"| {code(repo.repo)} | {state} | {pr} | {run} |"


def _web_link(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("https://", "http://"))


def _cell(text: str, limit: int) -> str:
    """People's or a run's text in a table cell: as code (no mention, link or HTML renders),
    one line, its pipes escaped so the row holds."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return code(line).replace("|", "\\|")


def _steering(fleet: Fleet) -> str:
    commands = {
        FleetState.PLANNED: ["pause", "stop"],
        FleetState.CANARY: ["continue", "pause", "stop"],
        FleetState.WAITING: ["continue", "stop"],
        FleetState.RUNNING: ["pause", "stop", "retry"],
        FleetState.PAUSED: ["resume", "stop", "retry"],
        FleetState.STOPPED: ["rollback"],
        FleetState.DONE: ["retry", "merge", "rollback"],
    }[fleet.state]
    said = ", ".join(f"`/honk fleet {name}`" for name in commands)
    return f"<sub>Steer it with {said} in a comment here.</sub>"


# -- Slack ----------------------------------------------------------------------------------


def slack_summary(fleet: Fleet, repos: Sequence[FleetRepo], web: WebSettings) -> Message:
    """The fleet's one summary message in its thread, edited in place, with its buttons."""
    counts = counts_of(repos)
    page = web.fleet_url(fleet.id)
    title = link(page, f"Fleet {fleet.id}") if page else f"Fleet {fleet.id}"
    head = f"*{title}* · {FLEET_LABELS[fleet.state]} · {len(repos)} repositories"
    blocks: list[Block] = [section(head, escape(_request_line(fleet)))]
    if fleet.state_reason:
        blocks.append(context(escape(fleet.state_reason)))
    summary = counts_line(counts)
    cost = cost_of(repos)
    if cost:
        summary += f" · {dollars(cost)} so far"
    blocks.append(context(summary))
    failed = [repo for repo in repos if repo.state.failed]
    if failed:
        lines = [_slack_repo_line(repo) for repo in failed[:SLACK_LINES]]
        blocks.append(section(fit_lines("*Failed*", lines, len(failed))))
    blocks += summary_buttons(fleet, counts, page)
    fallback = f"Fleet {fleet.id}: {fleet.state.value}, {counts_line(counts)}"
    return as_message(fallback, blocks)


def summary_buttons(
    fleet: Fleet, counts: Mapping[FleetRepoState, int], page: str | None
) -> list[Block]:
    """The buttons that make sense in the fleet's state (each carries the fleet's id)."""
    value = str(fleet.id)
    elements: list[ButtonElement] = []
    if page and page.startswith(("https://", "http://")):
        elements.append(ButtonElement(text="View fleet", action_id=VIEW_FLEET_ACTION, url=page))
    if fleet.state in (FleetState.PLANNED, FleetState.CANARY, FleetState.WAITING):
        elements.append(
            ButtonElement(text="Continue", action_id=CONTINUE_ACTION, value=value, style="primary")
        )
    if fleet.state in (FleetState.PLANNED, FleetState.CANARY, FleetState.RUNNING):
        elements.append(ButtonElement(text="Pause", action_id=PAUSE_ACTION, value=value))
    if fleet.state is FleetState.PAUSED:
        elements.append(ButtonElement(text="Resume", action_id=RESUME_ACTION, value=value))
    if not fleet.state.ended:
        elements.append(
            ButtonElement(
                text="Stop",
                action_id=STOP_ACTION,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Stop this fleet?",
                    text="Nothing more is queued and its running runs are cancelled.",
                    confirm="Stop",
                    deny="Keep going",
                ),
            )
        )
    failed = counts[FleetRepoState.FAILED] + counts[FleetRepoState.VETOED]
    if failed and fleet.state is not FleetState.STOPPED:
        elements.append(ButtonElement(text="Retry failed", action_id=RETRY_ACTION, value=value))
    if any(counts[state] for state in GREEN):
        elements.append(
            ButtonElement(text="Merge all green", action_id=MERGE_GREEN_ACTION, value=value)
        )
    if any(counts[state] for state in FleetRepoState if state.has_pr):
        elements.append(
            ButtonElement(
                text="Roll back",
                action_id=ROLLBACK_ACTION,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Roll this fleet back?",
                    text="The fleet stops and every one of its unmerged PRs is closed.",
                    confirm="Roll back",
                    deny="Keep them",
                ),
            )
        )
    return [ActionsBlock(elements=elements)] if elements else []


def _request_line(fleet: Fleet) -> str:
    request = " ".join(fleet.request.split())
    return f"@{fleet.requested_by} asked: {request}"


def _slack_repo_line(repo: FleetRepo, verdict: str | None = None) -> str:
    parts = [f"• `{escape(repo.repo)}` {STATE_LABELS[repo.state]}"]
    if repo.pr_url and repo.pr_number is not None:
        parts.append(link(repo.pr_url, f"PR #{repo.pr_number}"))
    if verdict:
        parts.append(f"review: {escape(verdict)}")
    if reason := reason_text(repo):
        parts.append(f"— {escape(reason)}")
    return " ".join(parts)


# -- milestones -----------------------------------------------------------------------------


def canary_done(
    fleet: Fleet, canary: Sequence[CanaryResult], estimate: Estimate, web: WebSettings
) -> Message:
    """The canary has ended: its PRs, their verdicts, its cost, and what the rest may take."""
    opened = sum(result.repo.pr_number is not None for result in canary)
    cost = sum(result.repo.cost_usd for result in canary)
    head = (
        f":hatching_chick: *The canary of fleet {fleet.id} is done*: "
        f"{opened} of {len(canary)} opened a PR, {dollars(cost)}."
    )
    lines = [_slack_repo_line(result.repo, result.verdict) for result in canary[:SLACK_LINES]]
    blocks: list[Block] = [section(fit_lines(head, lines, len(canary)))]
    blocks.append(context(estimate_text(estimate)))
    if fleet.state is FleetState.WAITING:
        blocks.append(context("*Continue* fans out to the rest; *Stop* ends the fleet here."))
    blocks += summary_buttons(fleet, counts_of([r.repo for r in canary]), web.fleet_url(fleet.id))
    fallback = f"The canary of fleet {fleet.id} is done: {opened} of {len(canary)} opened a PR"
    return as_message(fallback, blocks)


def estimate_text(estimate: Estimate) -> str:
    if not estimate.repos:
        return "Nothing is left to run."
    text = f"The rest: {estimate.repos} repositories"
    guesses = []
    if estimate.cost_usd is not None:
        guesses.append(f"about {dollars(estimate.cost_usd)}")
    if estimate.minutes is not None:
        guesses.append(duration(estimate.minutes))
    return text + (f", {' and '.join(guesses)} at the canary's pace." if guesses else ".")


def half_way(fleet: Fleet, repos: Sequence[FleetRepo]) -> Message:
    counts = counts_of(repos)
    text = (
        f":hourglass_flowing_sand: Fleet {fleet.id} is half way: {counts_line(counts)}, "
        f"{dollars(cost_of(repos))} so far."
    )
    return as_message(text, [section(text)])


def done(fleet: Fleet, repos: Sequence[FleetRepo]) -> Message:
    counts = counts_of(repos)
    text = (
        f":checkered_flag: Fleet {fleet.id} is done: {counts_line(counts)}, "
        f"{dollars(cost_of(repos))}."
    )
    return as_message(text, [section(text)])


def paused(fleet: Fleet) -> Message:
    text = f":double_vertical_bar: Fleet {fleet.id} paused itself"
    body = fleet.state_reason or ""
    blocks: list[Block] = [section(f"*{text}*", escape(body))]
    blocks.append(context("*Resume* carries on; *Retry failed* takes the failed ones up again."))
    return as_message(f"{text}: {body}", blocks)


def rolled_back(fleet: Fleet, closed: int) -> Message:
    text = f":rewind: Fleet {fleet.id} is rolled back: {closed} of its PRs were closed."
    return as_message(text, [section(text)])
