"""Going live from Slack: the card a green Honk PR gets, and the thread's notes after it
(connected, approved, merged, CI on the base branch, deployed: live). Pure functions
returning (fallback, blocks); what the model wrote goes out inert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject

from app.slack.blocks import (
    CI_CONCLUSIONS,
    MAX_FAILED_CHECKS,
    MAX_LINKS,
    RETRY_ACTION,
    Message,
    as_message,
    clip,
    context,
    escape,
    fit_joined,
    fit_lines,
    link,
    pr_link,
    section,
    view_button,
)
from app.untrusted import inert

MERGE_ACTION = "honk_merge"
APPROVE_ACTION = "honk_approve"
CLOSE_ACTION = "honk_close_pr"
CONTINUE_ACTION = "honk_continue"
CONNECT_ACTION = "honk_connect_github"  # a link button: Slack opens Honk's connect page
SUMMARY_LIMIT = 700  # a phone screen of the model's summary
MAX_FILES = 8
PRODUCTION = frozenset({"production", "prod"})


@dataclass(frozen=True)
class ChangedFile:
    path: str
    added: int
    removed: int
    status: str = "modified"


@dataclass(frozen=True)
class CardFacts:
    """What a person needs to decide from a phone whether this change goes live."""

    run_id: int
    sha: str
    pr_number: int
    pr_url: str
    pr_title: str
    base: str
    summary: str = ""  # the model's words, raw: made inert here
    files: tuple[ChangedFile, ...] = ()
    files_total: int = 0
    verification: str = ""  # "Honk ran `pytest -q`: **passed**."
    checks_passed: int = 0
    review: str | None = None  # the review's line (the judge's words: inert here too)
    links: tuple[tuple[str, str | None], ...] = ()  # deployments (previews), artifacts
    cost: str = ""
    run_url: str | None = None
    requested_by: str | None = None
    extra: tuple[str, ...] = field(default=())  # more context lines, escaped mrkdwn


def target(run_id: int, sha: str) -> str:
    """A go-live button's value: the run and the head the card showed (GitHub refuses a
    merge or an approval of a head that has moved since)."""
    return f"{run_id}@{sha}"


def parse_target(value: str) -> tuple[int, str] | None:
    run, _, sha = value.partition("@")
    return (int(run), sha) if run.isdigit() and sha else None


def ready_card(facts: CardFacts) -> Message:
    """One message, made for a phone: what changed, tests and CI, the review, the preview,
    the cost; Merge, Approve, Request changes, Close PR; View run."""
    pr = pr_link(facts.pr_url, facts.pr_number)
    blocks: list[Block] = [
        section(f":white_check_mark: *CI passed* on {pr}: ready to go live", escape(facts.pr_title))
    ]
    if facts.summary.strip():
        # Cut before it is made inert: a cut through an inert code span would undo it.
        said = escape(inert(facts.summary.strip()[:SUMMARY_LIMIT]))
        blocks.append(section("*What changed*", said))
    if facts.files:
        added = sum(f.added for f in facts.files)
        removed = sum(f.removed for f in facts.files)
        total = max(facts.files_total, len(facts.files))
        head = f"*Files* (+{added} -{removed} in {total} file{'s' if total != 1 else ''})"
        lines = [
            f"• `{escape(f.path)}` +{f.added} -{f.removed}"
            + (f" ({escape(f.status)})" if f.status not in ("modified", "changed") else "")
            for f in facts.files[:MAX_FILES]
        ]
        blocks.append(section(fit_lines(head, lines, total)))
    checks = [f":test_tube: {escape(_bold(facts.verification))}"] if facts.verification else []
    plural = "s" if facts.checks_passed != 1 else ""
    checks.append(f":white_check_mark: CI passed ({facts.checks_passed} check{plural})")
    if facts.review:
        checks.append(":mag: " + clip(escape(inert(facts.review)), 600))
    blocks.append(context("\n".join(checks)))
    tried = fit_joined([link(url, name) for name, url in facts.links[:MAX_LINKS]])
    costs = f"Cost: {escape(facts.cost)}" if facts.cost else ""
    footer = " · ".join(part for part in (tried, costs, *facts.extra) if part)
    if footer:
        blocks.append(context(footer))
    blocks.append(ActionsBlock(block_id="golive", elements=_go_live_buttons(facts)))
    links = view_button(facts.run_url)
    if facts.pr_url.startswith(("https://", "http://")):
        links.append(ButtonElement(text="Open PR", action_id="honk_open_pr", url=facts.pr_url))
    if links:
        blocks.append(ActionsBlock(elements=links))
    return as_message(f":white_check_mark: CI passed on {pr}: ready to merge", blocks)


def _go_live_buttons(facts: CardFacts) -> list[ButtonElement]:
    value = target(facts.run_id, facts.sha)
    base = escape(facts.base)
    return [
        ButtonElement(
            text="Merge",
            action_id=MERGE_ACTION,
            value=value,
            style="primary",
            confirm=ConfirmObject(
                title=f"Merge PR #{facts.pr_number}?",
                text=f"Honk merges it into `{base}` as you, with your own GitHub permissions.",
                confirm="Merge",
                deny="Not yet",
            ),
        ),
        ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=value),
        ButtonElement(text="Request changes", action_id=RETRY_ACTION, value=str(facts.run_id)),
        ButtonElement(
            text="Close PR",
            action_id=CLOSE_ACTION,
            value=value,
            style="danger",
            confirm=ConfirmObject(
                title=f"Close PR #{facts.pr_number}?",
                text="It is closed on GitHub, as you; nothing is merged.",
                confirm="Close it",
                deny="Keep it",
            ),
        ),
    ]


def connect_prompt(url: str | None, why: str) -> Message:
    """Only for the person who pressed: connect GitHub first (Honk acts as them after)."""
    blocks: list[Block] = [section(escape(why))]
    if url and url.startswith(("https://", "http://")):
        button = ButtonElement(
            text="Connect GitHub", action_id=CONNECT_ACTION, url=url, style="primary"
        )
        blocks.append(ActionsBlock(elements=[button]))
    return as_message(escape(why), blocks)


def note(mrkdwn: str, fallback: str, *, run_url: str | None = None) -> Message:
    """One line in the thread (`mrkdwn` already escaped), with the run's page when known."""
    blocks: list[Block] = [section(mrkdwn)]
    if buttons := view_button(run_url):
        blocks.append(ActionsBlock(elements=buttons))
    return as_message(fallback, blocks)


def merged(
    *, user_id: str, login: str, method: str, sha: str, base: str, pr_url: str, pr_number: int
) -> Message:
    pr = pr_link(pr_url, pr_number)
    how = {"squash": "squashed", "rebase": "rebased", "merge": "merge commit"}.get(method, method)
    text = (
        f":tada: *Merged* {pr} into `{escape(base)}` by <@{escape(user_id)}> "
        f"(as `{escape(login)}` on GitHub, {how}): `{escape(sha[:7])}`.\n"
        f"Honk follows it to production: CI on `{escape(base)}`, then the deployment."
    )
    return note(text, f":tada: Merged {pr} into {escape(base)} ({escape(sha[:7])})")


def base_ci(
    *,
    conclusion: str,
    base: str,
    sha: str,
    failed_checks: list[tuple[str, str | None]],
    run_url: str | None = None,
) -> Message:
    """CI on the base branch, on the merge commit."""
    emoji, label = CI_CONCLUSIONS.get(conclusion, (":grey_question:", f"CI: {conclusion}"))
    head = f"{emoji} *{escape(label)}* on `{escape(base)}` after the merge (`{escape(sha[:7])}`)"
    if failed_checks:
        lines = [f"• {link(url, name)}" for name, url in failed_checks[:MAX_FAILED_CHECKS]]
        head = fit_lines(head + "\n*Failed checks*", lines, len(failed_checks))
    fallback = f"{emoji} {escape(label)} on {escape(base)} after the merge ({escape(sha[:7])})"
    return note(head, fallback, run_url=run_url)


def deployed(*, environment: str, state: str, url: str | None, production: bool) -> Message:
    """A deployment of the merge commit: live in production, somewhere else, or failed."""
    where = escape(environment)
    shown = link(url, url) if url else ""
    plain = escape(url or "")
    if state == "success" and production:
        text = f":rocket: *Live.* Deployed to {where}: {shown or 'done'}"
        return note(text, f":rocket: Live. Deployed to {where}: {plain or 'done'}")
    if state == "success":
        text = f":white_check_mark: Deployed to {where}: {shown or 'done'}"
        return note(text, f"Deployed to {where}: {plain or 'done'}")
    text = f":x: *Deployment to {where} failed* ({escape(state)})" + (f": {shown}" if shown else "")
    return note(text, f":x: Deployment to {where} failed ({escape(state)}) {plain}".strip())


def stopped_at_limit(
    *,
    reason: str,
    cost: str,
    turns: int,
    run_id: int,
    pr_url: str | None = None,
    pr_number: int | None = None,
    run_url: str | None = None,
) -> Message:
    """A run stopped at its turn, token or time limit: say so, with the cost so far, and
    offer writers to carry on (a follow-up run on the same branch)."""
    head = f":hourglass: *Stopped at its limit*: {escape(reason)}."
    if pr_url:
        head += f"\nThe draft {pr_link(pr_url, pr_number)} holds the change so far."
    else:
        head += "\nNothing was pushed yet."
    blocks: list[Block] = [section(head), context(f"Cost so far: {escape(cost)}")]
    buttons = view_button(run_url)
    buttons.append(
        ButtonElement(
            text=f"Continue with +{turns} turns",
            action_id=CONTINUE_ACTION,
            value=str(run_id),
            style="primary",
        )
    )
    blocks.append(ActionsBlock(elements=buttons))
    return as_message(
        f":hourglass: Stopped at its limit: {escape(reason)} (cost so far: {escape(cost)})", blocks
    )


def _bold(markdown: str) -> str:
    """GitHub's **bold** as Slack's *bold*."""
    return markdown.replace("**", "*")
