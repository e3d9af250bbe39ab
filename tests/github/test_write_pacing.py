"""Pacing GitHub writes per installation, on the fake GitHub's clock: priorities, GitHub's
waits shared by every task, the primary budget's reserve, and the settings behind them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import gidgethub
import pytest

from app.config import ConfigError, Settings
from app.github import GitHubApp
from app.github.pacing import PacingLimits, Priority, is_content_creating, writes_at
from app.runs.tracker import Coalesced
from tests.fakes.github import SECONDARY_RATE_LIMIT, FakeGitHub, VirtualClock
from tests.helpers import eventually

REPO = "octo/widgets"
OTHER_REPO = "elsewhere/gadgets"


@pytest.fixture
def clock(fake_github: FakeGitHub) -> VirtualClock:
    """Time moves only when a test says so."""
    clock = VirtualClock(1_700_000_000.0, auto=False)
    fake_github.clock = clock
    return clock


@pytest.fixture
async def app(
    fake_github: FakeGitHub, base_settings: Settings, clock: VirtualClock
) -> AsyncIterator[GitHubApp]:
    fake_github.add_installation(1, "octo")
    fake_github.add_installation(2, "elsewhere")
    fake_github.add_repo(REPO)
    fake_github.add_repo(OTHER_REPO)
    for number in range(1, 4):
        fake_github.add_issue(REPO, number, title=f"Issue {number}", user="alice")
    fake_github.add_issue(OTHER_REPO, 1, title="Elsewhere", user="alice")
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    async with aiohttp.ClientSession() as session:
        yield GitHubApp(settings.github, session, clock=clock, sleep=clock.sleep)


async def settled(clock: VirtualClock, tasks: list[asyncio.Task[Any]]) -> None:
    """Until every task is done or asleep on the clock: all they can do at this time."""

    def still() -> bool:
        return clock.waiting == sum(1 for task in tasks if not task.done())

    await eventually(still, within=20, interval=0.01)
    await asyncio.sleep(0.02)  # and once more, for one that was about to wake
    await eventually(still, within=20, interval=0.01)


def comments_posted(fake: FakeGitHub, repo: str = REPO) -> list[Any]:
    return fake.calls_to("POST", rf"^/repos/{repo}/issues/\d+/comments$")


# --- priorities ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_bulk_writes_leave_room_for_a_person_and_for_runs(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    bulk = await app.installation_client(1, priority=Priority.BULK)
    tasks = [asyncio.create_task(bulk.comment(REPO, 1, f"bulk {n}")) for n in range(60)]
    # Bulk writes go a second apart, and stop at 45 a minute (60 less the 25 % reserved).
    for _ in range(59):
        await settled(clock, tasks)
        clock.advance(1)
    await settled(clock, tasks)
    assert len(comments_posted(fake_github)) == 45
    assert sum(not task.done() for task in tasks) == 15

    started = clock()
    person = await app.installation_client(1)
    with writes_at(Priority.URGENT):
        await asyncio.wait_for(person.comment(REPO, 2, "On it"), timeout=10)
    run = await app.installation_client(1)  # NORMAL: a run's writes
    await asyncio.wait_for(run.comment(REPO, 3, "Working"), timeout=10)
    assert clock() == started  # neither waited for the bulk work's window
    assert [c.json["body"] for c in comments_posted(fake_github)[-2:]] == ["On it", "Working"]
    assert sum(not task.done() for task in tasks) == 15  # the bulk work still waits

    clock.advance(60)  # the first bulk writes leave the window: the rest go on
    for _ in range(30):
        await settled(clock, tasks)
        clock.advance(1)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert fake_github.busiest_window(1, 60) <= 60
    assert fake_github.rate_limited == []


async def test_runs_leave_room_for_a_person(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    run = await app.installation_client(1)
    tasks = [asyncio.create_task(run.comment(REPO, 1, f"run {n}")) for n in range(60)]
    await settled(clock, tasks)
    assert len(comments_posted(fake_github)) == 52  # 60 less half the reserved share
    person = await app.installation_client(1, priority=Priority.URGENT)
    await asyncio.wait_for(person.react(f"/repos/{REPO}/issues/2", "eyes"), timeout=10)
    assert fake_github.reactions_on(REPO, "issue:2") == ["eyes"]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_reads_are_not_paced_with_writes(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    run = await app.installation_client(1)
    tasks = [asyncio.create_task(run.comment(REPO, 1, f"run {n}")) for n in range(55)]
    await settled(clock, tasks)
    assert (await asyncio.wait_for(run.issue(REPO, 1), timeout=10))["title"] == "Issue 1"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_hour_is_paced_too(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    assert app.pacer.limits.per_hour == 450  # by default; a smaller hour is quicker to fill
    github = replace(app.settings, writes_per_hour=40)
    async with aiohttp.ClientSession() as session:
        hourly = GitHubApp(github, session, clock=clock, sleep=clock.sleep)
        run = await hourly.installation_client(1)
        tasks = [asyncio.create_task(run.comment(REPO, 1, f"run {n}")) for n in range(45)]
        for _ in range(10):  # ten minutes, each of which would allow 52
            await settled(clock, tasks)
            clock.advance(60)
        await settled(clock, tasks)
        assert len(comments_posted(fake_github)) == 35  # 40 less half the reserved share
        clock.advance(3600 - 600)  # an hour after the first: the rest go
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert fake_github.busiest_window(1, 3600) == 35
    assert fake_github.rate_limited == []


# --- GitHub's waits ------------------------------------------------------------------------


async def test_retry_after_holds_every_task_of_the_installation(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    fake_github.fail_next(
        "POST",
        rf"^/repos/{REPO}/issues/1/comments$",
        403,
        headers={"Retry-After": "30"},
        body={"message": SECONDARY_RATE_LIMIT},
    )
    told = await app.installation_client(1)
    first = asyncio.create_task(told.comment(REPO, 1, "first"))
    await settled(clock, [first])
    assert len(fake_github.calls_to("POST", r"/issues/1/comments$")) == 1  # the 403

    calls = len(fake_github.calls)
    others = await app.installation_client(1)
    waiting = [
        asyncio.create_task(others.issue(REPO, 2)),  # reads wait too
        asyncio.create_task(others.comment(REPO, 3, "third")),
        asyncio.create_task(
            (await app.installation_client(1, priority=Priority.URGENT)).react(
                f"/repos/{REPO}/issues/2", "eyes"
            )
        ),
    ]
    await settled(clock, [first, *waiting])
    # Another installation is not held.
    elsewhere = await app.installation_client(2)
    assert (await asyncio.wait_for(elsewhere.issue(OTHER_REPO, 1), timeout=10))["number"] == 1
    installation_1 = [c for c in fake_github.calls[calls:] if c.path.startswith(f"/repos/{REPO}")]
    assert installation_1 == []

    clock.advance(29)
    await settled(clock, [first, *waiting])
    assert not any(task.done() for task in [first, *waiting])
    clock.advance(1)
    await asyncio.wait_for(asyncio.gather(first, *waiting), timeout=20)
    assert len(fake_github.repo(REPO)["comments"]) == 2
    assert fake_github.reactions_on(REPO, "issue:2") == ["eyes"]


async def test_a_wait_longer_than_a_client_allows_is_said_at_once(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    """As GitHub's own refusal would be (a delivery is tried again later, a run says why),
    without sending what GitHub would refuse; a client made to wait longer waits it out."""
    fake_github.fail_next(
        "POST",
        rf"^/repos/{REPO}/issues/1/comments$",
        403,
        headers={"Retry-After": "600"},
        body={"message": SECONDARY_RATE_LIMIT},
    )
    bulk = await app.installation_client(1, priority=Priority.BULK, max_wait=3600)
    waits_it_out = asyncio.create_task(bulk.comment(REPO, 1, "bulk"))
    await settled(clock, [waits_it_out])
    calls = len(fake_github.calls)
    for priority in Priority:
        told = await app.installation_client(1, priority=priority)
        with pytest.raises(gidgethub.RateLimitExceeded) as limited:
            await asyncio.wait_for(told.comment(REPO, 2, "On it"), timeout=10)
        assert "more than the 120 s allowed" in str(limited.value)
        assert SECONDARY_RATE_LIMIT[:20] not in str(limited.value)  # the pacer said it
    assert len(fake_github.calls) == calls  # nothing sent that GitHub would refuse
    clock.advance(600)
    await asyncio.wait_for(waits_it_out, timeout=20)
    assert [c["body"] for c in fake_github.repo(REPO)["comments"].values()] == ["bulk"]


async def test_an_exhausted_primary_budget_holds_everyone_until_the_reset(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    gh = await app.installation_client(1)
    await gh.issue(REPO, 1)  # the budget is known from here on
    fake_github.set_primary_used(1, fake_github.primary_limit - 1)
    await gh.issue(REPO, 1)  # the last request of the hour
    reset = fake_github.primary_reset(1)
    calls = len(fake_github.calls)
    # Under 120 s to the reset: a run waits for it rather than being refused.
    clock.advance(reset - clock() - 100)
    task = asyncio.create_task(gh.comment(REPO, 2, "after the reset"))
    await settled(clock, [task])
    assert len(fake_github.calls) == calls
    clock.advance(101)
    await asyncio.wait_for(task, timeout=20)
    assert fake_github.rate_limited == []


# --- the primary budget's reserve ----------------------------------------------------------


async def test_bulk_work_never_spends_the_primary_reserve(
    app: GitHubApp, fake_github: FakeGitHub, clock: VirtualClock
) -> None:
    limit = fake_github.primary_limit
    reserve = int(limit * 0.10)
    fake_github.set_primary_used(1, limit - reserve - 10)  # ten requests above the reserve
    # Made to wait for the reset (an hour away); with the default wait it would be refused.
    bulk = await app.installation_client(1, priority=Priority.BULK, max_wait=4000)
    tasks = [asyncio.create_task(bulk.issue(REPO, 1)) for _ in range(25)]
    await settled(clock, tasks)
    assert len(fake_github.calls_to("GET", rf"^/repos/{REPO}/issues/1$")) == 10
    assert fake_github.primary_remaining(1) == reserve
    assert sum(not task.done() for task in tasks) == 15
    impatient = await app.installation_client(1, priority=Priority.BULK)
    with pytest.raises(gidgethub.RateLimitExceeded, match="bulk work leaves the last"):
        await asyncio.wait_for(impatient.issue(REPO, 1), timeout=10)

    # Ordinary work may spend the reserve: it is kept for it.
    run = await app.installation_client(1)
    await asyncio.wait_for(run.issue(REPO, 2), timeout=10)
    assert fake_github.primary_remaining(1) == reserve - 1

    clock.advance(fake_github.primary_reset(1) - clock() + 1)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert fake_github.primary_remaining(1) == limit - 15  # a new hour
    assert fake_github.rate_limited == []


# --- what counts, the settings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "counts"),
    [
        ("POST", "https://api.github.com/repos/o/r/issues/1/comments", b"{}", True),
        ("PATCH", "/repos/o/r/issues/comments/5", b"{}", True),
        ("PUT", "/repos/o/r/pulls/1/merge", b"{}", True),
        ("DELETE", "/repos/o/r/issues/1/labels/honk", b"", True),
        ("GET", "/repos/o/r/issues/1", b"", False),
        ("POST", "https://api.github.com/graphql", b'{"query": "mutation { x }"}', True),
        ("POST", "https://ghe.example/api/graphql", b'{"query": " query { viewer }"}', False),
    ],
)
def test_what_github_counts_as_content_creating(
    method: str, url: str, body: bytes, counts: bool
) -> None:
    assert is_content_creating(method, url, body) is counts


def test_the_limits_come_from_the_settings_shared_between_processes() -> None:
    settings = Settings.from_env(
        {
            "HONK_GITHUB_WRITES_PER_MINUTE": "60",
            "HONK_GITHUB_WRITES_PER_HOUR": "450",
            "HONK_GITHUB_WRITES_RESERVED": "0.2",
            "HONK_GITHUB_PRIMARY_RESERVE": "0.05",
            "HONK_PROCESSES": "3",
        },
        env_file=None,
    )
    limits = PacingLimits.from_settings(settings.github)
    assert (limits.per_minute, limits.per_hour) == (20, 150)
    assert (limits.reserved, limits.primary_reserve) == (0.2, 0.05)
    assert [limits.ceiling(p, limits.per_minute) for p in Priority] == [20, 18, 16]
    defaults = PacingLimits.from_settings(Settings.from_env({}, env_file=None).github)
    assert (defaults.per_minute, defaults.per_hour) == (60, 450)
    assert [defaults.ceiling(p, 60) for p in Priority] == [60, 52, 45]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HONK_GITHUB_WRITES_PER_MINUTE", "0"),
        ("HONK_GITHUB_WRITES_PER_HOUR", "many"),
        ("HONK_GITHUB_WRITES_RESERVED", "1"),
        ("HONK_GITHUB_PRIMARY_RESERVE", "-0.1"),
        ("HONK_PROCESSES", "0"),
    ],
)
def test_wrong_pacing_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value}, env_file=None)


# --- coalesced edits -------------------------------------------------------------------------


class Writes:
    def __init__(self, state: list[str]) -> None:
        self.state = state
        self.written: list[str] = []
        self.slow = 0.0

    async def __call__(self) -> None:
        body = self.state[-1]
        await asyncio.sleep(self.slow)
        self.written.append(body)


async def test_changes_close_together_are_written_once() -> None:
    state = ["a"]
    write = Writes(state)
    edits = Coalesced(write, quiet=0.1, longest=1.0)
    for body in "bcde":
        state.append(body)
        edits.changed()
    await eventually(lambda: write.written, within=5)
    await asyncio.sleep(0.2)
    assert write.written == ["e"]


async def test_a_steady_stream_of_changes_is_still_written_every_longest() -> None:
    state = ["a"]
    write = Writes(state)
    edits = Coalesced(write, quiet=0.1, longest=0.3)
    for n in range(20):  # a change every 0.05 s for a second: never quiet for 0.1 s
        state.append(str(n))
        edits.changed()
        await asyncio.sleep(0.05)
    assert 2 <= len(write.written) <= 5
    await edits.flush()
    assert write.written[-1] == "19"


async def test_flush_writes_the_latest_after_one_in_flight() -> None:
    state = ["a"]
    write = Writes(state)
    write.slow = 0.2
    edits = Coalesced(write, quiet=0.01, longest=1.0)
    edits.changed()
    await eventually(lambda: edits._task is not None and not edits.pending, within=5)
    state.append("final")  # lands while "a" is being written
    edits.changed()
    await edits.flush()
    assert write.written == ["a", "final"]  # in order: the last word is the last written
    edits.discard()


async def test_discard_drops_a_pending_change() -> None:
    state = ["a"]
    write: Callable[[], Awaitable[None]] = Writes(state)
    edits = Coalesced(write, quiet=0.05, longest=1.0)
    edits.changed()
    edits.discard()
    await asyncio.sleep(0.2)
    assert isinstance(write, Writes) and write.written == []
