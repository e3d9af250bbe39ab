"""The review before the PR: the tests' outcome (app/review), Honk's deterministic checks of
the diff, then a model judge.

An objection (an outcome finding, a finding of the checks, or the judge's veto) goes back to
the agent once with the reasons; what still stands after that makes the PR a draft that opens
with it (or, with `review: {on_veto: comment}`, no PR and a comment). Every run records its
verdict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic

from app import metrics
from app.config import Settings
from app.log import describe_error
from app.models import ReviewVerdict, Usage
from app.repo_config import OnVeto, ReviewPolicy, review_policy
from app.review.outcome_report import OutcomeReport
from app.review.reports import test_file
from app.runs import tests_in_diffs
from app.runs.context import RunContext
from app.runs.diff_checks import PARSE_CHECK, Change, Finding, check_change, read_change
from app.runs.judge import Case, JudgeUnavailable, Verdict, ask_judge
from app.runs.results import Attempt, Workspace
from app.runs.texts import Verification
from app.untrusted import inert

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"
# GitHub refuses a push that changes workflows from an App without the `workflows`
# permission, which Honk does not ask for: such changes are left out of the commit.
WORKFLOWS = ".github/workflows/"

FEEDBACK = """\
Honk's review stopped your change before the pull request, for these reasons:
{reasons}

Change the code so that it does what was asked and the tests stay honest: do not skip, \
delete or weaken tests or rewrite what they expect, and leave CI, test configuration, lock \
files and vendored code as they were unless the request asks otherwise; undo any such change \
you made. Then run the tests again."""

# One more attempt of the agent with the feedback, verified; None when the run's limits
# leave none.
Again = Callable[[str], Awaitable[Attempt | None]]
# The outcome checks of the change as it is now (app/runs/outcome.py, stoppable).
CheckOutcome = Callable[[], Awaitable[OutcomeReport]]


@dataclass
class Round:
    """One look at the change: the checks' findings and the judge's verdict (or why none)."""

    findings: list[Finding]
    verdict: Verdict | None = None
    unavailable: str | None = None  # why the judge gave no verdict
    diff: str = field(default="", repr=False)
    outcome: OutcomeReport | None = None  # the tests' outcome checks, when they ran

    @property
    def outcome_findings(self) -> list[str]:
        return [f.describe() for f in self.outcome.findings] if self.outcome else []

    @property
    def objections(self) -> list[str]:
        """What the agent is told: the outcome's findings, the checks', the judge's reasons."""
        return (
            self.outcome_findings
            + [finding.describe() for finding in self.findings]
            + self._reasons
        )

    @property
    def published_objections(self) -> list[str]:
        """The same for GitHub and Slack: the judge's reasons are a model's, so inert."""
        return (
            self.outcome_findings
            + [finding.describe() for finding in self.findings]
            + [inert(reason) for reason in self._reasons]
        )

    @property
    def not_done(self) -> str | None:
        """Why this look is incomplete: the judge unavailable, or the outcome checks failed."""
        if self.outcome is not None and self.outcome.error is not None:
            return f"the test outcome checks could not be done: {self.outcome.error}"
        return self.unavailable

    @property
    def _reasons(self) -> list[str]:
        vetoed = self.verdict is not None and not self.verdict.approve
        return list(self.verdict.reasons) if self.verdict is not None and vetoed else []

    def describe(self) -> str:
        if self.unavailable is not None:
            judge = f"judge unavailable ({self.unavailable})"
        elif self.verdict is None:
            judge = "no judge"
        else:
            judge = "judge approved" if self.verdict.approve else "judge vetoed"
        found = len(self.findings)
        parsed = sum(1 for finding in self.findings if finding.check == PARSE_CHECK)
        # Which check caught what: the tests' outcome, the parsed test files, the diff's lines.
        how = f" ({parsed} from reading the test files, {found - parsed} from the diff)"
        outcome = ""
        if self.outcome:
            count = len(self.outcome.findings)
            outcome = f"{count} outcome finding{'' if count == 1 else 's'}, "
        plural = "" if found == 1 else "s"
        return f"{outcome}{found} finding{plural}{how if parsed else ''}, {judge}"


@dataclass
class Review:
    """The whole review of a run: its rounds, the verdict, what the judge cost."""

    policy: ReviewPolicy
    verdict: ReviewVerdict = ReviewVerdict.SKIPPED
    rounds: list[Round] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    left_out: list[str] = field(default_factory=list)  # workflow files Honk cannot push

    @property
    def last(self) -> Round:
        return self.rounds[-1] if self.rounds else Round([])

    @property
    def retried(self) -> bool:
        return len(self.rounds) > 1

    @property
    def objections(self) -> list[str]:
        return self.last.objections

    @property
    def first_objections(self) -> list[str]:
        return self.rounds[0].objections if self.rounds else []

    @property
    def published(self) -> tuple[list[str], list[str]]:
        """The objections of the last look and of the first, as published (see Round)."""
        first = self.rounds[0].published_objections if self.rounds else []
        return self.last.published_objections, first

    @property
    def summary(self) -> str:
        verdict = self.last.verdict
        return verdict.summary if verdict is not None else ""

    @property
    def beyond_request(self) -> bool:
        return self.last.verdict is not None and self.last.verdict.beyond_request

    @property
    def blocks(self) -> bool:
        """The PR must not be ready for review: the change was vetoed, or not reviewed."""
        return self.verdict.stopped or self.verdict == ReviewVerdict.UNAVAILABLE

    @property
    def withheld(self) -> bool:
        """Vetoed where the repository asked for a comment instead of a draft PR."""
        return self.verdict.stopped and self.policy.on_veto == OnVeto.COMMENT

    @property
    def outcome(self) -> OutcomeReport | None:
        """The last look's outcome checks (None when they did not run)."""
        return self.last.outcome

    def why(self, limit: int = 5) -> str:
        """Why the review stopped the change, in plain words (empty when it did not)."""
        if self.verdict == ReviewVerdict.UNAVAILABLE:
            return f"the review could not be done ({self.last.not_done})"
        if not self.verdict.stopped:
            return ""
        objections = self.published[0]
        shown = objections[:limit]
        more = len(objections) - len(shown)
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")

    def status(self) -> str:
        """The verdict and why, in a few words (the tracking comment's checklist)."""
        if self.verdict == ReviewVerdict.APPROVED:
            return "approved." + (f" {inert(self.summary)}" if self.summary else "")
        if self.verdict == ReviewVerdict.RECOVERED:
            first = "; ".join(self.published[1][:3])
            how = "stopped by the tests' outcome" if self.rounds[0].outcome_findings else "vetoed"
            return f"{how} at first ({first}); the agent's second attempt was approved."
        if self.verdict == ReviewVerdict.VETOED:
            return f"vetoed: {self.why()}."
        if self.verdict == ReviewVerdict.OUTCOME:
            return f"stopped by the tests' outcome: {self.why()}."
        if self.verdict == ReviewVerdict.UNAVAILABLE:
            return f"{self.why()}; the pull request is a draft."
        return "skipped (every part of the review is off for this repository)."

    def line(self) -> str:
        """One line for the tracking comment's outcome, Slack and the check."""
        return f"Review: {self.status()}"


async def review_change(
    ctx: RunContext,
    workspace: Workspace,
    attempt: Attempt,
    request: str,
    *,
    settings: Settings,
    client: anthropic.AsyncAnthropic,
    again: Again,
    outcome: CheckOutcome | None = None,
) -> Review:
    """Check the change `attempt` made (the run asked for `request`: app/runs/results.py
    Assignment), ask the judge, give the agent one more go on an objection; record it."""
    review = Review(review_policy(settings.review, ctx.config))
    policy = review.policy
    check_outcome = outcome if policy.outcome else None
    if policy.checks or policy.model_judge or check_outcome is not None:
        asked = request_text(ctx, request)
        look = Look(ctx, workspace, review, client, asked, check_outcome)
        current = await look(attempt.verification)
        if current.objections:
            # Recorded now: a run that dies in its second attempt was still vetoed.
            verdict = _verdict(current, retried=False)
            await ctx.save(review=verdict)
            await ctx.tracker.events.review(review_record(review, verdict, final=False))
        if current.objections and (second := await again(_feedback(current))) is not None:
            await ctx.tracker.phase("review", "after the agent's second attempt")
            current = await look(second.verification)
        review.verdict = _verdict(current, retried=review.retried)
    checkout = workspace.checkout
    review.left_out = [p for p in await checkout.changed_files() if p.startswith(WORKFLOWS)]
    await ctx.save(review=review.verdict)
    await ctx.tracker.events.review(review_record(review, review.verdict, final=True))
    metrics.verdicts.labels(review.verdict).inc()
    ctx.tracker.progress.done("review", review.status()[:300])
    return review


def review_record(review: Review, verdict: str, *, final: bool) -> dict[str, Any]:
    """The review's last look as a run event (the run page's Review card and its outcome).

    `round` numbers the looks: a verdict on the same look replaces the one recorded before
    the agent's second attempt, a second look is shown beside the first. The judge's words
    are stored as written; whoever shows them makes them inert.
    """
    current, policy = review.last, review.policy
    judge = current.verdict
    return {
        "verdict": verdict,
        "round": len(review.rounds),
        "final": final,
        "findings": [finding.describe() for finding in current.findings],
        "reasons": list(judge.reasons) if judge is not None and not judge.approve else [],
        "summary": judge.summary if judge is not None else "",
        "beyond_request": bool(judge is not None and judge.beyond_request),
        "unavailable": current.unavailable,
        "checks": policy.checks,
        "model": policy.model if policy.model_judge else None,
        "left_out": list(review.left_out),
    }


async def mark_unreviewed(ctx: RunContext) -> None:
    """A run that ended before its review records that it had none; never fails the run."""
    if ctx.run.review is not None:
        return
    try:
        await ctx.save(review=ReviewVerdict.SKIPPED)
    except Exception as exc:
        log.warning("could not record the run's review: %s", describe_error(exc))


def request_text(ctx: RunContext, request: str) -> str:
    """What the run was asked: the issue (or PR) and the run's own instructions (`request`)."""
    parts = []
    issue = ctx.subject.as_issue
    if issue is not None:
        parts.append(f"# {issue.get('title') or ''}\n\n{issue.get('body') or ''}".strip())
    if request.strip():
        parts.append(request.strip())
    return "\n\n".join(parts)


def verification_text(verification: Verification | None) -> str:
    if verification is None:
        return ""
    return f"{verification.describe()}\n\n{verification.output}".strip()


@dataclass(frozen=True)
class Look:
    """One look at the change as it is now (`await look(verification)`): the checks, the
    tests' outcome and the judge, appended to the review's rounds."""

    ctx: RunContext
    workspace: Workspace
    review: Review
    client: anthropic.AsyncAnthropic
    request: str
    check_outcome: CheckOutcome | None

    async def __call__(self, verification: Verification) -> Round:
        return await _look(self, verification)


async def _look(look: Look, verification: Verification) -> Round:
    ctx, review, client, request = look.ctx, look.review, look.client, look.request
    checkout, check_outcome = look.workspace.checkout, look.check_outcome
    policy = review.policy
    # The changed files are read whole only for the checks; the judge needs the diff alone.
    change = await read_change(checkout) if policy.checks else Change(await checkout.unified_diff())
    diff = change.diff
    if review.rounds and review.last.diff == diff:
        # The second attempt changed nothing: the first look stands (asking the judge again
        # would only buy another roll of the dice, and the tests would do what they did).
        last = review.last
        same = Round(last.findings, last.verdict, last.unavailable, diff, last.outcome)
        review.rounds.append(same)
        await ctx.store.runs.add_step(ctx.run.id, "review", "unchanged: " + same.describe())
        return same
    findings: list[Finding] = []
    if policy.checks:
        try:
            # A large diff (or many test files) takes a while to read: not on the event loop.
            findings = await asyncio.to_thread(
                check_change, change, request=request, allow=policy.allow
            )
        except ValueError as exc:  # a diff that cannot be read is never a clean one
            findings = [Finding("(the change)", None, UNREADABLE, str(exc))]
    current = Round(findings, diff=diff)
    # What the tests do, after a verification that did not fail (a failed one makes the PR a
    # draft already): before the judge, who is shown what they found.
    verified = verification.passed is not False
    if check_outcome is not None and verified:
        current.outcome = await check_outcome()
    if policy.model_judge:
        tests = [p for p in await checkout.changed_files() if tests_in_diffs.is_test_file(p)]
        shown = _outcome_as_findings(current.outcome) + findings
        case = Case(
            request=request,
            diff=diff,
            verification=verification_text(verification),
            findings=shown,
            first_in_diff=[f.path for f in shown] + tests,
        )
        usage = Usage()
        try:
            current.verdict, usage = await ask_judge(
                client, model=policy.model, case=case, diff_chars=policy.diff_chars
            )
        except JudgeUnavailable as exc:
            current.unavailable, usage = exc.reason, exc.usage
            log.warning("the review's judge is unavailable: %s", exc.reason)
        if usage.requests:
            review.usage += usage
            await ctx.store.runs.add_usage(ctx.run.id, usage)
            metrics.count_usage(policy.model, usage.to_dict(), usage.cost_usd(policy.model))
    review.rounds.append(current)
    await ctx.store.runs.add_step(ctx.run.id, "review", current.describe())
    return current


def _verdict(current: Round, *, retried: bool) -> ReviewVerdict:
    if current.outcome_findings:
        return ReviewVerdict.OUTCOME
    if current.objections:
        return ReviewVerdict.VETOED
    if current.not_done is not None:
        return ReviewVerdict.UNAVAILABLE
    return ReviewVerdict.RECOVERED if retried else ReviewVerdict.APPROVED


def _outcome_as_findings(outcome: OutcomeReport | None) -> list[Finding]:
    """The outcome's findings as the judge is shown the checks' (the test's file named)."""
    if outcome is None:
        return []
    return [
        Finding(
            test_file(f.test) if f.test else "(the tests)",
            None,
            "outcome",
            f.message,
            check="outcome",
        )
        for f in outcome.findings
    ]


def _feedback(current: Round) -> str:
    return FEEDBACK.format(reasons="\n".join(f"- {o}" for o in current.objections))
