"""What the pipeline's attempts of the agent share: the task, a second attempt, verification."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from app.agent.prompts import MAX_REPO_INSTRUCTIONS, REPO_INSTRUCTION_FILES, AgentTask, build_task
from app.agent.results import AgentLimits, AgentResult
from app.runs.context import RunContext
from app.runs.follow_up import RequestContext
from app.runs.people import write_access_check, writer_comments
from app.runs.results import Assignment, Workspace
from app.runs.texts import Verification
from app.store import Store
from app.workspace.command_output import CommandResult


async def instruct(
    ctx: RunContext, workspace: Workspace, store: Store, *, output_limit: int
) -> Assignment:
    """The run's task and limits: the issue (as approved), writers' comments, the
    repository's instructions (from the base branch), the run's own request."""
    run, gh, subject = ctx.run, ctx.gh, ctx.subject
    checkout, sandbox = workspace.checkout, workspace.sandbox
    may_steer = write_access_check(gh, run.repo)
    comments = (
        await writer_comments(gh, run.repo, run.issue_number, may_steer)
        if subject.issue and run.issue_number
        else []
    )
    # From the base branch, never the work tree: a follow-up's is the agent's own.
    instructions = await checkout.base_files(
        REPO_INSTRUCTION_FILES, max_bytes=MAX_REPO_INSTRUCTIONS * 4
    )
    task_issue = subject.as_issue or {
        "title": run.instructions[:80],
        "body": run.instructions,
        "number": 0,
    }
    request = await ctx.rules.request(
        run, RequestContext(issue=subject.issue, gh=gh, store=store, may_steer=may_steer)
    )
    task = functools.partial(
        task_with,
        repo=run.repo,
        issue=task_issue,
        comments=comments,
        repo_instructions=instructions,
        verify_command=ctx.config.verify,
        visible_root=sandbox.visible_root,
        network_hosts=[str(rule.entry) for rule in ctx.network_plan.agent],
    )
    limits = AgentLimits(
        max_turns=ctx.limits.max_turns,
        max_seconds=ctx.limits.max_minutes * 60,
        max_tokens=ctx.limits.max_tokens,
        output_limit=output_limit,
    )
    return Assignment(request, task, limits)


def task_with(extra_instructions: str, **parts: Any) -> AgentTask:
    """The agent's task from its fixed parts and a run's (or a second attempt's) instructions."""
    return build_task(extra_instructions=extra_instructions, **parts)


def second_attempt_limits(limits: AgentLimits) -> AgentLimits:
    """A second attempt (after a failed verification or a veto) gets half the turns and time."""
    return dataclasses.replace(
        limits, max_turns=max(limits.max_turns // 2, 5), max_seconds=limits.max_seconds / 2
    )


def combine(first: AgentResult, second: AgentResult) -> AgentResult:
    """The second attempt's result, counting the first one's turns, commands and usage too."""
    second.turns += first.turns
    second.commands = first.commands + second.commands
    second.usage = first.usage + second.usage
    second.last_test = second.last_test or first.last_test
    return second


async def verification(
    verify: str | None,
    result: AgentResult,
    run_command: Callable[[str], Awaitable[CommandResult]],
) -> Verification:
    """The repository's `verify:` command run in the sandbox, else the agent's last test run."""
    if verify:
        outcome = await run_command(verify)
        return Verification(verify, outcome.exit_code == 0, outcome.output, "honk")
    if result.last_test is not None:
        return Verification(result.last_test.command, result.last_test.exit_code == 0, "", "agent")
    return Verification(None, None)
