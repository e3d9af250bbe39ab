"""A run's change onto GitHub: commit, push, the PR; then the `Honk` check run and the report."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from app.agent.results import AgentResult
from app.ci import fleet_prs, records
from app.github.auth import GitHubApp
from app.log import describe_error
from app.models import ReviewVerdict, RunState, Usage
from app.runs.context import Outcome, RunContext
from app.runs.people import co_author
from app.runs.results import Attempt, StoppedAtLimit, Workspace
from app.runs.review import Review
from app.runs.review_texts import review_text, total_cost, usage_text, veto_comment
from app.runs.texts import (
    ChangeReport,
    FleetLink,
    check_run_conclusion,
    check_run_output,
    no_change_comment,
    pr_body,
)
from app.slack.blocks import PullRef
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)

# What a run's installation token may do, and on which repository: no more.
RUN_PERMISSIONS = {
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "checks": "write",
    "metadata": "read",
}
# Running tests leaves caches behind, and setup a virtualenv (the sandbox's PATH leads
# with `.venv/bin`); they are never part of the change, even in a repository without a
# .gitignore. Kept in .git/info/exclude, which is not committed.
BUILD_ARTIFACTS = (
    ".venv/",
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".coverage",
    "node_modules/",
    "*.egg-info/",
)


def limit_reason(result: AgentResult) -> str:
    return {
        "max_turns": "the turn limit was reached",
        "timeout": "the time limit was reached",
        "max_tokens": "the token limit was reached",
    }.get(result.outcome, result.outcome)


def unfinished_reason(result: AgentResult) -> str | None:
    """Why the change is unfinished (a limit stopped the agent), or None when it is not."""
    return limit_reason(result) if result.limit_hit else None


@dataclass(frozen=True)
class Closing:
    """Everything a run says once its change is on GitHub, decided before the PR opens and
    kept with the run: a run claimed again after a crash says it from here, and never runs the
    agent again on a branch whose change it already pushed."""

    sha: str  # the commit pushed
    title: str  # the PR's, should this run open it
    body: str
    draft: bool
    ready_body: str | None  # a continuation's draft made ready, with this body; else None
    published: dict[str, Any]  # records.Published: the go-live card's facts
    check: tuple[str, str, str]  # the `Honk` check run: conclusion, title, summary
    summary: str  # the model's, raw (the tracker makes it inert)
    usage_text: str
    review: str | None  # the review's verdict in one line
    stopped: StoppedAtLimit | None  # a limit stopped the agent


def _encode_closing(closing: Closing) -> dict[str, Any]:
    """As stored since before StoppedAtLimit: `stopped` a [why, turns, dollars] list."""
    stopped = closing.stopped
    return {
        **asdict(closing),
        "stopped": [stopped.reason, stopped.turns, stopped.cost_usd] if stopped else None,
    }


def _decode_closing(value: Any) -> Closing | None:
    data = mapping(value)
    if not data:
        return None
    try:
        stopped = data.get("stopped")
        return Closing(
            **{
                **data,
                "check": tuple(str(part) for part in data["check"]),
                "stopped": StoppedAtLimit(str(stopped[0]), int(stopped[1]), float(stopped[2]))
                if stopped
                else None,
            }
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None


# run id -> its Closing (kept with the run's other facts; a handful of KB)
_CLOSINGS: Namespace[Closing] = Namespace(
    "run_closing", owner=__name__, encode=_encode_closing, decode=_decode_closing
)


@dataclass(frozen=True)
class ReviewedChange:
    """A change ready to publish (or to withhold): where it is, the agent's attempt that
    made it (verified), and its review."""

    workspace: Workspace
    attempt: Attempt
    review: Review


async def saved_closing(ctx: RunContext) -> Closing | None:
    """The Closing this run kept before an earlier attempt died, if it pushed what it says."""
    run = ctx.run
    if not run.head_sha:
        return None
    closing = await _CLOSINGS.get(ctx.store, str(run.id))
    return closing if closing is not None and closing.sha == run.head_sha else None


async def publish(
    ctx: RunContext, what: ReviewedChange, github: GitHubApp, usage: Usage
) -> tuple[dict[str, Any], Closing]:
    """Commit, push, and open the PR (a follow-up's open PR is left as it is): (PR, Closing)."""
    run, subject, review = ctx.run, ctx.subject, what.review
    checkout = what.workspace.checkout
    bot_name, bot_email = await github.bot_identity(run.installation_id)
    requester = await co_author(ctx.gh, github, run.requested_by)
    message = ctx.rules.commit_message(run, subject.title, requester)
    if review.left_out:
        await checkout.drop_changes(review.left_out)  # GitHub would refuse the push
        await checkout.stage()  # the index as it will be committed, without them
    # The index as the paths check saw it (`Pipeline._check_paths` staged it): nothing more.
    await checkout.commit_staged(message, author_name=bot_name, author_email=bot_email)
    pushed = await checkout.push(what.workspace.token)
    closing = _closing(ctx, what, usage, pushed)
    # Kept before the run records its commit: a run with a head_sha always has its Closing.
    await _CLOSINGS.put(ctx.store, str(run.id), closing)
    await ctx.save(head_sha=pushed)
    return await open_pull(ctx, github, closing), closing


async def open_pull(ctx: RunContext, github: GitHubApp, closing: Closing) -> dict[str, Any]:
    """The run's PR: a follow-up's (a continuation's draft made ready), or one opened from
    `checkout.branch` (an existing open PR for the branch is reused, so never two)."""
    run, subject = ctx.run, ctx.subject
    pull = subject.pull
    if pull is not None and pull.get("state") == "open":
        await ctx.save(pr_number=pull["number"], pr_url=pull["html_url"])
        if ctx.rules.finishes_draft and pull.get("draft") and closing.ready_body is not None:
            pull = await _finish_draft(ctx, github, pull, closing.ready_body)
        return pull
    pr, created = await ctx.gh.open_pull(
        run.repo,
        head=ctx.branch,
        base=ctx.base_branch,
        title=closing.title,
        body=closing.body,
        draft=closing.draft,
    )
    if not created and pr.get("draft") and not closing.draft:
        # The branch's open PR is a draft an earlier run left (a vetoed change that the
        # fleet's retry, or the issue labelled again, takes up): this change is finished.
        pr = await _mark_ready(ctx, github, pr)
    await ctx.save(pr_number=pr["number"], pr_url=pr["html_url"])
    return pr


def _closing(ctx: RunContext, what: ReviewedChange, usage: Usage, sha: str) -> Closing:
    """What the run will say once its PR is open (see Closing)."""
    run, subject, review = ctx.run, ctx.subject, what.review
    result, verification = what.attempt.result, what.attempt.verification
    unfinished = unfinished_reason(result)
    blocked = review.blocks
    finished = not (result.limit_hit or verification.passed is False or blocked)
    review_words = review_text(review)
    told = ChangeReport(
        run.id, result.summary, verification, usage, ctx.model, unfinished, review_words
    )
    title, summary = check_run_output(told, kind=run.kind, round=run.round)
    published = records.Published(
        run=run.id,
        summary=result.summary.strip()[:3000],
        verification=verification.describe(),
        review=review.line(),
        cost=total_cost(usage, ctx.model, review),
        usage=usage_text(usage, ctx.model, review),
    )
    conclusion = check_run_conclusion(verification, unfinished is not None, review_words)
    return Closing(
        sha=sha,
        title=subject.title if not unfinished else f"[unfinished] {subject.title}",
        body=_body(ctx, what, told),
        draft=bool(unfinished) or verification.passed is False or blocked,
        ready_body=_body(ctx, what, replace(told, unfinished_reason=None)) if finished else None,
        published=asdict(published),
        check=(conclusion, title, summary),
        summary=result.summary,
        usage_text=published.usage,
        review=published.review,
        stopped=(
            StoppedAtLimit(unfinished, ctx.limits.max_turns, published.cost) if unfinished else None
        ),
    )


def _body(ctx: RunContext, what: ReviewedChange, told: ChangeReport) -> str:
    """The PR's description: the agent's summary, verification, review, cost and links (for a
    fleet's run, the fleet's request and page too)."""
    fleet = ctx.subject.fleet
    return pr_body(
        told,
        issue_number=ctx.run.issue_number,
        run_url=ctx.tracker.run_url,
        left_out=tuple(item.describe() for item in what.workspace.checkout.left_out),
        fleet=(
            FleetLink(fleet.id, fleet.request, fleet.requested_by, ctx.fleet_url)
            if fleet is not None
            else None
        ),
    )


async def _mark_ready(ctx: RunContext, github: GitHubApp, pr: dict[str, Any]) -> dict[str, Any]:
    """The draft made ready for review (its title and body are the run's already)."""
    try:
        await ctx.gh.mark_ready_for_review(
            str(pr["node_id"]), graphql_url=github.settings.graphql_url
        )
    except Exception as exc:  # the commit is pushed; the PR stays a draft, said in the log
        log.warning("could not make PR #%s ready: %s", pr["number"], describe_error(exc))
        return pr
    return {**pr, "draft": False}


async def _finish_draft(
    ctx: RunContext, github: GitHubApp, pr: dict[str, Any], body: str
) -> dict[str, Any]:
    """A continuation finished the draft its predecessor left at a limit: when it is verified
    and the review let it through (the Closing has a `ready_body` then), the draft is made
    ready for review with a fresh body."""
    try:
        await ctx.gh.mark_ready_for_review(
            str(pr["node_id"]), graphql_url=github.settings.graphql_url
        )
        patched: dict[str, Any] = await ctx.gh.patch(
            f"/repos/{ctx.run.repo}/pulls/{int(pr['number'])}",
            data={"title": ctx.subject.title, "body": body},
        )
        return patched
    except Exception as exc:  # the commit is pushed; the PR stays a draft, said in the log
        log.warning("could not make PR #%s ready: %s", pr["number"], describe_error(exc))
        return pr


async def report(ctx: RunContext, pr: dict[str, Any], closing: Closing) -> None:
    """The `Honk` check run on the pushed commit, then the tracking comment and Slack.

    Said again by a run claimed again after a crash: a check run already made is not made
    twice."""
    run, sha = ctx.run, closing.sha
    # What the go-live card on this commit shows, should CI pass on it.
    await records.record_published(ctx.store, run.repo, sha, records.Published(**closing.published))
    made = await records.honk_check(ctx.store, run.repo, sha)
    if made is None or made.run != run.id:
        await ctx.tracker.check_run(sha, *closing.check)
    if run.fleet_id is not None:
        # The fleet's repository shows its PR before CI can say anything of the commit.
        verdict = ReviewVerdict(run.review) if run.review else None
        vetoed = bool(verdict and verdict.stopped)
        try:
            await fleet_prs.pr_published(ctx.store, run, vetoed=vetoed, model=ctx.model)
        except Exception as exc:  # the conductor finds the PR from the run all the same
            log.warning("could not show PR #%s on fleet %s: %s", run.pr_number, run.fleet_id,
                        describe_error(exc))  # fmt: skip
    await ctx.tracker.finished(
        RunState.SUCCEEDED,
        pr=PullRef.of(pr),
        summary=closing.summary,
        usage_text=closing.usage_text,
        pushed_sha=sha,
        review=closing.review,
        stopped=closing.stopped,
    )


async def withhold(ctx: RunContext, what: ReviewedChange, usage: Usage) -> Outcome:
    """`review: {on_veto: comment}` and a veto: nothing is pushed; the issue is told why."""
    review = what.review
    stopped = (
        "The tests' outcome stopped the change"
        if review.verdict == ReviewVerdict.OUTCOME
        else "Honk's review vetoed the change"
    )
    reason = f"{stopped}: {review.why()}"[:1000]
    where = ctx.tracker.comment_on
    if where:
        text = veto_comment(review, await what.workspace.checkout.diff_stat())
        await ctx.gh.comment(ctx.run.repo, where, text)
    ctx.tracker.progress.states["publish"] = "skipped"
    await ctx.tracker.finished(
        RunState.FAILED,
        error=reason,
        summary=what.attempt.result.summary,
        usage_text=usage_text(usage, ctx.model, review),
        review=review.line(),
    )
    return Outcome(RunState.FAILED, reason)


async def report_no_change(ctx: RunContext, result: AgentResult, usage: Usage) -> Outcome:
    """The agent changed nothing (its `result` says why): say so on the issue (or PR); no PR
    is opened."""
    text = no_change_comment(result.summary)
    if ctx.tracker.comment_on:
        await ctx.gh.comment(ctx.run.repo, ctx.tracker.comment_on, text)
    ctx.tracker.progress.states["publish"] = "skipped"
    # Cut before it is made inert: a cut through an inert code span would undo it.
    note = no_change_comment(result.summary[:400])
    await ctx.tracker.finished(
        RunState.NO_CHANGE,
        note=note,
        summary=result.summary,
        usage_text=usage.describe(ctx.model),
    )
    return Outcome(RunState.NO_CHANGE)
