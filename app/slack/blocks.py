"""Block Kit messages for Honk's Slack threads: pure functions returning (fallback, blocks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from app.models import RunState
from app.untrusted import inert

Message = tuple[str, list[dict[str, Any]]]

# Slack's limits: section text 3000 characters, context 10 elements, button label 75.
SECTION_LIMIT = 3000
FALLBACK_LIMIT = 3000
MAX_FAILED_CHECKS = 15
MAX_LINKS = 10

RETRY_ACTION = "honk_retry"
CANCEL_ACTION = "honk_cancel"
OPEN_PR_ACTION = "honk_open_pr"
VIEW_RUN_ACTION = "honk_view_run"


@dataclass(frozen=True)
class Headline:
    """What a run's thread root always shows: the repository, the issue (or PR), who asked."""

    repo: str
    issue_number: int | None
    issue_title: str
    issue_url: str | None
    requested_by: str | None
    run_id: int
    run_url: str | None = None  # the run's page


@dataclass(frozen=True)
class RunEnding:
    """How a run ended, as its last reply in the thread tells it.

    `review` is the review's verdict in a line ("Review: vetoed: `test_add` was skipped ...").
    `output_tail` is the last lines a failed command printed, `notes` what else explains the
    failure (the network's refusals with their reasons and advice).
    """

    outcome: str  # the run's state
    pr: PullRef | None = None
    summary: str | None = None  # the agent's, shown inert
    usage_text: str | None = None
    error: str | None = None
    review: str | None = None
    output_tail: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRef:
    """A pull request as a run's messages name it: its page, number, and whether a draft."""

    url: str
    number: int | None = None
    draft: bool = False

    @classmethod
    def of(cls, pr: Mapping[str, Any]) -> PullRef:
        """From GitHub's pull request object."""
        return cls(str(pr["html_url"]), pr.get("number"), bool(pr.get("draft")))


RUN_STATUS: dict[str, tuple[str, str]] = {
    RunState.QUEUED: (":hourglass_flowing_sand:", "Queued"),
    RunState.RUNNING: (":gear:", "Working"),
    RunState.SUCCEEDED: (":white_check_mark:", "PR opened"),
    RunState.NO_CHANGE: (":information_source:", "No change needed"),
    RunState.FAILED: (":x:", "Failed"),
    RunState.CANCELLED: (":no_entry_sign:", "Cancelled"),
}

CI_CONCLUSIONS: dict[str, tuple[str, str]] = {
    "success": (":white_check_mark:", "CI passed"),
    "failure": (":x:", "CI failed"),
    "startup_failure": (":x:", "CI could not start"),
    "timed_out": (":hourglass:", "CI timed out"),
    "cancelled": (":no_entry_sign:", "CI cancelled"),
    "action_required": (":warning:", "CI needs action"),
    "neutral": (":white_circle:", "CI finished"),
    "skipped": (":fast_forward:", "CI skipped"),
    "stale": (":grey_question:", "CI went stale"),
}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to an http(s) URL; anything else shows the label alone."""
    label = escape(label).replace("|", "¦")
    if not url or not url.startswith(("https://", "http://")):
        return label
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def clip(text: str, limit: int) -> str:
    """Cut escaped text to `limit` characters without splitting an entity like `&amp;`."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def run_started(
    headline: Headline, *, status: str = RunState.QUEUED, buttons: bool = True
) -> Message:
    """The thread root: repository, issue link, who asked and the status (queued or working)."""
    return root_updated(headline, status=status, buttons=buttons)


def root_updated(
    headline: Headline,
    *,
    status: str,
    pr: PullRef | None = None,
    error: str | None = None,
    buttons: bool = True,
) -> Message:
    """The thread root as it stands now, for chat.update: the same facts and the current status."""
    repo, issue_number, issue_title = headline.repo, headline.issue_number, headline.issue_title
    issue_url, requested_by, run_id = headline.issue_url, headline.requested_by, headline.run_id
    pr_url, pr_number = (pr.url, pr.number) if pr is not None else (None, None)
    draft = pr is not None and pr.draft
    run_url = headline.run_url
    emoji, label = _run_status(status)
    target = f"{repo}#{issue_number}" if issue_number is not None else repo
    header = f"{emoji} *{label}* · {link(issue_url, target)}"
    if pr_url:
        kind = "Draft pull request" if draft else "Pull request"
        header += f"\n{kind}: {pr_link(pr_url, pr_number)}"
    body = escape(issue_title)
    if error:
        body += f"\n*Reason:* {escape(error)}"
    blocks: list[Block] = [section(header, body)]
    asked = f"Requested by *{escape(requested_by)}* · " if requested_by else ""
    blocks.append(context(f"{asked}`{escape(repo)}` · run {run_id}"))
    if buttons:
        blocks.extend(_run_buttons(run_id, status, pr_url, run_url))
    title = clip(escape(issue_title), 200)
    fallback = f"{emoji} {label}: {escape(target)} {title} (run {run_id})"
    return as_message(fallback, blocks)


def run_progress(text: str, *, run_url: str | None = None) -> Message:
    """One progress line in the run's thread (and its page's link, when there is one)."""
    blocks: list[Block] = [section(f":small_blue_diamond: {escape(text)}")]
    blocks.extend(view_run(run_url))
    return as_message(escape(text), blocks)


def run_finished(
    ending: RunEnding,
    *,
    run_id: int | None = None,
    buttons: bool = True,
    run_url: str | None = None,
) -> Message:
    """The last reply of a run: the outcome, the PR link, the agent's summary, or why it failed."""
    outcome, pr, summary, error, review = (
        ending.outcome, ending.pr, ending.summary, ending.error, ending.review
    )  # fmt: skip
    output_tail, notes, usage_text = ending.output_tail, ending.notes, ending.usage_text
    pr_url, pr_number = (pr.url, pr.number) if pr is not None else (None, None)
    emoji, label = _run_status(outcome)
    if outcome == RunState.SUCCEEDED and pr is not None and pr.draft:
        label = "Draft PR opened"
    headline = f"{emoji} *{label}*"
    if pr_url:
        headline += f": {pr_link(pr_url, pr_number)}"
    reason = f"*Reason:* {escape(error)}" if error else ""
    blocks: list[Block] = [section(headline, reason)]
    if output_tail:
        fenced = output_tail.replace("```", "`​``")  # nothing inside ends the block
        blocks.append(section("```" + clip(escape(fenced), SECTION_LIMIT - 8) + "```"))
    if notes:
        blocks.append(section("\n".join(f"• {escape(note)}" for note in notes)))
    if summary:
        # The model wrote it: no <!channel>, <@U…> or @-mentions reach the channel.
        blocks.append(section(escape(inert(summary))))
    if review:  # the judge's words are the model's too
        blocks.append(section(":mag: " + escape(inert(review))))
    if usage_text:
        blocks.append(context(escape(usage_text)))
    if buttons:
        blocks.extend(_run_buttons(run_id, outcome, pr_url, run_url))
    fallback = f"{emoji} {label}"
    if pr_url:
        fallback += f": {pr_link(pr_url, pr_number)}"
    if error:
        fallback += f" ({clip(escape(error), 500)})"
    elif review:
        fallback += f" ({clip(escape(review), 500)})"
    return as_message(fallback, blocks)


def ci_result(
    *,
    conclusion: str,
    pr_url: str | None,
    pr_number: int | None,
    failed_checks: list[tuple[str, str | None]],
    links: list[tuple[str, str | None]],
    repair_note: str | None,
    run_url: str | None = None,
) -> Message:
    """One message when CI finishes: conclusion, each failed check linked, PR and build links."""
    emoji, label = CI_CONCLUSIONS.get(conclusion, (":grey_question:", f"CI: {conclusion}"))
    headline = f"{emoji} *{escape(label)}*"
    if pr_url:
        headline += f" on {pr_link(pr_url, pr_number)}"
    blocks: list[Block] = [section(headline)]
    if failed_checks:
        lines = [f"• {link(url, name)}" for name, url in failed_checks[:MAX_FAILED_CHECKS]]
        blocks.append(section(fit_lines("*Failed checks*", lines, len(failed_checks))))
    joined_links = fit_joined([link(url, name) for name, url in links[:MAX_LINKS]])
    if joined_links:
        blocks.append(context(joined_links))
    if repair_note:
        blocks.append(context(f":wrench: {escape(repair_note)}"))
    blocks.extend(view_run(run_url))
    fallback = f"{emoji} {escape(label)}"
    if pr_url:
        fallback += f" on {pr_link(pr_url, pr_number)}"
    if failed_checks:
        names = ", ".join(escape(name) for name, _ in failed_checks[:MAX_FAILED_CHECKS])
        fallback += ": " + clip(names, 1000)
    return as_message(fallback, blocks)


def installed(*, account: str, repos_count: int | None, label: str) -> Message:
    """A note in the channel that Honk was installed, and how to use it."""
    if repos_count is None:
        scope = "all repositories"
    else:
        scope = f"{repos_count} repositor{'y' if repos_count == 1 else 'ies'}"
    text = (
        f":wave: Honk was installed on *{escape(account)}* ({scope}).\n"
        f"Add the `{escape(label)}` label to an issue and Honk will open a pull request."
    )
    return as_message(f"Honk was installed on {escape(account)} ({scope})", [section(text)])


def _run_status(status: str) -> tuple[str, str]:
    return RUN_STATUS.get(status, (":grey_question:", escape(str(status))))


def pr_link(pr_url: str, pr_number: int | None) -> str:
    return link(pr_url, f"PR #{pr_number}" if pr_number is not None else "pull request")


def view_button(run_url: str | None) -> list[ButtonElement]:
    """A link button to the run's page (HONK_URL/runs/<id>), when Honk knows its address."""
    if not run_url or not run_url.startswith(("https://", "http://")):
        return []
    return [ButtonElement(text="View run", action_id=VIEW_RUN_ACTION, url=run_url)]


def view_run(run_url: str | None) -> list[Block]:
    elements = view_button(run_url)
    return [ActionsBlock(elements=elements)] if elements else []


def _run_buttons(
    run_id: int | None, status: str, pr_url: str | None, run_url: str | None = None
) -> list[Block]:
    """View run; Open PR when there is one; Cancel while active; Retry once it did not succeed."""
    value = str(run_id) if run_id is not None else None
    elements: list[ButtonElement] = view_button(run_url)
    if pr_url and pr_url.startswith(("https://", "http://")):
        elements.append(
            ButtonElement(text="Open PR", action_id=OPEN_PR_ACTION, url=pr_url, value=value)
        )
    if value is not None and status in (RunState.QUEUED, RunState.RUNNING):
        elements.append(
            ButtonElement(
                text="Cancel",
                action_id=CANCEL_ACTION,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Cancel this run?",
                    text="Honk stops working on it; nothing is pushed.",
                    confirm="Cancel run",
                    deny="Keep going",
                ),
            )
        )
    elif value is not None and status in (RunState.FAILED, RunState.NO_CHANGE, RunState.CANCELLED):
        elements.append(
            ButtonElement(text="Retry", action_id=RETRY_ACTION, value=value, style="primary")
        )
    return [ActionsBlock(elements=elements)] if elements else []


def fit_lines(header: str, lines: list[str], total: int) -> str:
    """Join whole lines under a header while they fit in a section (links are never cut)."""
    text, shown = header, 0
    for line in lines:
        if len(text) + 1 + len(line) > SECTION_LIMIT - 40:
            break
        text += "\n" + line
        shown += 1
    if total > shown:
        text += f"\n…and {total - shown} more"
    return text


def fit_joined(parts: list[str]) -> str:
    """Join whole parts with a separator while they fit (links are never cut)."""
    text = ""
    for part in parts:
        joined = f"{text} · {part}" if text else part
        if len(joined) > SECTION_LIMIT:
            break
        text = joined
    return text


def section(head: str, body: str = "") -> SectionBlock:
    """A mrkdwn section: `head` (short, may hold links) kept whole, escaped `body` clipped."""
    text = head
    if body:
        text += "\n" + clip(body, SECTION_LIMIT - len(head) - 1)
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_LIMIT)))


def context(mrkdwn: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(mrkdwn, SECTION_LIMIT))])


def as_message(fallback: str, blocks: list[Block]) -> Message:
    return clip(fallback, FALLBACK_LIMIT), [block.to_dict() for block in blocks]
