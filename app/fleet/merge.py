"""Merge all green: every fleet PR whose CI passed and whose review approved, merged as the
person who asked (their own GitHub token, app/as_person.py), never as the App.

Because each merge is the person's own, GitHub applies what it would on its website: branch
protection, required reviews, their permission. What GitHub refuses is reported in its own
words, one repository at a time; one refusal never stops the others. The merges go at bulk
priority (app/github/pacing.py), so a fleet's merges leave room for everything else; the
repository's own `.github/honk.yml` (`merge:`) and the merge methods it allows are read with
the person's token too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass

import gidgethub

from app.as_person import Refused, github_words, merge_method, merge_pull
from app.fleet_models import Fleet, FleetRepo, FleetRepoState
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.log import describe_error
from app.models import ReviewVerdict, Run
from app.repo_config import ConfigCache, RepoConfigError, load_repo_config
from app.store import Store

log = logging.getLogger(__name__)

GREEN = (FleetRepoState.CI_GREEN, FleetRepoState.APPROVED)  # its PR open, CI passed
REVIEWED = frozenset({ReviewVerdict.APPROVED.value, ReviewVerdict.RECOVERED.value})
CONCURRENCY = 2  # merges at once: each is a real merge on GitHub; a few keep the pace gentle


@dataclass(frozen=True)
class MergeReport:
    """What was merged (owner/name each) and what was not, with why (for people)."""

    merged: list[str]
    not_merged: list[tuple[str, str]]

    def describe(self) -> str:
        """One sentence for the person who asked."""
        merged = len(self.merged)
        said = f"Merged {merged} pull request{'' if merged == 1 else 's'}"
        if not self.not_merged:
            return said + "."
        return f"{said}; {len(self.not_merged)} could not be merged."


async def merge_green(
    store: Store,
    fleet: Fleet,
    person: GitHubClient,
    *,
    by: str,
    repos: Collection[str] | None = None,
    concurrency: int = CONCURRENCY,
    config_cache: ConfigCache | None = None,
) -> MergeReport:
    """Merge, as `by` (whose own client `person` is), every PR of the fleet that is open with
    CI green and whose run's review approved it; each merged repository becomes MERGED.

    `repos`: only these (the repositories the person can see); None for every one. What was
    green but could not be merged comes back with GitHub's (or Honk's) reason, in the fleet's
    order. The caller checks that `by` may steer the fleet; GitHub checks the rest."""
    wanted = {name.lower() for name in repos} if repos is not None else None
    candidates = [
        repo
        for repo in await store.fleets.repos(fleet.id, states=GREEN)
        if wanted is None or repo.repo.lower() in wanted
    ]
    cache = config_cache or ConfigCache()
    gate = asyncio.Semaphore(max(1, concurrency))
    outcomes: dict[str, str | None] = {}  # repo -> None (merged) or why not

    async def one(repo: FleetRepo) -> None:
        async with gate:
            try:
                await _merge_one(store, fleet, repo, person, by=by, cache=cache)
            except Refused as exc:
                outcomes[repo.repo] = str(exc)
            except (gidgethub.HTTPException, OSError, TimeoutError) as exc:
                # GitHub unreachable or answering oddly: this one is not merged, the rest go on.
                outcomes[repo.repo] = f"GitHub could not be asked: {describe_error(exc)}"
            else:
                outcomes[repo.repo] = None

    with writes_at(Priority.BULK):  # tasks started here inherit the priority
        await asyncio.gather(*(one(repo) for repo in candidates))
    merged = [r.repo for r in candidates if outcomes.get(r.repo) is None]
    not_merged = [(r.repo, why) for r in candidates if (why := outcomes.get(r.repo)) is not None]
    log.info(
        "fleet %s: @%s merged %d green PRs, %d not merged",
        fleet.id,
        by,
        len(merged),
        len(not_merged),
    )
    return MergeReport(merged=merged, not_merged=not_merged)


async def _merge_one(
    store: Store,
    fleet: Fleet,
    repo: FleetRepo,
    person: GitHubClient,
    *,
    by: str,
    cache: ConfigCache,
) -> None:
    """Merge one repository's PR as the person, or raise Refused saying why not."""
    run = await store.runs.get(repo.run_id) if repo.run_id is not None else None
    if run is None or repo.pr_number is None:
        raise Refused("Honk has no run with a pull request for it.")
    if run.review not in REVIEWED:
        verdict = run.review or "none"
        raise Refused(f"Its review did not approve the change (the review's verdict: {verdict}).")
    sha = repo.head_sha or run.head_sha
    if not sha:
        raise Refused("Honk does not know which commit CI passed, so it merges nothing blind.")
    try:
        config = await load_repo_config(person, repo.repo, None, cache)
    except RepoConfigError as exc:
        raise Refused(f"Honk cannot read `.github/honk.yml`: {exc}") from None
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None
    try:
        repo_info = await person.getitem(f"/repos/{repo.repo}")
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None
    method = merge_method(repo_info, config.merge)
    # The PR is the fleet repository's (a follow-up run may name it too); as_person merges it.
    target: Run = dataclasses.replace(run, repo=repo.repo, pr_number=repo.pr_number)
    merged_sha = await merge_pull(person, target, sha=sha, method=method)
    await store.fleets.set_repo(fleet.id, repo.repo, FleetRepoState.MERGED, expect=list(GREEN))
    note = f"merged by @{by} ({method}) as {merged_sha[:7]}: the fleet's Merge all green"
    await store.runs.add_step(run.id, "merge", note)
    log.info("fleet %s: %s#%s merged by %s", fleet.id, repo.repo, repo.pr_number, by)
