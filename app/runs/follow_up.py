"""What a follow-up run (a retry, a CI repair) is asked: request, review comments, CI failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.ci.records import CiFailure, last_failure
from app.ci.verdict import clip_middle
from app.github.client import GitHubClient
from app.github.users import is_bot
from app.models import Run
from app.store import Store
from app.untrusted import clean_untrusted

# The agent's prompt gives a run's request 20,000 characters; these parts share them.
MAX_REVIEW_COMMENT = 2_000
MAX_REVIEW_COMMENTS = 8_000
MAX_FAILURE = 8_000

RETRY_ON_PR = (
    "A maintainer asked Honk to work on pull request #{pr} again. The branch `{branch}` is "
    "checked out with the earlier change on it: continue from there, change what is asked "
    "and keep what is right."
)
RETRY_ON_ISSUE = "A maintainer asked Honk to try this task again."
CI_FIX = (
    "CI failed on the last commit of pull request #{pr}; this is automatic repair round "
    "{round}. The branch `{branch}` is checked out with the earlier change on it. Find the "
    "cause in the failure below and fix the code; do not skip, weaken or delete tests to "
    "make CI pass. Run the failing checks locally where you can."
)

CONTINUE = (
    "Your earlier attempt at this task stopped at its limit ({reason}) before it was done. "
    "The branch `{branch}` is checked out with what it changed so far{pushed}: carry on from "
    "there and finish the task; keep what is right."
)

MaySteer = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class RequestContext:
    """What a run's kind may read to write its request (app/runs/kinds.py `request`)."""

    issue: dict[str, Any] | None  # the run's issue, as approved (None for a PR's follow-up)
    gh: GitHubClient
    store: Store
    may_steer: MaySteer  # whether a login's words may steer the agent (write access)


@dataclass(frozen=True)
class RetryParts:
    """What a follow-up is told besides its opening: the request, review comments, CI's
    last failure (its summary, the failed checks, the commit)."""

    instructions: str = ""
    reviews: list[dict[str, Any]] = field(default_factory=list)
    failure_text: str = ""
    failure_checks: str = ""
    failure_sha: str = ""


async def retry_context(run: Run, context: RequestContext) -> RetryParts:
    """What a retry continues from: the writers' review comments and the last CI failure.

    Review comments count only from people `context.may_steer` approves (write access):
    anyone else's text must not steer the agent.
    """
    reviews: list[dict[str, Any]] = []
    failure: CiFailure | None = None
    if run.pr_number:
        for comment in await context.gh.review_comments(run.repo, run.pr_number):
            user = comment.get("user") or {}
            body = (comment.get("body") or "").strip()
            if not body or is_bot(user) or body.lower().startswith("/honk"):
                continue
            if await context.may_steer(user.get("login", "")):
                reviews.append(comment)
        failure = await last_failure(context.store, run.repo, run.pr_number)
    return RetryParts(
        instructions=run.instructions,
        reviews=reviews,
        failure_text=failure.summary if failure else "",
        failure_checks=failure.checks if failure else "",
        failure_sha=failure.sha if failure else "",
    )


def ci_repair_request(run: Run, *, failure_text: str) -> str:
    """What a CI repair is told: the round, and the failure (bounded)."""
    branch = run.branch or "the branch"
    parts = [CI_FIX.format(pr=run.pr_number, round=run.round, branch=branch)]
    failure = clean_untrusted(failure_text).strip()
    parts.append("The failure:\n" + clip_middle(failure, MAX_FAILURE))
    return "\n\n".join(parts)


def continue_request(run: Run, *, reason: str, parts: RetryParts) -> str:
    """What a continued run is told: it carries on where its predecessor stopped."""
    branch = run.branch or "the branch"
    pushed = f" (pull request #{run.pr_number})" if run.pr_number else ""
    opening = CONTINUE.format(reason=reason, branch=branch, pushed=pushed)
    rest = retry_request(run, parts).split("\n\n", 1)  # its own opening is replaced
    return "\n\n".join([opening, *rest[1:]])


def retry_request(run: Run, parts: RetryParts) -> str:
    """What a retry is told: what to do now, the review comments, the CI failure (pure).

    Each part is cut to what GitHub shows of it on its own, so an unclosed HTML comment in
    one review comment cannot hide the parts after it.
    """
    branch = run.branch or "the branch"
    instructions = clean_untrusted(parts.instructions)
    failure_text = clean_untrusted(parts.failure_text)
    reviews, failure_checks, failure_sha = parts.reviews, parts.failure_checks, parts.failure_sha
    texts = [
        RETRY_ON_PR.format(pr=run.pr_number, branch=branch) if run.pr_number else RETRY_ON_ISSUE
    ]
    if instructions.strip():
        texts.append("What to do now:\n" + instructions.strip())
    if reviews:
        lines = [_review_line(c) for c in reviews]
        texts.append(
            "Review comments on the pull request, oldest first:\n"
            + clip_middle("\n".join(lines), MAX_REVIEW_COMMENTS)
        )
    if failure_text.strip():
        texts.append(
            f"The last CI run on the pull request failed ({failure_checks or 'checks'} on "
            f"{failure_sha[:7] or 'its last commit'}):\n"
            + clip_middle(failure_text.strip(), MAX_FAILURE)
        )
    return "\n\n".join(texts)


def _review_line(comment: dict[str, Any]) -> str:
    where = comment.get("path") or "the change"
    line = comment.get("line") or comment.get("original_line")
    at = f"`{where}` line {line}" if line else f"`{where}`"
    author = (comment.get("user") or {}).get("login", "someone")
    body = clip_middle(clean_untrusted(comment.get("body")).strip(), MAX_REVIEW_COMMENT)
    return f"- {at}, @{author}: {body}"
