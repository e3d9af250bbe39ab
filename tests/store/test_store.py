"""The store over a SQLite file: webhook inbox, the runs queue and its leases, kv facts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from app.models import RunKind, RunState, SlackThread, Usage
from app.store import NewRun, Store, StoreError
from app.store.engine import head_revision
from app.store.tables import deliveries, runs
from tests.store_child import read_line, running

T = TypeVar("T")
REPO = "octo/widgets"
INSTALLATION = 77


def some(value: T | None) -> T:
    assert value is not None
    return value


def issue_run(number: int, repo: str = REPO, **fields: Any) -> NewRun:
    return NewRun(repo=repo, installation_id=INSTALLATION, issue_number=number, **fields)


def pr_run(kind: RunKind, pr_number: int, **fields: Any) -> NewRun:
    return NewRun(repo=REPO, installation_id=INSTALLATION, kind=kind, pr_number=pr_number, **fields)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'not-yet' / 'honk.db'}"


@pytest.fixture(name="store")
async def store_fixture(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    yield opened
    await opened.close()


async def delivery_row(store: Store, delivery_id: str) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(select(deliveries).where(deliveries.c.id == delivery_id))).one()


async def test_open_creates_the_directory_and_migrating_again_is_harmless(
    store_url: str, tmp_path: Path
) -> None:
    first = await Store.open(store_url)
    assert (tmp_path / "not-yet" / "honk.db").is_file()
    run = await first.runs.enqueue(issue_run(1))
    await first.close()
    again = await Store.open(store_url)
    try:
        assert await again.ping()
        assert (await again.runs.get(run.id)).repo == REPO
        async with again.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert versions == [(head_revision(),)] and head_revision() is not None
            journal = await conn.scalar(text("PRAGMA journal_mode"))
        assert journal == "wal"
    finally:
        await again.close()


async def test_ping_is_false_when_the_database_is_unreachable() -> None:
    store = await Store.open("postgresql+asyncpg://postgres@127.0.0.1:9/none", migrate=False)
    try:
        assert await store.ping() is False
    finally:
        await store.close()


# -- runs: enqueue and the one-active-run rule ---------------------------------------------------


async def test_one_active_run_per_issue(store: Store) -> None:
    first = some(await store.runs.enqueue(issue_run(1, requested_by="mona", delivery_id="d-9")))
    assert (first.state, first.kind, first.attempts) == (RunState.QUEUED, RunKind.ISSUE, 0)
    assert (first.requested_by, first.delivery_id) == ("mona", "d-9")
    assert first.created_at is not None and first.created_at.tzinfo == UTC
    assert await store.runs.enqueue(issue_run(1)) is None
    assert await store.runs.enqueue(issue_run(2)) is not None
    assert await store.runs.enqueue(issue_run(1, repo="octo/other")) is not None
    await store.runs.claim("w", 30)
    assert await store.runs.enqueue(issue_run(1)) is None  # running counts too
    await store.runs.finish(first.id, RunState.SUCCEEDED)
    assert await store.runs.enqueue(issue_run(1)) is not None


async def test_an_issue_with_an_active_retry_gets_no_new_run(store: Store) -> None:
    original = some(await store.runs.enqueue(issue_run(5)))
    await store.runs.update(original.id, pr_number=40)
    await store.runs.finish(original.id, RunState.SUCCEEDED)
    assert await store.runs.enqueue(pr_run(RunKind.RETRY, 40)) is not None
    assert await store.runs.enqueue(issue_run(5)) is None


async def test_the_partial_unique_index_refuses_a_second_active_issue_run(store: Store) -> None:
    """What keeps concurrent enqueues from two processes honest."""
    await store.runs.enqueue(issue_run(1))
    now = datetime.now(UTC)
    row = {
        "repo": REPO,
        "installation_id": INSTALLATION,
        "kind": "issue",
        "serial_key": f"{REPO}#1",
        "created_at": now,
        "updated_at": now,
    }
    async with store.engine.begin() as conn:
        await conn.execute(insert(runs).values(**row, state="succeeded"))  # finished: allowed
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert(runs).values(**row, state="queued"))


async def test_concurrent_enqueues_for_one_issue_queue_one_run(
    store: Store, store_url: str
) -> None:
    other = await Store.open(store_url)
    try:
        results = await asyncio.gather(*(s.runs.enqueue(issue_run(8)) for s in [store, other] * 5))
    finally:
        await other.close()
    assert sum(r is not None for r in results) == 1


# -- runs: claiming, serial keys, leases ---------------------------------------------------------


async def test_runs_are_claimed_oldest_first(store: Store) -> None:
    queued = [some(await store.runs.enqueue(issue_run(n))) for n in (3, 1, 2)]
    claimed = [some(await store.runs.claim(f"w{n}", 30)) for n in range(3)]
    assert [r.id for r in claimed] == [r.id for r in queued]
    assert await store.runs.claim("w9", 30) is None
    run = claimed[0]
    assert (run.state, run.attempts, run.lease_owner) == (RunState.RUNNING, 1, "w0")
    assert run.started_at is not None and run.lease_expires_at > run.started_at


async def test_a_retry_waits_behind_the_active_run_of_its_issue(store: Store) -> None:
    original = some(await store.runs.enqueue(issue_run(5)))
    await store.runs.claim("w1", 30)
    await store.runs.update(original.id, pr_number=40, branch="honk/5-fix")
    retry = some(await store.runs.enqueue(pr_run(RunKind.RETRY, 40, instructions="use tabs")))
    ci_fix = some(await store.runs.enqueue(pr_run(RunKind.CI_FIX, 40, round=1)))
    assert await store.runs.claim("w2", 30) is None
    unrelated = some(await store.runs.enqueue(issue_run(6)))
    assert some(await store.runs.claim("w2", 30)).id == unrelated.id
    await store.runs.finish(original.id, RunState.SUCCEEDED)
    next_up = await store.runs.claim("w3", 30)
    assert next_up is not None and (next_up.id, next_up.instructions) == (retry.id, "use tabs")
    assert await store.runs.claim("w4", 30) is None  # the CI fix waits for the retry
    await store.runs.finish(retry.id, RunState.NO_CHANGE)
    last = await store.runs.claim("w4", 30)
    assert last is not None and (last.id, last.kind, last.round) == (ci_fix.id, RunKind.CI_FIX, 1)


async def test_runs_on_a_pr_without_an_issue_share_the_pr_queue(store: Store) -> None:
    first = some(await store.runs.enqueue(pr_run(RunKind.CI_FIX, 12)))
    second = some(await store.runs.enqueue(pr_run(RunKind.CI_FIX, 12)))
    other_pr = some(await store.runs.enqueue(pr_run(RunKind.CI_FIX, 13)))
    assert some(await store.runs.claim("w1", 30)).id == first.id
    assert some(await store.runs.claim("w2", 30)).id == other_pr.id
    assert await store.runs.claim("w3", 30) is None
    await store.runs.finish(first.id, RunState.FAILED, error="tests still red")
    assert some(await store.runs.claim("w3", 30)).id == second.id


async def test_lease_renewal_expiry_and_reclaim(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    first = await store.runs.claim("w1", 0.2)
    assert first is not None and first.id == run.id
    assert await store.runs.renew_lease(first.id, "w2", 30) is False
    assert await store.runs.renew_lease(first.id, "w1", 0.2) is True
    assert await store.runs.claim("w2", 30) is None  # lease live
    await asyncio.sleep(0.3)
    second = await store.runs.claim("w2", 30)
    assert second is not None and second.id == first.id
    assert (second.attempts, second.lease_owner, second.state) == (2, "w2", RunState.RUNNING)
    assert second.started_at == first.started_at
    assert await store.runs.renew_lease(first.id, "w1", 30) is False  # w1 lost it
    await store.runs.release(first.id, "w1")  # not w1's to release: no effect
    assert some(await store.runs.get(first.id)).lease_owner == "w2"


async def test_a_released_run_is_queued_again(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    await store.runs.claim("w1", 30)
    await store.runs.release(run.id, "w1")
    released = some(await store.runs.get(run.id))
    assert (released.state, released.lease_owner) == (RunState.QUEUED, None)
    again = await store.runs.claim("w2", 30)
    assert again is not None and (again.id, again.attempts) == (run.id, 2)


# -- cancelling ----------------------------------------------------------------------------------


async def test_cancel_a_queued_run_and_a_running_one(store: Store) -> None:
    running = some(await store.runs.enqueue(issue_run(1)))
    await store.runs.claim("w1", 30)
    queued = some(await store.runs.enqueue(issue_run(2)))
    cancelled = await store.runs.request_cancel(queued.id)
    assert cancelled.state == RunState.CANCELLED and cancelled.finished_at is not None
    flagged = await store.runs.request_cancel(running.id)
    assert (flagged.state, flagged.cancel_requested) == (RunState.RUNNING, True)
    assert await store.runs.claim("w2", 30) is None  # the cancelled run is never claimed
    done = await store.runs.finish(running.id, RunState.CANCELLED)
    assert (done.state, done.lease_owner, done.lease_expires_at) == (RunState.CANCELLED, None, None)
    with pytest.raises(StoreError):
        await store.runs.request_cancel(999)


async def test_a_cancel_outlives_the_worker_that_died(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    await store.runs.claim("w1", 0.01)
    await store.runs.request_cancel(run.id)
    await asyncio.sleep(0.05)
    assert await store.runs.claim("w2", 30) is None
    assert some(await store.runs.get(run.id)).state == RunState.CANCELLED


async def test_cancel_runs_of_an_installation(store: Store) -> None:
    running = some(await store.runs.enqueue(issue_run(1)))
    await store.runs.claim("w1", 30)
    queued = some(await store.runs.enqueue(issue_run(2)))
    other_repo = some(await store.runs.enqueue(issue_run(3, repo="octo/other")))
    other_installation = some(
        await store.runs.enqueue(NewRun(repo="someone/else", installation_id=5, issue_number=1))
    )
    assert await store.runs.cancel_all(installation_id=INSTALLATION, repos=["octo/other"]) == 1
    assert some(await store.runs.get(other_repo.id)).state == RunState.CANCELLED
    assert await store.runs.cancel_all(installation_id=INSTALLATION) == 2
    assert some(await store.runs.get(queued.id)).state == RunState.CANCELLED
    assert some(await store.runs.get(running.id)).cancel_requested
    assert some(await store.runs.get(other_installation.id)).state == RunState.QUEUED


# -- updates, steps, usage, finding ----------------------------------------------------------------


async def test_update_run_steps_and_finish(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(4)))
    updated = await store.runs.update(
        run.id,
        branch="honk/4-fix",
        base_branch="main",
        pr_number=41,
        pr_url="https://github.com/octo/widgets/pull/41",
        head_sha="abc123",
        tracking_comment_id=9_000_000_001,
        slack_thread=SlackThread("C1", "1700000000.000100"),
    )
    assert (updated.pr_number, updated.tracking_comment_id) == (41, 9_000_000_001)
    with pytest.raises(StoreError):
        await store.runs.update(updated.id, state="succeeded")
    with pytest.raises(StoreError):
        await store.runs.update(999, branch="x")
    await store.runs.add_step(updated.id, "checkout")
    await store.runs.add_step(updated.id, "agent", "12 turns")
    with pytest.raises(StoreError):
        await store.runs.add_step(999, "checkout")
    with pytest.raises(StoreError):
        await store.runs.finish(updated.id, RunState.QUEUED)
    done = await store.runs.finish(updated.id, RunState.FAILED, error="push rejected")
    assert [(s.name, s.detail) for s in done.steps] == [("checkout", ""), ("agent", "12 turns")]
    assert all(s.at.tzinfo == UTC for s in done.steps)
    assert (done.state, done.error, done.finished_at is not None) == (
        RunState.FAILED,
        "push rejected",
        True,
    )


async def test_a_run_queued_without_an_issue_joins_its_queue_once_it_has_one(store: Store) -> None:
    slack = some(await store.runs.enqueue(NewRun(repo=REPO, installation_id=INSTALLATION)))
    await store.runs.claim("w1", 30)
    await store.runs.update(slack.id, issue_number=21)
    assert await store.runs.enqueue(issue_run(21)) is None


async def test_usage_adds_up_atomically(store: Store, store_url: str) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    other = await Store.open(store_url)
    try:
        totals = await asyncio.gather(
            *(s.runs.add_usage(run.id, Usage(10, 2, 3, 4, 1)) for s in [store, other] * 5)
        )
    finally:
        await other.close()
    assert max(totals, key=lambda u: u.requests) == Usage(100, 20, 30, 40, 10)
    assert some(await store.runs.get(run.id)).usage == Usage(100, 20, 30, 40, 10)
    with pytest.raises(StoreError):
        await store.runs.add_usage(999, Usage(1))


async def test_find_runs_filters_newest_first(store: Store) -> None:
    a = some(await store.runs.enqueue(issue_run(1)))
    b = some(await store.runs.enqueue(issue_run(2)))
    c = some(await store.runs.enqueue(issue_run(3, repo="octo/other")))
    await store.runs.update(b.id, pr_number=50, head_sha="f00d", branch="honk/2")
    await store.runs.finish(a.id, RunState.SUCCEEDED)
    ids = [r.id for r in await store.runs.find()]
    assert ids == [c.id, b.id, a.id]
    assert [r.id for r in await store.runs.find(repo=REPO)] == [b.id, a.id]
    assert [r.id for r in await store.runs.find(repo=REPO, issue_number=1)] == [a.id]
    for found in (
        await store.runs.find(pr_number=50),
        await store.runs.find(head_sha="f00d"),
        await store.runs.find(branch="honk/2"),
        await store.runs.find(repo=REPO, states=[RunState.QUEUED]),
    ):
        assert [r.id for r in found] == [b.id]
    assert len(await store.runs.find(installation_id=INSTALLATION, limit=2)) == 2
    assert await store.runs.find(installation_id=1) == []


# -- key-value facts -------------------------------------------------------------------------------


async def test_kv_put_get_delete(store: Store) -> None:
    assert await store.kv.get("installations", "77") is None
    await store.kv.put("installations", "77", {"account": "octo", "repos": ["widgets"]})
    await store.kv.put("installations", "77", {"account": "octo", "repos": []})
    await store.kv.put("slack-threads", "77", "1700000000.000100")
    assert await store.kv.get("installations", "77") == {"account": "octo", "repos": []}
    assert await store.kv.get("slack-threads", "77") == "1700000000.000100"
    await store.kv.delete("installations", "77")
    assert await store.kv.get("installations", "77") is None
    assert await store.kv.get("slack-threads", "77") == "1700000000.000100"


async def test_put_kv_if_absent_has_exactly_one_winner(store: Store, store_url: str) -> None:
    other = await Store.open(store_url)
    try:
        won = await asyncio.gather(
            *(s.kv.put_if_absent("ci-notified", "sha", n) for n, s in enumerate([store, other] * 4))
        )
    finally:
        await other.close()
    assert won.count(True) == 1
    assert await store.kv.get("ci-notified", "sha") == won.index(True)


# -- several processes on one file -----------------------------------------------------------------


@pytest.mark.slow
async def test_two_worker_processes_never_claim_the_same_run(store: Store, store_url: str) -> None:
    queued = [some(await store.runs.enqueue(issue_run(n))).id for n in range(40)]
    async with (
        running("claim-all", store_url, "proc-a") as a,
        running("claim-all", store_url, "proc-b") as b,
    ):
        assert [await read_line(a), await read_line(b)] == ["ready", "ready"]
        outputs = await asyncio.gather(a.communicate(b"go\n"), b.communicate(b"go\n"))
        assert (a.returncode, b.returncode) == (0, 0)
    claimed = {
        worker: [int(line) for line in out.split()]
        for worker, (out, _) in zip(["proc-a", "proc-b"], outputs, strict=True)
    }
    everything = claimed["proc-a"] + claimed["proc-b"]
    assert sorted(everything) == queued  # each run exactly once
    assert all(claimed.values())  # and the two really took turns
    for worker, ids in claimed.items():
        for run_id in ids:
            run = await store.runs.get(run_id)
            assert (run.lease_owner, run.attempts) == (worker, 1)


async def test_cancelled_callers_never_leave_a_transaction_half_done(store: Store) -> None:
    """Workers are cancelled mid-claim when they stop: the store must stay writable."""
    asyncio.get_running_loop().set_debug(False)  # debug mode's slowness hides the race
    for number in range(20):
        await store.runs.enqueue(issue_run(number))
    for attempt in range(200):
        caller = asyncio.ensure_future(store.runs.claim(f"w{attempt}", 30))
        await asyncio.sleep((attempt % 10) * 0.0003)  # cut off at different points
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
    # Every cancelled claim still finished (claimed or not); writes go through at once.
    await asyncio.wait_for(store.runs.enqueue(issue_run(999)), timeout=5)
    await asyncio.wait_for(store.close(), timeout=5)


async def test_prune_kv_forgets_only_old_facts_of_one_namespace(store: Store) -> None:
    await store.kv.put("slack_seen", "old", {"at": 1})
    await store.kv.put("other", "old", {"at": 1})
    # Windows wide enough that a loaded machine's pause between two lines changes nothing.
    await asyncio.sleep(1.0)
    await store.kv.put("slack_seen", "new", {"at": 2})
    assert await store.kv.prune("slack_seen", timedelta(seconds=0.5)) == 1
    assert await store.kv.get("slack_seen", "old") is None
    assert await store.kv.get("slack_seen", "new") == {"at": 2}
    assert await store.kv.get("other", "old") == {"at": 1}
