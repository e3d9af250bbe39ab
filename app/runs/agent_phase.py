"""The agent's phase: the agent within the run's limits, streaming its events to the store,
then Honk's verification of what it did; one more bounded attempt when verification fails,
or when the review objects (`again`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import anthropic

from app import metrics
from app.agent.loop import run_agent
from app.agent.prompts import AgentTask
from app.agent.results import AgentEvent, AgentLimits, AgentResult
from app.errors import RunFailure
from app.runs.attempts import combine, second_attempt_limits, verification
from app.runs.context import RunCancelled, RunContext
from app.runs.results import Assignment, Attempt, Workspace
from app.runs.stops import Stops
from app.runs.texts import Verification
from app.store import Store


class AgentPhase:
    """The agent's attempts at a run's task, each verified; one serves every run of a process."""

    def __init__(
        self, store: Store, stops: Stops, client: Callable[[], anthropic.AsyncAnthropic]
    ) -> None:
        """`client`: the Messages API's client, asked for when the agent first starts (it is
        made on first use, so `honk serve` starts before a key is set)."""
        self.store = store
        self._stops = stops
        self._client = client

    async def work(self, ctx: RunContext, work: Workspace, assignment: Assignment) -> Attempt:
        """The agent, within the run's limits; then Honk's check of what it did."""
        await ctx.tracker.phase("agent", "starting")
        began = time.time()
        result = ctx.result = await self._agent(ctx, work, assignment.task(), assignment.limits)
        return await self._verify(ctx, work, assignment, result, began)

    async def _verify(
        self,
        ctx: RunContext,
        work: Workspace,
        assignment: Assignment,
        result: AgentResult,
        began: float,
    ) -> Attempt:
        """Honk's own check of the change; one more bounded attempt when it fails."""
        await ctx.tracker.phase("verify")
        checked = await self._verification(ctx, work, result)
        attempt = Attempt(result, checked, began)
        if checked.passed is False:
            attempt = (
                await self.again(
                    ctx,
                    work,
                    assignment,
                    attempt,
                    f"Your previous change failed verification. "
                    f"`{checked.command}` printed:\n{checked.output}",
                    "fixing the failed verification",
                )
                or attempt
            )
        self.verified(ctx, attempt)
        return attempt

    async def again(
        self,
        ctx: RunContext,
        work: Workspace,
        assignment: Assignment,
        attempt: Attempt,
        feedback: str,
        note: str,
    ) -> Attempt | None:
        """The agent once more with `feedback`, within half the limits; then verify what changed.

        None when the first attempt ended at a limit or in an error: no second one then.
        """
        result = attempt.result
        if result.limit_hit or result.outcome != "done":
            return None
        await ctx.tracker.phase("agent", note)
        checkout = work.checkout
        before = await checkout.unified_diff()
        limits = second_attempt_limits(assignment.limits)
        second = await self._agent(ctx, work, assignment.task(feedback), limits)
        combined = ctx.result = combine(result, second)
        checked = attempt.verification
        if await checkout.unified_diff() != before:  # the same change keeps its verification
            await ctx.tracker.phase("verify")
            checked = await self._verification(ctx, work, combined)
        return Attempt(combined, checked, attempt.began)

    def verified(self, ctx: RunContext, attempt: Attempt) -> None:
        """The verification on the tracking comment; a stop request or the agent's error ends
        the run here."""
        ctx.tracker.progress.done("verify", attempt.verification.describe())
        self._stops.check(ctx.run)
        if attempt.result.outcome == "error":
            raise RunFailure(attempt.result.error or "the agent failed")

    async def _agent(
        self, ctx: RunContext, work: Workspace, task: AgentTask, limits: AgentLimits
    ) -> AgentResult:
        run, tracker = ctx.run, ctx.tracker

        async def on_event(event: AgentEvent) -> None:
            if event.usage is not None:
                await self.store.runs.add_usage(run.id, event.usage)
                usage = event.usage
                metrics.count_usage(ctx.model, usage.to_dict(), usage.cost_usd(ctx.model))
            if event.kind == "turn":
                await tracker.note("agent", f"turn {event.turn}")
            await tracker.events.agent(event)  # the run page's transcript

        async def should_stop() -> bool:
            return self._stops.requested(run.id)

        await tracker.events.agent_started(ctx.model, limits)
        result = await self._stops.until_stopped(
            run,
            run_agent(
                self._client(),
                model=ctx.model,
                task=task,
                tools=work.toolbox,
                limits=limits,
                on_event=on_event,
                should_stop=should_stop,
            ),
        )
        if result.outcome == "cancelled":
            raise RunCancelled()
        tracker.progress.done("agent", f"{result.turns} turns, {result.outcome}")
        return result

    async def _verification(
        self, ctx: RunContext, work: Workspace, result: AgentResult
    ) -> Verification:
        sandbox = work.sandbox
        checked = await verification(
            ctx.config.verify,
            result,
            # Offline whatever `network:` says: it runs the code the agent wrote.
            lambda cmd: self._stops.until_stopped(ctx.run, sandbox.run(cmd, offline=True)),
        )
        await ctx.tracker.events.verification(checked)  # for the run page
        return checked
