"""Whether a green Honk PR is ready to go live, and the card's facts when it is."""

from __future__ import annotations

from app.ci import records
from app.ci.verdict import Verdict
from app.config import Settings
from app.github.client import GitHubClient
from app.models import ReviewVerdict, Run
from app.slack.blocks import Message, escape
from app.slack.card import CardFacts, ChangedFile, ready_card
from app.store import Store

# The review's verdicts under which a change may go live.
READY_REVIEWS = frozenset({ReviewVerdict.APPROVED, ReviewVerdict.RECOVERED})


async def ready_to_go_live(
    gh: GitHubClient,
    store: Store,
    settings: Settings,
    run: Run,
    verdict: Verdict,
    links: list[tuple[str, str | None]],
    *,
    note: str | None = None,
) -> Message | None:
    """The card, when CI passed on the PR's current head, the judge approved, and the PR is
    open and not a draft (GitHub would not merge one); else None (the plain CI message)."""
    if verdict.failed or run.pr_number is None or run.review not in READY_REVIEWS:
        return None
    pr = await gh.pull(run.repo, run.pr_number)
    if pr.get("state") != "open" or pr.get("draft") or pr["head"]["sha"] != verdict.sha:
        return None
    newest = await store.runs.newest(repo=run.repo, pr_number=run.pr_number)
    if (
        newest is not None
        and newest.id != run.id
        and newest.state.active
        and not newest.cancel_requested
    ):
        return None  # a retry is on its way: its commit gets the card
    files = await gh.pull_files(run.repo, run.pr_number)
    published = await records.published(store, run.repo, verdict.sha)
    return ready_card(
        CardFacts(
            run_id=run.id,
            sha=verdict.sha,
            pr_number=run.pr_number,
            pr_url=str(pr.get("html_url") or run.pr_url or ""),
            pr_title=str(pr.get("title") or ""),
            base=str((pr.get("base") or {}).get("ref") or ""),
            summary=published.summary if published is not None else "",
            files=tuple(
                ChangedFile(
                    str(f.get("filename") or "?"),
                    int(f.get("additions") or 0),
                    int(f.get("deletions") or 0),
                    str(f.get("status") or "modified"),
                )
                for f in files
            ),
            files_total=int(pr.get("changed_files") or len(files)),
            verification=published.verification if published is not None else "",
            checks_passed=len(verdict.checks),
            review=published.review if published is not None else None,
            links=tuple(links),
            cost=await _cost(store, settings, run, published),
            run_url=settings.web.run_url(run.id),
            extra=tuple(
                part
                for part in (
                    f"Asked for by `{escape(run.requested_by)}`" if run.requested_by else "",
                    f":wrench: {escape(note)}" if note else "",
                )
                if part
            ),
        )
    )


async def _cost(
    store: Store, settings: Settings, run: Run, published: records.Published | None
) -> str:
    """This run's cost, and the PR's in all when other runs worked on it too."""
    assert run.pr_number is not None
    mine = published.cost if published is not None else run.usage.cost_usd(settings.agent.model)
    others = [
        r
        for r in await store.runs.find(repo=run.repo, pr_number=run.pr_number, limit=50)
        if r.id != run.id
    ]
    if not others:
        return f"${mine:.2f}"
    total = mine
    for other in others:
        theirs = await records.published(store, other.repo, other.head_sha or "")
        same = theirs is not None and theirs.run == other.id
        total += theirs.cost if same and theirs else other.usage.cost_usd(settings.agent.model)
    return f"${total:.2f} for {len(others) + 1} runs (this one ${mine:.2f})"
