"""From the agent's change to the change to publish: a change at all (else why not, on the
issue), `paths:` held on what is staged, then the review before the PR (runs/review.py)
with the agent once more on an objection and the tests' outcome checks it may run."""

from __future__ import annotations

from collections.abc import Callable

import anthropic

from app.config import Settings
from app.errors import RunFailure
from app.review.outcome import OutcomeChecks
from app.review.outcome_report import OutcomeReport
from app.runs.agent_phase import AgentPhase
from app.runs.context import LimitStop, Outcome, RunContext
from app.runs.outcome import check_outcome
from app.runs.publish import ReviewedChange, limit_reason, report_no_change, withhold
from app.runs.results import Assignment, Attempt, Workspace
from app.runs.review import review_change
from app.runs.stops import Stops
from app.untrusted import code
from app.workspace.checkout import refuse_outside


async def no_change(ctx: RunContext, work: Workspace, attempt: Attempt) -> Outcome | None:
    """The agent changed nothing: say why on the issue and open no PR. None: it changed
    something (or an earlier attempt pushed this branch but died before the PR)."""
    run, result, checkout = ctx.run, attempt.result, work.checkout
    if await checkout.has_changes():
        return None
    if ctx.rules.may_have_unpublished_work(run) and await checkout.commits_ahead_of_base():
        return None  # an earlier attempt pushed this branch but died before the PR
    if result.limit_hit:
        raise LimitStop(limit_reason(result), ctx.limits.max_turns)
    return await report_no_change(ctx, result, await ctx.stored_usage())


def refuse_unverified(ctx: RunContext, attempt: Attempt) -> None:
    """A kind that publishes only verified changes (a fleet's) fails the run when the
    verification failed after its second attempt: no draft PR, the reason first."""
    checked = attempt.verification
    if checked.passed is False and not ctx.rules.publishes_unverified:
        raise RunFailure(f"verification failed: {code(checked.command or '')} did not pass")


async def check_paths(ctx: RunContext, work: Workspace) -> None:
    """`paths:` in `.github/honk.yml`, held on exactly what is staged for the commit
    (submodule commits, mode and type changes included)."""
    refuse_outside(await work.checkout.stage(), ctx.config.path_allowed)


class ReviewPhase:
    """The review of each run's change; one serves every run of a process."""

    def __init__(
        self,
        settings: Settings,
        agent: AgentPhase,
        outcome: OutcomeChecks,
        stops: Stops,
        client: Callable[[], anthropic.AsyncAnthropic],
    ) -> None:
        """`outcome`: the tests' outcome checks, their in-flight base runs shared by the
        process's runs; `client`: the judge's Messages API client, asked for when needed."""
        self.settings = settings
        self.agent = agent
        self.outcome = outcome
        self._stops = stops
        self._client = client

    async def run(
        self, ctx: RunContext, work: Workspace, assignment: Assignment, attempt: Attempt
    ) -> Outcome | ReviewedChange:
        """The judge before the PR (runs/review.py); an objection gets the agent once more.
        The change to publish, or how the run ended (the second attempt undid the change,
        or the review withheld it)."""
        await ctx.tracker.phase("review")
        current = attempt

        async def again(feedback: str) -> Attempt | None:
            nonlocal current
            second = await self.agent.again(
                ctx, work, assignment, current, feedback, "addressing the review"
            )
            if second is None:
                return None
            current = second
            self.agent.verified(ctx, second)
            await check_paths(ctx, work)
            return second

        async def outcome() -> OutcomeReport:
            # Stoppable like verification: a stop request kills the test runs.
            checked = check_outcome(ctx, work, current, self.outcome)
            return await self._stops.until_stopped(ctx.run, checked)

        review = await review_change(
            ctx,
            work,
            attempt,
            assignment.request,
            settings=self.settings,
            client=self._client(),
            again=again,
            outcome=outcome,
        )
        self._stops.check(ctx.run)
        if review.retried and (stopped := await no_change(ctx, work, current)) is not None:
            return stopped  # the second attempt undid the change
        change = ReviewedChange(work, current, review)
        if review.withheld:
            return await withhold(ctx, change, await ctx.stored_usage())
        return change
