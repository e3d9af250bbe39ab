"""Texts a run leaves behind: branch name, PR body, the `Honk` check run, issue comments (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.models import RunKind, Usage
from app.runs.kinds import rules_for
from app.untrusted import inert

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


def branch_name(issue_number: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-")
    return f"honk/{issue_number}-{slug or 'change'}"


def pr_body(
    *,
    issue_number: int | None,
    summary: str,
    verification: Verification,
    usage: Usage,
    model: str,
    run_id: int,
    unfinished_reason: str | None = None,
) -> str:
    parts = []
    if unfinished_reason:
        parts.append(UNFINISHED.format(reason=unfinished_reason))
    parts.append("## What changed\n\n" + (inert(summary.strip()) or "_The agent gave no summary._"))
    if issue_number:
        parts.append(f"Fixes #{issue_number}")
    parts.append("## Verification\n\n" + verification.describe())
    parts.append(f"## Cost\n\n{usage.describe(model)} ({usage.requests} requests to `{model}`)")
    parts.append(
        f"<sub>Opened by Honk, run {run_id}. Comment `/honk retry <what to change>` "
        "to run it again on this branch.</sub>"
    )
    return "\n\n".join(parts)


def no_change_comment(summary: str) -> str:
    text = inert(re.sub(r"^\s*NO_CHANGE:\s*", "", summary.strip()))
    return "Honk looked into this and made no change:\n\n" + (text or "_no reason given_")


def failure_comment(reason: str) -> str:
    return f"Honk could not finish this run: {reason}"


def check_run_output(
    *,
    kind: RunKind,
    round: int,
    summary: str,
    verification: Verification,
    usage: Usage,
    model: str,
    run_id: int,
    unfinished_reason: str | None = None,
) -> tuple[str, str]:
    """The `Honk` check run's title and Markdown summary: what the agent did, and at what cost."""
    what = rules_for(kind).check_title_note(round)
    title = f"Honk run {run_id}" + (f" ({what})" if what else "")
    if unfinished_reason:
        title += ": unfinished"
    elif verification.passed is False:
        title += ": verification failed"
    parts = []
    if unfinished_reason:
        parts.append(UNFINISHED.format(reason=unfinished_reason))
    did = inert(summary.strip()) or "_The agent gave no summary._"
    parts.append("## What the agent did\n\n" + did)
    parts.append("## Verification\n\n" + verification.describe())
    parts.append(f"## Cost\n\n{usage.describe(model)} ({usage.requests} requests to `{model}`)")
    return title, "\n\n".join(parts)[:60_000]


def check_run_conclusion(verification: Verification, unfinished: bool) -> str:
    """failure when Honk's own verification failed; neutral when unfinished or unverified."""
    if verification.passed is False:
        return "failure"
    if unfinished or verification.passed is None:
        return "neutral"
    return "success"
