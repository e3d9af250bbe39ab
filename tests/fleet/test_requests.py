"""What people ask of a fleet: each request moves its state once, or is refused in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.fleet.requests import (
    CANARY_DONE,
    ROLLBACK_REQUESTED,
    FleetCommand,
    FleetError,
    command,
    start_fleet,
)
from app.fleet_models import FleetOrigin, FleetRepoState, FleetState, FleetTarget, NewFleet
from app.models import RunKind, RunState
from app.store import Store
from app.store.queue import NewRun

NEW = NewFleet(
    installation_id=7,
    requested_by="octocat",
    request="Bump requests",
    selection="acme/*",
    origin=FleetOrigin.CLI,
)
TARGETS = [FleetTarget("acme/one"), FleetTarget("acme/two"), FleetTarget("acme/x", "a fork")]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}")
    yield opened
    await opened.close()


async def test_a_fleet_starts_planned_and_wakes_the_conductor(store: Store) -> None:
    woken: list[bool] = []
    fleet = await start_fleet(store, NEW, TARGETS, wake=lambda: woken.append(True))
    assert fleet.state is FleetState.PLANNED and woken == [True]
    with pytest.raises(FleetError, match="left every repository out"):
        await start_fleet(store, NEW, [FleetTarget("acme/x", "archived")])


async def test_pause_resume_continue_and_their_refusals(store: Store) -> None:
    fleet = await start_fleet(store, NEW, TARGETS)
    with pytest.raises(FleetError, match="only a paused fleet"):
        await command(store, fleet.id, FleetCommand.RESUME, by="octocat")
    said = await command(store, fleet.id, FleetCommand.PAUSE, by="octocat")
    assert "paused" in said
    paused = await store.fleets.get(fleet.id)
    assert paused is not None and paused.state_reason == "paused by @octocat"
    # Paused before its canary ended: resuming goes back to the canary, not past it.
    await command(store, fleet.id, FleetCommand.RESUME, by="hubot")
    assert (await store.fleets.get(fleet.id)).state is FleetState.CANARY  # type: ignore[union-attr]
    await store.fleets.announce(fleet.id, CANARY_DONE)
    await store.fleets.set_state(fleet.id, FleetState.WAITING)
    said = await command(store, fleet.id, FleetCommand.CONTINUE, by="octocat")
    assert said == f"Fleet {fleet.id} continues: 2 repositories to go."
    with pytest.raises(FleetError, match="is running: Continue is for"):
        await command(store, fleet.id, FleetCommand.CONTINUE, by="octocat")
    with pytest.raises(FleetError, match="no fleet 999"):
        await command(store, 999, FleetCommand.STOP, by="octocat")


async def test_stop_cancels_the_fleets_runs_and_ends_it(store: Store) -> None:
    fleet = await start_fleet(store, NEW, TARGETS)
    run = await store.runs.enqueue(
        NewRun(repo="acme/one", installation_id=7, kind=RunKind.FLEET, fleet_id=fleet.id)
    )
    assert run is not None
    said = await command(store, fleet.id, FleetCommand.STOP, by="octocat")
    assert said.endswith("1 of its runs were cancelled.")
    assert (await store.runs.get(run.id)).state is RunState.CANCELLED  # type: ignore[union-attr]
    with pytest.raises(FleetError, match="already ended"):
        await command(store, fleet.id, FleetCommand.STOP, by="octocat")
    with pytest.raises(FleetError, match="stopped fleet"):
        await command(store, fleet.id, FleetCommand.RETRY, by="octocat")


async def test_retry_takes_the_failed_up_again_and_rollback_asks_prs_closed(
    store: Store,
) -> None:
    fleet = await start_fleet(store, NEW, TARGETS)
    with pytest.raises(FleetError, match="no failed repositories"):
        await command(store, fleet.id, FleetCommand.RETRY, by="octocat")
    await store.fleets.set_repo(fleet.id, "acme/one", FleetRepoState.FAILED, reason="setup")
    await store.fleets.set_repo(fleet.id, "acme/two", FleetRepoState.PR_OPEN, pr_number=3)
    await store.fleets.set_state(fleet.id, FleetState.DONE)
    said = await command(store, fleet.id, FleetCommand.RETRY, by="octocat")
    assert said == f"Fleet {fleet.id} retries 1 repositories."
    again = await store.fleets.get(fleet.id)
    assert again is not None and again.state is FleetState.RUNNING
    one = await store.fleets.repo(fleet.id, "acme/one")
    assert one is not None and one.state is FleetRepoState.PLANNED
    said = await command(store, fleet.id, FleetCommand.ROLLBACK, by="octocat")
    assert "its 1 unmerged PRs are being closed" in said
    rolled = await store.fleets.get(fleet.id)
    assert rolled is not None and rolled.state is FleetState.STOPPED
    assert ROLLBACK_REQUESTED in rolled.milestones
