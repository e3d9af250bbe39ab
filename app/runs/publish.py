"""A run's change onto GitHub: commit, push, the PR; then the `Honk` check run and the report."""

from __future__ import annotations

import logging
from typing import Any

from app.agent.loop import AgentResult
from app.ci import records
from app.github.auth import GitHubApp
from app.log import describe_error
from app.models import RunState, Usage
from app.runs.context import Outcome, RunContext
from app.runs.people import co_author
from app.runs.review_texts import review_text, total_cost, usage_text, veto_comment
from app.runs.texts import check_run_conclusion, check_run_output, no_change_comment, pr_body

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


async def publish(ctx: RunContext, github: GitHubApp, usage: Usage) -> tuple[dict[str, Any], str]:
    """Commit, push, and open the PR (a follow-up's open PR is left as it is): (PR, sha)."""
    run, gh, subject = ctx.run, ctx.gh, ctx.subject
    checkout, _sandbox, _tools = ctx.work
    result, verification = ctx.done
    bot_name, bot_email = await github.bot_identity(run.installation_id)
    requester = await co_author(gh, github, run.requested_by)
    message = ctx.rules.commit_message(run, subject.title, requester)
    if ctx.review is not None and ctx.review.left_out:
        await checkout.drop_changes(ctx.review.left_out)  # GitHub would refuse the push
        await checkout.stage()  # the index as it will be committed, without them
    # The index as the paths check saw it (`Pipeline._check_paths` staged it): nothing more.
    await checkout.commit_staged(message, author_name=bot_name, author_email=bot_email)
    pushed = await checkout.push(ctx.token)
    await ctx.save(head_sha=pushed)
    unfinished = unfinished_reason(result)
    review = ctx.review
    if subject.pull is not None and subject.pull.get("state") == "open":
        pr = subject.pull
        await ctx.save(pr_number=pr["number"], pr_url=pr["html_url"])
        if ctx.rules.finishes_draft and pr.get("draft"):
            pr = await _finish_draft(ctx, github, pr, usage)
        return pr, pushed
    body = _body(ctx, usage, unfinished)
    blocked = review is not None and review.blocks
    draft = bool(unfinished) or verification.passed is False or blocked
    pr, _created = await gh.open_pull(
        run.repo,
        head=checkout.branch,
        base=checkout.base,
        title=subject.title if not unfinished else f"[unfinished] {subject.title}",
        body=body,
        draft=draft,
    )
    await ctx.save(pr_number=pr["number"], pr_url=pr["html_url"])
    return pr, pushed


def _body(ctx: RunContext, usage: Usage, unfinished: str | None) -> str:
    """The PR's description: the agent's summary, verification, review, cost and links."""
    result, verification = ctx.done
    return pr_body(
        issue_number=ctx.run.issue_number,
        summary=result.summary,
        verification=verification,
        usage=usage,
        model=ctx.model,
        run_id=ctx.run.id,
        unfinished_reason=unfinished,
        review=review_text(ctx.review) if ctx.review is not None else None,
        run_url=ctx.tracker.run_url,
    )


async def _finish_draft(
    ctx: RunContext, github: GitHubApp, pr: dict[str, Any], usage: Usage
) -> dict[str, Any]:
    """A continuation finished the draft its predecessor left at a limit: when it is verified
    and the review let it through, the draft is made ready for review with a fresh body."""
    result, verification = ctx.done
    if result.limit_hit or verification.passed is False or (ctx.review and ctx.review.blocks):
        return pr  # still unfinished, or not good enough: it stays a draft
    body = _body(ctx, usage, None)
    try:
        await ctx.gh.mark_ready_for_review(
            str(pr["node_id"]), graphql_url=github.settings.github_graphql_url
        )
        return await ctx.gh.patch(
            f"/repos/{ctx.run.repo}/pulls/{int(pr['number'])}",
            data={"title": ctx.subject.title, "body": body},
        )
    except Exception as exc:  # the commit is pushed; the PR stays a draft, said in the log
        log.warning("could not make PR #%s ready: %s", pr["number"], describe_error(exc))
        return pr


async def report(ctx: RunContext, pr: dict[str, Any], sha: str, usage: Usage) -> None:
    """The `Honk` check run on the pushed commit, then the tracking comment and Slack."""
    run = ctx.run
    result, verification = ctx.done
    unfinished = unfinished_reason(result)
    review = review_text(ctx.review) if ctx.review is not None else None
    spent = usage_text(usage, ctx.model, ctx.review)
    # What the go-live card on this commit shows, should CI pass on it.
    await records.record_published(
        ctx.store,
        run.repo,
        sha,
        records.Published(
            run=run.id,
            summary=result.summary.strip()[:3000],
            verification=verification.describe(),
            review=ctx.review.line() if ctx.review is not None else None,
            cost=total_cost(usage, ctx.model, ctx.review),
            usage=spent,
        ),
    )
    title, summary = check_run_output(
        kind=run.kind,
        round=run.round,
        summary=result.summary,
        verification=verification,
        usage=usage,
        model=ctx.model,
        run_id=run.id,
        unfinished_reason=unfinished,
        review=review,
    )
    conclusion = check_run_conclusion(verification, unfinished is not None, review)
    await ctx.tracker.check_run(sha, conclusion, title, summary)
    limits = ctx.limits
    await ctx.tracker.finished(
        RunState.SUCCEEDED,
        pr=pr,
        summary=result.summary,
        usage_text=spent,
        pushed_sha=sha,
        review=ctx.review.line() if ctx.review is not None else None,
        stopped=(
            (unfinished, limits.max_turns, total_cost(usage, ctx.model, ctx.review))
            if unfinished and limits
            else None
        ),
    )


async def withhold(ctx: RunContext, usage: Usage) -> Outcome:
    """`review: {on_veto: comment}` and a veto: nothing is pushed; the issue is told why."""
    assert ctx.review is not None
    checkout, _sandbox, _tools = ctx.work
    reason = f"Honk's review vetoed the change: {ctx.review.why()}"[:1000]
    where = ctx.tracker.comment_on
    if where:
        text = veto_comment(ctx.review, await checkout.diff_stat())
        await ctx.gh.comment(ctx.run.repo, where, text)
    ctx.tracker.progress.states["publish"] = "skipped"
    await ctx.tracker.finished(
        RunState.FAILED,
        error=reason,
        summary=ctx.done[0].summary,
        usage_text=usage_text(usage, ctx.model, ctx.review),
        review=ctx.review.line(),
    )
    return Outcome(RunState.FAILED, reason)


async def report_no_change(ctx: RunContext, usage: Usage) -> Outcome:
    """The agent changed nothing: say why on the issue (or PR); no PR is opened."""
    result, _verification = ctx.done
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
