"""A run's change onto GitHub: commit, push, the PR; then the `Honk` check run and the report."""

from __future__ import annotations

from typing import Any

from app.agent.loop import AgentResult
from app.github.auth import GitHubApp
from app.models import RunState, Usage
from app.runs.context import RunContext
from app.runs.people import co_author
from app.runs.texts import check_run_conclusion, check_run_output, pr_body

# What a run's installation token may do, and on which repository: no more.
RUN_PERMISSIONS = {
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "checks": "write",
    "metadata": "read",
}
# Running tests leaves caches behind; they are never part of the change, even in a
# repository without a .gitignore. Kept in .git/info/exclude, which is not committed.
BUILD_ARTIFACTS = (
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
    # The index as the paths check saw it (`Pipeline._check_paths` staged it): nothing more.
    await checkout.commit_staged(message, author_name=bot_name, author_email=bot_email)
    pushed = await checkout.push(ctx.token)
    await ctx.save(head_sha=pushed)
    if subject.pull is not None and subject.pull.get("state") == "open":
        pr = subject.pull
        await ctx.save(pr_number=pr["number"], pr_url=pr["html_url"])
        return pr, pushed
    unfinished = unfinished_reason(result)
    body = pr_body(
        issue_number=run.issue_number,
        summary=result.summary,
        verification=verification,
        usage=usage,
        model=ctx.model,
        run_id=run.id,
        unfinished_reason=unfinished,
    )
    draft = bool(unfinished) or verification.passed is False
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


async def report(ctx: RunContext, pr: dict[str, Any], sha: str, usage: Usage) -> None:
    """The `Honk` check run on the pushed commit, then the tracking comment and Slack."""
    run = ctx.run
    result, verification = ctx.done
    unfinished = unfinished_reason(result)
    title, summary = check_run_output(
        kind=run.kind,
        round=run.round,
        summary=result.summary,
        verification=verification,
        usage=usage,
        model=ctx.model,
        run_id=run.id,
        unfinished_reason=unfinished,
    )
    conclusion = check_run_conclusion(verification, unfinished is not None)
    await ctx.tracker.check_run(sha, conclusion, title, summary)
    await ctx.tracker.finished(
        RunState.SUCCEEDED,
        pr=pr,
        summary=result.summary,
        usage_text=usage.describe(ctx.model),
        pushed_sha=sha,
    )
