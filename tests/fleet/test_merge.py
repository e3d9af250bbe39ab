"""Merge all green against the fake GitHub: as the person, with the repository's merge method
and `merge:` setting, and each refusal in GitHub's (or Honk's) words, the others merged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from app.fleet.merge import MergeReport, merge_green
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetTarget, NewFleet
from app.github.client import GitHubClient
from app.models import RunKind
from app.store import NewRun, Store
from tests.fakes.github import FakeGitHub

INSTALLATION = 77
SQUASHED = "acme/squashed"  # no `merge:`; squash allowed: squashed
REBASE_ONLY = "acme/rebase-only"  # `merge: rebase` asked for, rebase not allowed: refused
MOVED = "acme/moved"  # its branch moved after CI passed: GitHub's 409
RED = "acme/red"  # CI red: not a candidate, never asked of GitHub


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def as_person(session: aiohttp.ClientSession, fake_github: FakeGitHub, login: str) -> GitHubClient:
    return GitHubClient(
        session, base_url=fake_github.url, oauth_token=fake_github.user_token_for(login)
    )


async def fleet_with_prs(store: Store, fake_github: FakeGitHub) -> tuple[Fleet, dict[str, int]]:
    """A fleet of four public repositories, each with a PR from a fleet run; octocat writes
    to every one. The PR number of each."""
    names = [SQUASHED, REBASE_ONLY, MOVED, RED]
    fake_github.add_installation(INSTALLATION, account="acme", repos=names)
    fleet = await store.fleets.create(
        NewFleet(INSTALLATION, "octocat", "Bump requests", "acme/*", FleetOrigin.CLI),
        [FleetTarget(name) for name in names],
    )
    numbers = {}
    for name in names:
        files = {"README.md": "hi\n"}
        if name == REBASE_ONLY:
            files[".github/honk.yml"] = "merge: rebase\n"
        await asyncio.to_thread(fake_github.add_repo, name, files=files)
        fake_github.set_permission(name, "octocat", "write")
        sha = await asyncio.to_thread(
            fake_github.commit_files, name, {"deps.txt": "requests==3\n"}, branch="honk/bump"
        )
        pr = await asyncio.to_thread(fake_github.add_pull, name, head="honk/bump")
        run = await store.runs.enqueue(
            NewRun(repo=name, installation_id=INSTALLATION, kind=RunKind.FLEET, fleet_id=fleet.id)
        )
        assert run is not None
        await store.runs.update(run.id, review="recovered", pr_number=pr["number"], head_sha=sha)
        state = FleetRepoState.CI_RED if name == RED else FleetRepoState.CI_GREEN
        await store.fleets.set_repo(
            fleet.id, name, state, run_id=run.id, pr_number=pr["number"], head_sha=sha
        )
        numbers[name] = pr["number"]
    fake_github.allow_merge_methods(REBASE_ONLY, rebase=False)
    await asyncio.to_thread(
        fake_github.commit_files, MOVED, {"late.txt": "pushed after CI\n"}, branch="honk/bump"
    )
    return fleet, numbers


async def test_green_prs_merge_as_the_person_and_refusals_come_back_in_words(
    store: Store, session: aiohttp.ClientSession, fake_github: FakeGitHub
) -> None:
    fleet, numbers = await fleet_with_prs(store, fake_github)
    report = await merge_green(
        store, fleet, as_person(session, fake_github, "octocat"), by="octocat"
    )
    assert isinstance(report, MergeReport)
    assert report.merged == [SQUASHED]
    reasons = dict(report.not_merged)
    assert list(reasons) == [REBASE_ONLY, MOVED]  # the fleet's order; RED was never a candidate
    assert "asks for `merge: rebase`" in reasons[REBASE_ONLY]
    assert reasons[MOVED] == "Head branch was modified. Review and try the merge again."
    assert report.describe() == "Merged 1 pull request; 2 could not be merged."

    squashed = fake_github.repo(SQUASHED)["pulls"][numbers[SQUASHED]]
    assert squashed["merged"] and squashed["merged_by"]["login"] == "octocat"
    merges = fake_github.calls_to("PUT", r"/merge$")
    assert [c.json["merge_method"] for c in merges] == ["squash", "squash"]  # SQUASHED, MOVED
    states = {r.repo: r.state for r in await store.fleets.repos(fleet.id)}
    assert states[SQUASHED] == FleetRepoState.MERGED
    assert states[MOVED] == states[REBASE_ONLY] == FleetRepoState.CI_GREEN
    assert states[RED] == FleetRepoState.CI_RED
    changes = [t for t in await store.fleets.transitions(fleet.id) if t.repo == SQUASHED]
    assert changes[-1].state == FleetRepoState.MERGED


async def test_a_person_without_push_access_is_refused_by_github_and_nothing_moves(
    store: Store, session: aiohttp.ClientSession, fake_github: FakeGitHub
) -> None:
    fleet, _numbers = await fleet_with_prs(store, fake_github)
    fake_github.add_user("hubot")
    report = await merge_green(
        store, fleet, as_person(session, fake_github, "hubot"), by="hubot", repos=[SQUASHED]
    )
    assert report.merged == [] and [name for name, _ in report.not_merged] == [SQUASHED]
    assert "push access" in report.not_merged[0][1].lower()
    repo = await store.fleets.repo(fleet.id, SQUASHED)
    assert repo is not None and repo.state == FleetRepoState.CI_GREEN
