"""What the review says on GitHub and in Slack: the PR's opening and its Review section (pure)."""

from __future__ import annotations

from app.models import ReviewVerdict, Usage
from app.review.outcome_report import OutcomeReport
from app.runs.review import Review
from app.runs.texts import ReviewText
from app.untrusted import code, inert

MAX_LISTED = 20  # objections listed in full; the rest are counted

_VERDICT_LINES = {
    ReviewVerdict.APPROVED: "**Approved** by the model judge (`{model}`) and Honk's checks of "
    "the diff.",
    ReviewVerdict.RECOVERED: "**Approved after a veto.** The first attempt was vetoed:\n\n"
    "{first}\n\nThe agent was given these reasons once and its second attempt was approved.",
    ReviewVerdict.VETOED: "**Vetoed**; the reasons open this description.",
    ReviewVerdict.OUTCOME: "**Stopped by the tests' outcome**{though}: what Honk's runs of the "
    "tests showed opens this description.",
    ReviewVerdict.UNAVAILABLE: "**Not reviewed by the model**: {unavailable}.",
    ReviewVerdict.SKIPPED: "**Not reviewed**: the checks and the model judge are both off for "
    "this repository (`review:` in `.github/honk.yml`).",
}


def review_text(review: Review) -> ReviewText:
    """The review's parts of the PR body and the `Honk` check run."""
    opening = "\n\n".join(p for p in (preamble(review), left_out(review)) if p)
    return ReviewText(
        section=review_section(review),
        usage=review.usage,
        model=review.policy.model,
        preamble=opening or None,
        title_note={
            ReviewVerdict.VETOED: "review vetoed",
            ReviewVerdict.OUTCOME: "the tests' outcome stopped it",
            ReviewVerdict.UNAVAILABLE: "review could not be done",
        }.get(review.verdict),
        conclusion={
            ReviewVerdict.VETOED: "failure",
            ReviewVerdict.OUTCOME: "failure",
            ReviewVerdict.UNAVAILABLE: "neutral",
        }.get(review.verdict),
    )


def preamble(review: Review, *, draft: bool = True) -> str | None:
    """The opening of the PR body (and check) when the review stopped the change."""
    then = ", so this pull request is a draft" if draft else ""
    if review.verdict == ReviewVerdict.VETOED:
        again = (
            "\n\nThe agent was given these reasons and tried once more; they still hold."
            if review.retried
            else ""
        )
        shown = _listed(review.published[0])
        return f"**Honk's review vetoed this change**{then}:\n\n{shown}{again}"
    if review.verdict == ReviewVerdict.OUTCOME:
        again = (
            "\n\nThe agent was given these reasons and tried once more; they still hold."
            if review.retried
            else ""
        )
        shown = _listed(review.published[0])
        return (
            f"**The tests' outcome stopped this change**{then}. Honk ran the tests before and "
            f"after it:\n\n{shown}{again}"
        )
    if review.verdict == ReviewVerdict.UNAVAILABLE:
        return (
            f"**Honk's review could not be done** ({review.last.not_done}){then}: look at "
            "the change yourself before marking it ready for review."
        )
    return None


def left_out(review: Review) -> str | None:
    """The workflow changes Honk kept out of the commit (GitHub would refuse the push)."""
    if not review.left_out:
        return None
    names = ", ".join(f"`{path}`" for path in review.left_out[:10])
    return (
        f"**Left out of this pull request:** the change to {names}. GitHub does not let Honk "
        "push changes to workflows (it has no `workflows` permission); make them yourself."
    )


def review_section(review: Review) -> str:
    policy = review.policy
    parts = []
    if review.summary:
        parts.append(inert(review.summary))  # the judge is a model: its words go out inert
    judged = review.last.verdict
    line = _VERDICT_LINES[review.verdict].format(
        model=policy.model,
        first=_listed(review.published[1]),
        unavailable=review.last.not_done or "unknown",
        though=", though the model judge approved" if judged and judged.approve else "",
    )
    if (
        review.verdict == ReviewVerdict.VETOED
        and review.last.findings
        and (judged is None or judged.approve)
    ):
        also = ", though the model judge approved" if judged is not None else ""
        line = f"**Vetoed** by Honk's checks of the diff{also}; the reasons open this description."
    elif review.verdict == ReviewVerdict.VETOED:
        checks = " and Honk's checks of the diff" if review.last.findings else ""
        line = f"**Vetoed** by the model judge (`{policy.model}`){checks}; the reasons open this "
        line += "description."
    elif review.verdict == ReviewVerdict.APPROVED and not policy.model_judge:
        line = "**Approved** by Honk's checks of the diff (the model judge is off here)."
    elif review.verdict == ReviewVerdict.APPROVED and not policy.checks:
        line = f"**Approved** by the model judge (`{policy.model}`); Honk's checks are off here."
    parts.append(line)
    if review.beyond_request:
        parts.append("The judge notes that the change goes beyond what was asked.")
    if policy.checks_kept:
        parts.append(
            "`.github/honk.yml` asks to turn the checks off (`review: {checks: off}`), but "
            "this Honk's operator does not allow that (`HONK_REVIEW_CHECKS_OPTIONAL`): they ran."
        )
    if review.outcome is not None:
        parts.append(outcome_text(review.outcome))
    elif not policy.outcome and review.verdict != ReviewVerdict.SKIPPED:
        parts.append("The tests' outcome checks are off for this repository.")
    if policy.outcome_kept:
        parts.append(
            "`.github/honk.yml` asks to turn the outcome checks off (`review: {outcome: off}`), "
            "but this Honk's operator does not allow that (`HONK_REVIEW_OUTCOME_OPTIONAL`): "
            "they ran."
        )
    if review.usage.requests:
        parts.append(f"The review cost {_cost(review.usage, policy.model)}.")
    return "## Review\n\n" + "\n\n".join(parts)


def outcome_text(outcome: OutcomeReport) -> str:
    """The outcome checks in the Review section: what ran, from where, and any fallback."""
    if outcome.error is not None:
        return f"**Test outcome checks:** could not be done ({outcome.error})."
    if outcome.skipped is not None:
        return f"**Test outcome checks:** not run: {outcome.skipped}."
    runs = [run for run in outcome.runs if run.check != "base"]
    commands = ", ".join(dict.fromkeys(code(run.command) for run in runs)) or "none"
    held = "they found nothing" if not outcome.findings else "what they found opens this text"
    if outcome.fixed:
        held += f"; {len(outcome.fixed)} test(s) that failed on the base pass now"
    base = {"cached": "the base's results were cached", "ran": "the base's tests ran now"}.get(
        outcome.base_source, "the base's results were not needed"
    )
    text = (
        f"**Test outcome checks:** Honk ran {commands} (from {outcome.source}) with the base's "
        f"tests over this change and this change's tests over the base: {held}; {base}."
    )
    notes = [*outcome.notes]
    if outcome.by_exit_status:
        notes.insert(
            0, "Some runs gave no report Honk could read: they were judged by exit status."
        )
    return text + "".join(f"\n\n{note}" for note in notes[:5])


def usage_text(usage: Usage, model: str, review: Review | None) -> str:
    """The run's cost in one line, the review's share named (tracking comment, Slack)."""
    if review is None or not review.usage.requests:
        return usage.describe(model)
    agent = usage - review.usage
    return f"{agent.describe(model)}; review: {_cost(review.usage, review.policy.model)}"


def total_cost(usage: Usage, model: str, review: Review | None) -> float:
    """Dollars in all: the agent's share at its model's price, the review's at the judge's."""
    if review is None or not review.usage.requests:
        return usage.cost_usd(model)
    return (usage - review.usage).cost_usd(model) + review.usage.cost_usd(review.policy.model)


def veto_comment(review: Review, diff_stat: str) -> str:
    """`review: {on_veto: comment}`: what is said on the issue instead of opening a PR."""
    opening = preamble(review, draft=False) or ""
    stat = diff_stat.strip()
    shown = f"\n\nThe change that was not opened as a pull request:\n\n```\n{stat[-3000:]}\n```"
    opening = opening.replace(
        "vetoed this change", "vetoed Honk's change, so no pull request was opened"
    ).replace(
        "outcome stopped this change",
        "outcome stopped Honk's change, so no pull request was opened",
    )
    return (
        opening
        + (shown if stat else "")
        + "\n\nComment `/honk retry <what to do differently>` to run it again."
    )


def _listed(lines: list[str]) -> str:
    listed = "\n".join(f"- {line}" for line in lines[:MAX_LISTED])
    more = len(lines) - MAX_LISTED
    return listed + (f"\n- …and {more} more" if more > 0 else "")


def _cost(usage: Usage, model: str) -> str:
    requests = f"{usage.requests} request{'s' if usage.requests != 1 else ''}"
    return f"{usage.describe(model)} ({requests} to `{model}`)"
