"""Texts a run leaves behind: branch name, PR body, the `Honk` check run, issue comments (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.models import RunKind, Usage
from app.runs.kinds import rules_for
from app.untrusted import code, code_block, inert

TAIL_LINES = 20  # a failed command's output: its last lines are shown
TAIL_CHARS = 2_000
SHOWN_LEFT_OUT = 20  # paths the PR body names as left out of the commit
MAX_FLEET_REQUEST = 5_000  # of a fleet's request, in each of its PRs

UNFINISHED = (
    "**Unfinished:** Honk stopped before the work was done ({reason}). "
    "This draft holds the partial change."
)


@dataclass
class Verification:
    """What was run to check the change, and how it went."""

    command: str | None
    passed: bool | None  # None: nothing was run
    output: str = ""
    source: str = "honk"  # "honk" (from .github/honk.yml verify:) or "agent" (its last test run)

    def describe(self) -> str:
        if self.command is None or self.passed is None:
            return "No test command was run, and the repository names no `verify:` command."
        result = "passed" if self.passed else "failed"
        who = "Honk ran" if self.source == "honk" else "The agent's last test run was"
        return f"{who} `{self.command}`: **{result}**."


def tail(output: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last `lines` lines of a command's output, at most `chars` characters of them."""
    kept = output.rstrip().splitlines()[-lines:]
    text = "\n".join(kept)
    return text[-chars:] if len(text) > chars else text


@dataclass(frozen=True)
class FailureDetails:
    """What a failed setup printed last and what its network refused, for the people told."""

    command: str = ""
    tail: str = ""  # the last lines of its output (redacted)
    notes: tuple[str, ...] = ()  # Markdown lines: refusals with their reasons and advice

    def markdown(self) -> str:
        parts = []
        if self.tail:
            parts.append(f"The last lines it printed:\n\n{code_block(self.tail)}")
        if self.notes:
            parts.append("\n".join(f"- {note}" for note in self.notes))
        return "\n\n".join(parts)


@dataclass(frozen=True)
class ReviewText:
    """What the review adds to the PR body and the `Honk` check (rendered in review_texts)."""

    section: str  # the "## Review" section
    usage: Usage  # the review's share of the run's usage
    model: str  # the judge's model
    preamble: str | None = None  # opens the text when the review stopped the change
    title_note: str | None = None  # added to the check run's title ("review vetoed")
    conclusion: str | None = None  # the check's conclusion when the review stopped the change


def cost_section(usage: Usage, model: str, review: ReviewText | None) -> str:
    """The run's cost; with a review, the agent's and the review's shares each at its price."""
    if review is None or not review.usage.requests:
        return f"## Cost\n\n{usage.describe(model)} ({usage.requests} requests to `{model}`)"
    agent = usage - review.usage
    total = agent.cost_usd(model) + review.usage.cost_usd(review.model)
    return (
        f"## Cost\n\n${total:.2f} in all.\n\n"
        f"- Agent: {agent.describe(model)} ({agent.requests} requests to `{model}`)\n"
        f"- Review: {review.usage.describe(review.model)} "
        f"({review.usage.requests} request{'s' if review.usage.requests != 1 else ''} "
        f"to `{review.model}`)"
    )


@dataclass(frozen=True)
class FleetLink:
    """The fleet change a PR is one repository of, as its body names it."""

    fleet_id: int
    request: str  # as the requester wrote it
    requested_by: str
    url: str | None = None  # the fleet's page (None while HONK_URL is not set)

    def section(self) -> str:
        """The PR body's "## The request": which fleet, whose, and the request (inert: a
        mention in it would notify someone once per repository)."""
        fleet = f"fleet change {self.fleet_id}"
        named = f"[{fleet}]({self.url})" if self.url else fleet
        request = self.request.strip()
        if len(request) > MAX_FLEET_REQUEST:
            request = request[:MAX_FLEET_REQUEST] + "…"
        return (
            f"## The request\n\nPart of Honk's {named}, asked for by {code(self.requested_by)}: "
            "one request taken to many repositories, each with its own PR.\n\n"
            + (inert(request) or "_no request text_")
        )


def branch_name(key: int | str, title: str) -> str:
    """`honk/<key>-<slug of the title>`: the key an issue's number, `fleet-<id>`..."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return f"honk/{key}-{slug or 'change'}"


@dataclass(frozen=True)
class ChangeReport:
    """What the PR body and the `Honk` check run both tell of a run's change: the agent's
    summary, how it was verified, its cost, which run made it, why it is unfinished (a limit
    stopped the agent), the review's words."""

    run_id: int
    summary: str
    verification: Verification
    usage: Usage
    model: str
    unfinished_reason: str | None = None
    review: ReviewText | None = None


def pr_body(
    report: ChangeReport,
    *,
    issue_number: int | None,
    run_url: str | None = None,
    left_out: tuple[str, ...] = (),
    fleet: FleetLink | None = None,
) -> str:
    """The PR's description: the review's preamble, the summary, verification, what was left
    out, the review, the cost and the run's link (a fleet's run: the fleet's request too)."""
    review, unfinished_reason = report.review, report.unfinished_reason
    parts = []
    if review is not None and review.preamble:
        parts.append(review.preamble)
    if unfinished_reason:
        parts.append(UNFINISHED.format(reason=unfinished_reason))
    if fleet is not None:
        parts.append(fleet.section())
    summary = inert(report.summary.strip()) or "_The agent gave no summary._"
    parts.append("## What changed\n\n" + summary)
    if issue_number:
        parts.append(f"Fixes #{issue_number}")
    parts.append("## Verification\n\n" + verification_text(report.verification))
    if left_out:
        parts.append(left_out_section(left_out))
    if review is not None:
        parts.append(review.section)
    parts.append(cost_section(report.usage, report.model, review))
    run_id = report.run_id
    run = f"[run {run_id}]({run_url})" if run_url else f"run {run_id}"
    parts.append(
        f"<sub>Opened by Honk, {run}. Comment `/honk retry <what to change>` "
        "to run it again on this branch.</sub>"
    )
    return "\n\n".join(parts)


def verification_text(verification: Verification) -> str:
    """How the change was verified; a failed verification with the tail of its output."""
    said = verification.describe()
    if verification.passed is False and verification.output.strip():
        said += f"\n\nThe last lines it printed:\n\n{code_block(tail(verification.output))}"
    return said


def left_out_section(left_out: tuple[str, ...]) -> str:
    """What staging kept out of the commit (setup's products, build output), bounded."""
    shown = "\n".join(f"- {code(item)}" for item in left_out[:SHOWN_LEFT_OUT])
    more = len(left_out) - SHOWN_LEFT_OUT
    if more > 0:
        shown += f"\n- and {more} more"
    return (
        "## Left out of the commit\n\nHonk never commits what setup made or what a build "
        "leaves behind, whatever the repository's `.gitignore` says:\n\n" + shown
    )


def no_change_comment(summary: str) -> str:
    text = inert(re.sub(r"^\s*NO_CHANGE:\s*", "", summary.strip()))
    return "Honk looked into this and made no change:\n\n" + (text or "_no reason given_")


def failure_comment(reason: str) -> str:
    return f"Honk could not finish this run: {reason}"


def check_run_output(report: ChangeReport, *, kind: RunKind, round: int) -> tuple[str, str]:
    """The `Honk` check run's title and Markdown summary: what the agent did, and at what cost."""
    review, unfinished_reason, verification = (
        report.review, report.unfinished_reason, report.verification
    )  # fmt: skip
    what = rules_for(kind).check_title_note(round)
    title = f"Honk run {report.run_id}" + (f" ({what})" if what else "")
    if unfinished_reason:
        title += ": unfinished"
    elif verification.passed is False:
        title += ": verification failed"
    elif review is not None and review.title_note:
        title += f": {review.title_note}"
    parts = []
    if review is not None and review.preamble:
        parts.append(review.preamble)
    if unfinished_reason:
        parts.append(UNFINISHED.format(reason=unfinished_reason))
    did = inert(report.summary.strip()) or "_The agent gave no summary._"
    parts.append("## What the agent did\n\n" + did)
    parts.append("## Verification\n\n" + verification.describe())
    if review is not None:
        parts.append(review.section)
    parts.append(cost_section(report.usage, report.model, review))
    return title, "\n\n".join(parts)[:60_000]


def check_run_conclusion(
    verification: Verification, unfinished: bool, review: ReviewText | None = None
) -> str:
    """failure when Honk's verification failed or its review vetoed; neutral when unfinished,
    unverified or unreviewed."""
    if verification.passed is False:
        return "failure"
    if review is not None and review.conclusion:
        return review.conclusion
    if unfinished or verification.passed is None:
        return "neutral"
    return "success"
