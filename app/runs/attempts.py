"""What the pipeline's attempts of the agent share: the task, a second attempt, verification."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from app.agent.loop import AgentLimits, AgentResult
from app.agent.prompts import AgentTask, build_task
from app.runs.texts import Verification
from app.workspace.sandbox import CommandResult


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
