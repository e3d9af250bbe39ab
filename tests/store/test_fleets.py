"""`store.fleets` on SQLite and on the PostgreSQL at 127.0.0.1:5432: a fleet, its
repositories and their transitions, compare-and-set states, leases shared by processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.fleet_models import (
    FleetOrigin,
    FleetRepoState,
    FleetState,
    FleetTarget,
    NewFleet,
)
from app.models import RunKind, SlackThread
from app.store import Store, StoreError
from app.store.queue import NewRun
from tests.store.test_store_postgres import create_database, drop_database, url_of

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"
        return
    name = await create_database()
    try:
        yield url_of(name)
    finally:
        await drop_database(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


def new_fleet(**overrides: object) -> NewFleet:
    values: dict[str, object] = {
        "installation_id": 7,
        "requested_by": "octocat",
        "request": "Bump requests to 2.32",
        "selection": "acme/*",
        "origin": FleetOrigin.SLACK,
        "canary_size": 1,
        "slack_thread": SlackThread("C1", "1.5"),
    }
    return NewFleet(**(values | overrides))  # type: ignore[arg-type]


TARGETS = [
    FleetTarget("acme/one"),
    FleetTarget("acme/two"),
    FleetTarget("acme/old", skipped="archived"),
]


async def test_a_fleet_is_stored_with_its_targets_in_order(store: Store) -> None:
    fleet = await store.fleets.create(new_fleet(), TARGETS)
    assert fleet.state is FleetState.PLANNED
    assert fleet.slack_thread == SlackThread("C1", "1.5")
    repos = await store.fleets.repos(fleet.id)
    assert [(r.repo, r.state, r.reason) for r in repos] == [
        ("acme/one", FleetRepoState.PLANNED, None),
        ("acme/two", FleetRepoState.PLANNED, None),
        ("acme/old", FleetRepoState.SKIPPED, "archived"),
    ]
    counts = await store.fleets.counts(fleet.id)
    assert counts[FleetRepoState.PLANNED] == 2 and counts[FleetRepoState.SKIPPED] == 1
    assert counts[FleetRepoState.MERGED] == 0
    assert await store.fleets.find(states=[FleetState.PLANNED]) == [fleet]
    with pytest.raises(StoreError):
        await store.fleets.create(new_fleet(), [FleetTarget("a/b"), FleetTarget("a/b")])


async def test_states_move_by_compare_and_set_and_each_change_is_newer(store: Store) -> None:
    fleet = await store.fleets.create(new_fleet(), TARGETS)
    canary = await store.fleets.set_state(fleet.id, FleetState.CANARY, expect=[FleetState.PLANNED])
    assert canary is not None and canary.version > fleet.version
    # Someone else already moved it: the second mover learns it lost.
    again = await store.fleets.set_state(fleet.id, FleetState.CANARY, expect=[FleetState.PLANNED])
    assert again is None
    stopped = await store.fleets.set_state(fleet.id, FleetState.STOPPED, "stopped by octocat")
    assert stopped is not None and stopped.finished_at is not None
    assert stopped.state_reason == "stopped by octocat"
    with pytest.raises(StoreError):
        await store.fleets.set_state(999, FleetState.DONE)
    # The reporters' bookkeeping does not make the fleet newer.
    reported = await store.fleets.update(fleet.id, reported_version=stopped.version)
    assert reported.version == stopped.version
    with pytest.raises(StoreError):
        await store.fleets.update(fleet.id, state=FleetState.DONE)


async def test_a_repository_follows_its_run_and_pr_with_transitions(store: Store) -> None:
    fleet = await store.fleets.create(new_fleet(), TARGETS)
    run = await store.runs.enqueue(
        NewRun(repo="acme/one", installation_id=7, kind=RunKind.FLEET, fleet_id=fleet.id)
    )
    assert run is not None and run.fleet_id == fleet.id
    # One active fleet run per repository: a second enqueue is refused.
    twice = NewRun(repo="acme/one", installation_id=7, kind=RunKind.FLEET, fleet_id=fleet.id)
    assert await store.runs.enqueue(twice) is None
    assert [r.id for r in await store.runs.find(fleet_id=fleet.id)] == [run.id]

    queued = await store.fleets.set_repo(
        fleet.id, "acme/one", FleetRepoState.QUEUED, queued=True, run_id=run.id
    )
    assert queued is not None and queued.runs == 1
    await store.fleets.set_repo(
        fleet.id, "acme/one", FleetRepoState.PR_OPEN, pr_number=12, pr_url="https://x/12"
    )
    assert (await store.fleets.of_run(run.id)) is not None
    found = await store.fleets.of_pr("acme/one", 12)
    assert found is not None and found.state is FleetRepoState.PR_OPEN
    # A change that expected another state is refused, and nothing is recorded.
    late = await store.fleets.set_repo(
        fleet.id, "acme/one", FleetRepoState.RUNNING, expect=[FleetRepoState.QUEUED]
    )
    assert late is None
    states = [t.state for t in await store.fleets.transitions(fleet.id) if t.repo == "acme/one"]
    assert states == [FleetRepoState.PLANNED, FleetRepoState.QUEUED, FleetRepoState.PR_OPEN]
    with pytest.raises(StoreError):
        await store.fleets.set_repo(fleet.id, "acme/none", FleetRepoState.QUEUED)
    with pytest.raises(StoreError):
        await store.fleets.set_repo(fleet.id, "acme/one", FleetRepoState.QUEUED, title="x")


async def test_milestones_are_announced_once(store: Store) -> None:
    fleet = await store.fleets.create(new_fleet(), TARGETS)
    assert await store.fleets.announce(fleet.id, "canary") is True
    assert await store.fleets.announce(fleet.id, "canary") is False
    assert (await store.fleets.get(fleet.id)).milestones == ["canary"]  # type: ignore[union-attr]


async def test_two_processes_share_fleets_by_lease(store: Store, store_url: str) -> None:
    first = await store.fleets.create(new_fleet(), TARGETS)
    second = await store.fleets.create(new_fleet(request="Drop Python 3.8"), TARGETS)
    ended = await store.fleets.create(new_fleet(request="old"), TARGETS)
    done = await store.fleets.set_state(ended.id, FleetState.DONE)
    assert done is not None
    await store.fleets.update(ended.id, reported_version=done.version)
    other = await Store.open(store_url)
    try:
        mine = await store.fleets.claim("a", 30, limit=1)
        theirs = await other.fleets.claim("b", 30)
        assert [f.id for f in mine] == [first.id]
        # The ended one, its summaries current, is nobody's work.
        assert [f.id for f in theirs] == [second.id]
        assert [f.id for f in await store.fleets.claim("a", 30)] == [first.id]  # renewed
        await store.fleets.release(first.id, "a")
        assert [f.id for f in await other.fleets.claim("b", 30)] == [first.id, second.id]
    finally:
        await other.close()


async def test_an_ended_fleet_is_claimed_while_its_summaries_are_behind(store: Store) -> None:
    fleet = await store.fleets.create(new_fleet(), TARGETS)
    ended = await store.fleets.set_state(fleet.id, FleetState.STOPPED)
    assert ended is not None
    assert [f.id for f in await store.fleets.claim("a", 30)] == [fleet.id]
    await store.fleets.update(fleet.id, reported_version=ended.version)
    await store.fleets.release(fleet.id, "a")
    assert await store.fleets.claim("a", 30) == []
    counts = await store.fleets.count_by_state()
    assert counts[FleetState.STOPPED] == 1 and counts[FleetState.RUNNING] == 0


async def test_the_gauge_counts_the_repositories_of_fleets_not_ended(store: Store) -> None:
    going = await store.fleets.create(new_fleet(), TARGETS)
    ended = await store.fleets.create(new_fleet(request="old"), TARGETS)
    await store.fleets.set_repo(going.id, "acme/one", FleetRepoState.PR_OPEN, pr_number=4)
    await store.fleets.set_state(ended.id, FleetState.DONE)
    counts = await store.fleets.open_repo_counts()
    assert counts[FleetRepoState.PR_OPEN] == 1
    assert counts[FleetRepoState.PLANNED] == 1 and counts[FleetRepoState.SKIPPED] == 1
    assert counts[FleetRepoState.MERGED] == 0
