"""The fleet conductor over a real store, FakeGitHub and FakeSlack. Runs are worked by the test
itself writing their rows (claim, update, finish), as a worker would: no pipeline runs here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from app import metrics
from app.config import Settings
from app.fleet import summary
from app.fleet.conductor import FleetConductor
from app.fleet.requests import FleetCommand, command, start_fleet
from app.fleet_models import (
    Fleet,
    FleetOrigin,
    FleetRepo,
    FleetRepoState,
    FleetState,
    FleetTarget,
    NewFleet,
)
from app.github.auth import GitHubApp
from app.models import ReviewVerdict, Run, RunKind, RunState, SlackThread, Usage
from app.slack.notify import SlackNotifier
from app.store import Store
from app.store.queue import NewRun
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import CHANNEL_ID, FakeSlack
from tests.store.test_store_postgres import create_database, drop_database, url_of

INSTALLATION = 7
ISSUE_REPO = "acme/fleet"
REPOS = [f"acme/r{i}" for i in range(8)]


@dataclass
class World:
    settings: Settings
    store: Store
    github: GitHubApp
    slack: SlackNotifier
    fake_github: FakeGitHub
    fake_slack: FakeSlack
    woken: list[str] = field(default_factory=list)
    conductors: list[FleetConductor] = field(default_factory=list)

    def conductor(self, store: Store | None = None, **kwargs: object) -> FleetConductor:
        made = FleetConductor(
            self.settings,
            store or self.store,
            self.github,
            self.slack,
            wake_workers=lambda: self.woken.append("workers"),
            report_every=0.0,
            **kwargs,  # type: ignore[arg-type]
        )
        self.conductors.append(made)
        return made


@pytest.fixture
async def world(
    base_settings: Settings, fake_github: FakeGitHub, fake_slack: FakeSlack, tmp_path: Path
) -> AsyncIterator[World]:
    settings = fake_slack.settings(
        base_settings.with_overrides(
            github_api_url=fake_github.url,
            github_url=fake_github.url,
            honk_url="https://honk.example",
            fleet_concurrency=2,
            fleet_max_runs=10,
            fleet_pause_after=2,
            fleet_poll_seconds=0.05,
        )
    )
    fake_github.add_installation(INSTALLATION, "acme")
    fake_github.add_repo(ISSUE_REPO)
    fake_github.add_issue(ISSUE_REPO, 1, title="Bump requests everywhere", labels=["honk-fleet"])
    store = await Store.open(settings.store.database_url)
    async with aiohttp.ClientSession() as session:
        made = World(
            settings,
            store,
            GitHubApp(settings.github, session),
            SlackNotifier(settings.slack, session=session),
            fake_github,
            fake_slack,
        )
        try:
            yield made
        finally:
            for conductor in made.conductors:
                await conductor.stop()
            await store.close()


def new_fleet(**overrides: object) -> NewFleet:
    values: dict[str, object] = {
        "installation_id": INSTALLATION,
        "requested_by": "octocat",
        "request": "Bump requests to 2.32",
        "selection": "acme/*",
        "origin": FleetOrigin.ISSUE,
        "canary_size": 1,
        "issue_repo": ISSUE_REPO,
        "issue_number": 1,
    }
    return NewFleet(**(values | overrides))  # type: ignore[arg-type]


async def slack_thread(world: World) -> SlackThread:
    root = await world.slack.start_thread(channel=None, text="Fleet requested", blocks=[])
    assert root is not None
    return root


async def states(store: Store, fleet_id: int) -> dict[str, FleetRepoState]:
    return {repo.repo: repo.state for repo in await store.fleets.repos(fleet_id)}


async def fleet_of(store: Store, fleet_id: int) -> Fleet:
    fleet = await store.fleets.get(fleet_id)
    assert fleet is not None
    return fleet


async def active_runs(store: Store, fleet_id: int) -> list[Run]:
    return await store.runs.find(fleet_id=fleet_id, states=[RunState.QUEUED, RunState.RUNNING])


async def work(
    store: Store,
    fleet_id: int,
    outcomes: dict[str, tuple[RunState, str | None]],
    *,
    pr_base: int = 100,
    pr_number: int | None = None,
) -> None:
    """What workers would do: claim every queued run, then end those named in `outcomes`
    (SUCCEEDED opens PR pr_base+index; a review verdict after a colon: "vetoed")."""
    while await store.runs.claim("test-worker", 60) is not None:
        pass
    for run in await active_runs(store, fleet_id):
        if run.repo not in outcomes:
            continue
        state, detail = outcomes[run.repo]
        await store.runs.add_usage(run.id, Usage(input_tokens=100_000, output_tokens=10_000))
        if state is RunState.SUCCEEDED:
            number = pr_number or pr_base + REPOS.index(run.repo)
            await store.runs.update(
                run.id,
                pr_number=number,
                pr_url=f"https://github.com/{run.repo}/pull/{number}",
                head_sha="c0ffee",
                review=(detail or ReviewVerdict.APPROVED.value),
            )
            await store.runs.finish(run.id, state)
        else:
            await store.runs.finish(run.id, state, error=detail)


async def ticks(*conductors: FleetConductor, times: int = 1) -> None:
    for _ in range(times):
        for conductor in conductors:
            await conductor.tick()


def thread_texts(world: World, thread: SlackThread) -> list[str]:
    return [m.text for m in world.fake_slack.messages(CHANNEL_ID, thread_ts=thread.ts)]


async def test_canary_continue_fan_out_pause_resume_retry_done(world: World) -> None:
    thread = await slack_thread(world)
    targets = [FleetTarget(repo) for repo in REPOS] + [FleetTarget("acme/old", "archived")]
    fleet = await start_fleet(world.store, new_fleet(slack_thread=thread), targets)
    conductor = world.conductor()

    # The canary: the first repository only, queued once however often the conductor looks.
    await ticks(conductor, times=3)
    assert (await fleet_of(world.store, fleet.id)).state is FleetState.CANARY
    assert [run.repo for run in await active_runs(world.store, fleet.id)] == ["acme/r0"]
    assert world.woken == ["workers"]
    await work(world.store, fleet.id, {"acme/r0": (RunState.SUCCEEDED, None)})
    await ticks(conductor)
    waiting = await fleet_of(world.store, fleet.id)
    assert waiting.state is FleetState.WAITING and "canary" in waiting.milestones
    r0 = await world.store.fleets.repo(fleet.id, "acme/r0")
    assert r0 is not None and r0.state is FleetRepoState.PR_OPEN and r0.pr_number == 100
    assert r0.cost_usd > 0 and r0.head_sha == "c0ffee"
    await ticks(conductor, times=2)
    assert await active_runs(world.store, fleet.id) == []  # nothing more without Continue

    # Continue: two at a time (HONK_FLEET_CONCURRENCY), in the selection's order.
    await command(world.store, fleet.id, FleetCommand.CONTINUE, by="octocat")
    await ticks(conductor, times=2)
    assert sorted(r.repo for r in await active_runs(world.store, fleet.id)) == [
        "acme/r1",
        "acme/r2",
    ]
    # Two failures in a row (HONK_FLEET_PAUSE_AFTER=2): the fleet pauses itself, naming them.
    await work(
        world.store,
        fleet.id,
        {
            "acme/r1": (RunState.FAILED, "Setup failed: npm ci exited 1\nlong log"),
            "acme/r2": (RunState.FAILED, "Verification failed: 3 tests"),
        },
    )
    await ticks(conductor, times=2)
    paused = await fleet_of(world.store, fleet.id)
    assert paused.state is FleetState.PAUSED
    assert paused.state_reason is not None
    assert paused.state_reason.startswith("paused by itself after 2 failures in a row")
    assert "acme/r1 (Setup failed: npm ci exited 1)" in paused.state_reason
    assert "acme/r2 (Verification failed: 3 tests)" in paused.state_reason
    assert await active_runs(world.store, fleet.id) == []

    # Resume: it carries on; a no-change and a veto are ends, not a failure streak of 2.
    await command(world.store, fleet.id, FleetCommand.RESUME, by="octocat")
    await ticks(conductor)
    assert sorted(r.repo for r in await active_runs(world.store, fleet.id)) == [
        "acme/r3",
        "acme/r4",
    ]
    await work(
        world.store,
        fleet.id,
        {"acme/r3": (RunState.SUCCEEDED, None), "acme/r4": (RunState.NO_CHANGE, None)},
    )
    await ticks(conductor)
    await work(
        world.store,
        fleet.id,
        {
            "acme/r5": (RunState.SUCCEEDED, ReviewVerdict.VETOED.value),
            "acme/r6": (RunState.SUCCEEDED, None),
        },
    )
    await ticks(conductor)
    await work(world.store, fleet.id, {"acme/r7": (RunState.SUCCEEDED, None)})
    await ticks(conductor, times=2)
    done = await fleet_of(world.store, fleet.id)
    assert done.state is FleetState.DONE
    assert await states(world.store, fleet.id) == {
        "acme/r0": FleetRepoState.PR_OPEN,
        "acme/r1": FleetRepoState.FAILED,
        "acme/r2": FleetRepoState.FAILED,
        "acme/r3": FleetRepoState.PR_OPEN,
        "acme/r4": FleetRepoState.SKIPPED,
        "acme/r5": FleetRepoState.VETOED,
        "acme/r6": FleetRepoState.PR_OPEN,
        "acme/r7": FleetRepoState.PR_OPEN,
        "acme/old": FleetRepoState.SKIPPED,
    }
    r4 = await world.store.fleets.repo(fleet.id, "acme/r4")
    assert r4 is not None and r4.reason == "nothing to change"

    # Retry the failed ones (and the vetoed): each gets a second run, then the fleet is done.
    await command(world.store, fleet.id, FleetCommand.RETRY, by="octocat")
    await ticks(conductor)
    assert len(await active_runs(world.store, fleet.id)) == 2
    await work(
        world.store,
        fleet.id,
        {repo: (RunState.SUCCEEDED, None) for repo in ("acme/r1", "acme/r2", "acme/r5")},
    )
    await ticks(conductor)
    await work(world.store, fleet.id, {"acme/r5": (RunState.SUCCEEDED, None)})
    await ticks(conductor, times=2)
    final = await fleet_of(world.store, fleet.id)
    assert final.state is FleetState.DONE
    repos = await world.store.fleets.repos(fleet.id)
    assert {r.repo: r.runs for r in repos if r.runs > 1} == {
        "acme/r1": 2,
        "acme/r2": 2,
        "acme/r5": 2,
    }
    assert all(r.state is FleetRepoState.PR_OPEN for r in repos if r.runs > 1)
    assert final.reported_version == final.version

    # One summary comment on the fleet issue, edited in place; never one per repository.
    comments = world.fake_github.calls_to("POST", rf"/repos/{ISSUE_REPO}/issues/1/comments")
    edits = world.fake_github.calls_to("PATCH", rf"/repos/{ISSUE_REPO}/issues/comments/\d+")
    assert len(comments) == 1 and len(edits) >= 5
    assert final.summary_comment_id is not None
    issue = world.fake_github.repo(ISSUE_REPO)["comments"][final.summary_comment_id]["body"]
    assert "### Fleet" in issue and "done" in issue and "`acme/r5`" in issue
    assert "[#100](https://github.com/acme/r0/pull/100)" in issue
    assert "https://honk.example/runs/" in issue

    # One summary message in the thread, edited in place; each milestone said once.
    texts = thread_texts(world, thread)
    summaries = [m for m in world.fake_slack.messages(CHANNEL_ID, thread.ts) if m.edits]
    assert len(summaries) == 1 and summaries[0].ts == final.slack_summary_ts
    assert summaries[0].text.startswith(f"Fleet {fleet.id}: done")
    said = [t for t in texts if t != summaries[0].text]
    assert len(said) == 4, said
    assert said[0].startswith(f"The canary of fleet {fleet.id} is done: 1 of 1 opened a PR")
    assert "paused itself" in said[1] and "acme/r1" in said[1]
    assert "half way" in said[2]
    assert "is done" in said[3]
    assert not any("acme/r3" in text for text in said)  # no repository gets its own message


async def test_a_restart_queues_nothing_twice_and_adopts_a_run_it_lost(
    world: World, base_settings: Settings
) -> None:
    fleet = await start_fleet(world.store, new_fleet(), [FleetTarget(repo) for repo in REPOS[:5]])
    await world.store.fleets.set_state(fleet.id, FleetState.RUNNING)
    world.settings = world.settings.with_overrides(lease_seconds=0.2)
    first = world.conductor(owner="first")
    await ticks(first)
    assert sorted(r.repo for r in await active_runs(world.store, fleet.id)) == [
        "acme/r0",
        "acme/r1",
    ]
    # The first process dies (its lease is left to run out) just after queueing acme/r2's
    # run and before noting it on the fleet.
    lost = await world.store.runs.enqueue(
        NewRun(
            repo="acme/r2",
            installation_id=INSTALLATION,
            kind=RunKind.FLEET,
            fleet_id=fleet.id,
            requested_by="octocat",
        )
    )
    assert lost is not None
    world.conductors.remove(first)  # it died: nobody gives its lease back

    settings = world.settings.with_overrides(fleet_concurrency=3, lease_seconds=0.2)
    second = FleetConductor(
        settings, world.store, world.github, world.slack, owner="second", report_every=0.0
    )
    world.conductors.append(second)
    await ticks(second)
    assert len(await world.store.runs.find(fleet_id=fleet.id)) == 3  # whoever holds it
    await asyncio.sleep(max(settings.store.lease_seconds, 3 * settings.fleet.poll_seconds) + 0.1)
    await ticks(second, times=3)
    assert (await fleet_of(world.store, fleet.id)).lease_owner == "second"
    runs = await world.store.runs.find(fleet_id=fleet.id)
    assert sorted(run.repo for run in runs) == ["acme/r0", "acme/r1", "acme/r2"]
    r2 = await world.store.fleets.repo(fleet.id, "acme/r2")
    assert r2 is not None and r2.run_id == lost.id and r2.state is FleetRepoState.QUEUED
    assert r2.runs == 1
    # It carries on from there: one more run per repository that ends, never a second.
    await work(world.store, fleet.id, {"acme/r0": (RunState.SUCCEEDED, None)})
    await ticks(second, times=2)
    runs = await world.store.runs.find(fleet_id=fleet.id)
    assert sorted(run.repo for run in runs) == ["acme/r0", "acme/r1", "acme/r2", "acme/r3"]


async def test_stop_cancels_what_runs_and_rollback_closes_the_open_prs(world: World) -> None:
    def seed(repo: str) -> None:  # git runs here: off the event loop
        world.fake_github.add_repo(repo)
        world.fake_github.commit_files(repo, {"req.txt": "requests==2.32\n"}, branch="honk/f")
        world.fake_github.add_pull(repo, head="honk/f", title="Bump requests")

    for repo in REPOS[:3]:
        await asyncio.to_thread(seed, repo)
    fleet = await start_fleet(world.store, new_fleet(), [FleetTarget(repo) for repo in REPOS[:4]])
    await world.store.fleets.set_state(fleet.id, FleetState.RUNNING)
    world.settings = world.settings.with_overrides(fleet_concurrency=4)
    conductor = world.conductor()
    await ticks(conductor)
    await work(
        world.store,
        fleet.id,
        {
            "acme/r0": (RunState.SUCCEEDED, None),
            "acme/r1": (RunState.SUCCEEDED, ReviewVerdict.VETOED.value),  # a draft PR
            "acme/r2": (RunState.SUCCEEDED, None),
        },
        pr_number=1,
    )
    await ticks(conductor)
    # r0's PR merged meanwhile (its webhook is yet to come); r3 still runs.
    world.fake_github.repo("acme/r0")["pulls"][1].update(merged=True, state="closed")
    said = await command(world.store, fleet.id, FleetCommand.ROLLBACK, by="octocat")
    assert "rolled back" in said
    await ticks(conductor, times=2)
    # The running one was asked to stop; its cancel ends it as failed ("cancelled").
    r3_run = (await world.store.runs.find(fleet_id=fleet.id, repo="acme/r3"))[0]
    assert r3_run.cancel_requested
    await world.store.runs.finish(r3_run.id, RunState.CANCELLED, error="cancelled")
    await ticks(conductor, times=2)
    assert await states(world.store, fleet.id) == {
        "acme/r0": FleetRepoState.MERGED,
        "acme/r1": FleetRepoState.CLOSED,
        "acme/r2": FleetRepoState.CLOSED,
        "acme/r3": FleetRepoState.FAILED,
    }
    for repo in ("acme/r1", "acme/r2"):
        assert world.fake_github.repo(repo)["pulls"][1]["state"] == "closed"
    closes = world.fake_github.calls_to("PATCH", r"/repos/acme/r\d/pulls/1")
    assert len(closes) == 3  # each tried once: r0's was merged, and stays so
    stopped = await fleet_of(world.store, fleet.id)
    assert stopped.state is FleetState.STOPPED and "rolled-back" in stopped.milestones
    assert stopped.reported_version == stopped.version and stopped.lease_owner is None
    await ticks(conductor, times=2)  # nothing more to do: no more calls
    assert len(world.fake_github.calls_to("PATCH", r"/repos/acme/r\d/pulls/1")) == 3


async def test_summaries_are_edited_at_most_once_per_interval(world: World) -> None:
    now = [1000.0]
    fleet = await start_fleet(
        world.store, new_fleet(slack_thread=await slack_thread(world)), [FleetTarget("acme/r0")]
    )
    conductor = FleetConductor(
        world.settings,
        world.store,
        world.github,
        world.slack,
        report_every=30.0,
        clock=lambda: now[0],
    )
    world.conductors.append(conductor)
    await conductor.tick()  # canary queued, summaries made
    edits = world.fake_github.calls_to("PATCH", r"/issues/comments/\d+")
    assert len(world.fake_github.calls_to("POST", r"/issues/1/comments")) == 1 and not edits
    await work(world.store, fleet.id, {"acme/r0": (RunState.SUCCEEDED, None)})
    due = await conductor.tick()
    assert 0 < due <= 0.05  # the poll interval is sooner than the next edit
    assert not world.fake_github.calls_to("PATCH", r"/issues/comments/\d+")
    behind = await fleet_of(world.store, fleet.id)
    assert behind.reported_version < behind.version
    now[0] += 31
    await conductor.tick()
    assert len(world.fake_github.calls_to("PATCH", r"/issues/comments/\d+")) == 1
    assert (await fleet_of(world.store, fleet.id)).state is FleetState.DONE


async def test_the_installation_cap_leaves_workers_for_ordinary_runs(world: World) -> None:
    world.settings = world.settings.with_overrides(fleet_max_runs=None, fleet_concurrency=4)
    fleet = await start_fleet(world.store, new_fleet(), [FleetTarget(r) for r in REPOS])
    await world.store.fleets.set_state(fleet.id, FleetState.RUNNING)
    conductor = world.conductor(workers=6)  # unset: half of the workers
    await ticks(conductor, times=2)
    assert len(await active_runs(world.store, fleet.id)) == 3
    # An ordinary run does not count against it; another fleet's runs do.
    other = await start_fleet(world.store, new_fleet(), [FleetTarget(r) for r in REPOS])
    await world.store.fleets.set_state(other.id, FleetState.RUNNING)
    await ticks(conductor)
    assert await active_runs(world.store, other.id) == []


async def test_the_gauges_read_the_store(world: World) -> None:
    fleet = await start_fleet(world.store, new_fleet(), [FleetTarget(r) for r in REPOS[:3]])
    await world.conductor().tick()
    assert metrics.fleets.labels("canary")._value.get() == 1
    assert metrics.fleet_repos.labels("queued")._value.get() == 1
    assert metrics.fleet_repos.labels("planned")._value.get() == 2
    assert fleet.id


# -- two processes on one PostgreSQL --------------------------------------------------------


@pytest.mark.postgres
async def test_two_conductors_share_fleets_without_queueing_twice(world: World) -> None:
    name = await create_database()
    stores = [await Store.open(url_of(name)) for _ in range(2)]
    try:
        fleets = [
            await start_fleet(
                stores[0], new_fleet(request=f"change {n}"), [FleetTarget(r) for r in REPOS[:4]]
            )
            for n in range(2)
        ]
        for fleet in fleets:
            await stores[0].fleets.set_state(fleet.id, FleetState.RUNNING)
        # One fleet per pass each: both work, each on its own fleet.
        one = world.conductor(stores[0], owner="one", fleets_per_pass=1)
        two = world.conductor(stores[1], owner="two", fleets_per_pass=1)
        owners: dict[int, set[str | None]] = {fleet.id: set() for fleet in fleets}
        for round in range(30):
            await asyncio.gather(one.tick(), two.tick())
            if round == 1:
                await one.stop()  # its process ends: its fleet's lease goes back, two takes it
                one = world.conductor(stores[0], owner="one-later", fleets_per_pass=0)
            ended = [await fleet_of(stores[0], f.id) for f in fleets]
            for fleet in ended:
                owners[fleet.id].add(fleet.lease_owner)
                in_flight = await active_runs(stores[0], fleet.id)
                assert len(in_flight) <= 2  # the fleet's cap holds across processes
            if all(f.state is FleetState.DONE for f in ended):
                break
            for fleet in fleets:
                await work(stores[1], fleet.id, {r: (RunState.SUCCEEDED, None) for r in REPOS})
        assert all(f.state is FleetState.DONE for f in ended)
        assert set().union(*owners.values()) >= {"one", "two"}
        for fleet in fleets:
            runs = await stores[0].runs.find(fleet_id=fleet.id, limit=100)
            assert sorted(run.repo for run in runs) == REPOS[:4]  # one run each
            assert all(r.runs == 1 for r in await stores[0].fleets.repos(fleet.id))
    finally:
        for conductor in (one, two):
            await conductor.stop()
        for store in stores:
            await store.close()
        await drop_database(name)


def test_summary_tables_are_bounded_for_big_fleets(base_settings: Settings) -> None:
    fleet = Fleet(
        id=3,
        installation_id=1,
        requested_by="octocat",
        request="x",
        selection="acme/*",
        origin=FleetOrigin.CLI,
        canary_size=1,
        state=FleetState.RUNNING,
    )
    repos = [
        FleetRepo(3, f"acme/r{i}", i, FleetRepoState.FAILED, reason="a | b\n@team <b>x</b>")
        for i in range(500)
    ]
    web = base_settings.with_overrides(honk_url="https://honk.example").web
    body = summary.issue_summary(fleet, repos, web)
    assert body.count("\n| `acme/r") == summary.ISSUE_ROWS
    assert "…and 400 more on [the fleet's page](https://honk.example/fleets/3)." in body
    assert "`a \\| b @team <b>x</b>`" in body  # a run's words as code: nothing renders
    text, blocks = summary.slack_summary(fleet, repos, web)
    assert text == "Fleet 3: running, 500 failed"
    actions = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert actions == ["fleet_view", "fleet_pause", "fleet_stop", "fleet_retry"]
    assert all(len(str(b)) < 4000 for b in blocks)
