"""The store over a SQLite file: webhook inbox, the runs queue and its leases, kv facts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from app.models import RunKind, RunState, SlackThread, Usage
from app.store import NewRun, Store, StoreError
from app.store.engine import head_revision
from app.store.inbox import Finished, body_digest
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
    run = await first.enqueue_run(issue_run(1))
    await first.close()
    again = await Store.open(store_url)
    try:
        assert await again.ping()
        assert (await again.get_run(run.id)).repo == REPO
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


# -- webhook inbox ------------------------------------------------------------------------------


async def test_a_redelivery_is_recognised(store: Store) -> None:
    payload = {"action": "labeled", "issue": {"number": 3}}
    assert await store.record_delivery("d-1", "issues", payload) is True
    assert await store.record_delivery("d-1", "issues", payload) is False
    delivery = await store.claim_delivery("web", 30)
    assert delivery is not None
    assert (delivery.id, delivery.event, delivery.action) == ("d-1", "issues", "labeled")
    assert delivery.payload == payload
    assert delivery.received_at.tzinfo is not None


async def test_a_body_stored_under_another_id_is_a_duplicate(store: Store) -> None:
    """GitHub signs the body only: the same body under a new delivery id is a replay."""
    body = b'{"action": "labeled", "issue": {"number": 3}, "repository": {"full_name": "o/r"}}'
    digest = body_digest(body)
    assert await store.record_delivery("d-1", "issues", body, digest=digest) is True
    assert await store.record_delivery("d-2", "issues", body, digest=digest) is False
    replayed = await store.record_claimed(
        "d-3", "issues", body, parsed=orjson.loads(body), owner="web", lease_seconds=30,
        digest=digest,
    )  # fmt: skip
    assert replayed == (False, None)
    # Two at once, in one group commit: one is stored.
    other = b'{"action": "opened", "issue": {"number": 4}}'
    together = await asyncio.gather(
        store.record_delivery("d-4", "issues", other, digest=body_digest(other)),
        store.record_delivery("d-5", "issues", other, digest=body_digest(other)),
    )
    assert sorted(together) == [False, True]
    # GitHub's own redelivery keeps its id: a failed one is taken again, body and all.
    first = some(await store.claim_delivery("web", 30))
    assert first.id == "d-1"
    await store.finish_delivery("d-1", error="boom")
    assert await store.record_delivery("d-1", "issues", body, digest=digest) is True
    assert (await delivery_row(store, "d-1")).status == "pending"
    # Without a digest (Slack's requests, or stored before migration 0011) nothing collides.
    assert await store.record_delivery("s-1", "slack", {"kind": "command"}) is True
    assert await store.record_delivery("s-2", "slack", {"kind": "command"}) is True
    kept_of_two = "d-4" if together[0] else "d-5"
    ids = {row.id for row in await _all_deliveries(store)}
    assert ids == {"d-1", kept_of_two, "s-1", "s-2"}


async def _all_deliveries(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(deliveries))).all())


async def test_a_delivery_that_starts_nothing_is_stored_done(store: Store) -> None:
    assert await store.record_delivery("star-1", "star", b'{"action": "created"}', done=True)
    assert await store.record_delivery("star-1", "star", b'{"action": "created"}') is False
    row = await delivery_row(store, "star-1")
    assert (row.status, row.lease_owner, row.attempts) == ("done", None, 0)
    assert row.finished_at is not None and row.finished_at == row.received_at
    assert await store.claim_deliveries("web", 30, limit=10) == []
    assert await store.count_deliveries(pending=True) == 0
    assert await store.delivery_body("star-1") == b'{"action": "created"}'
    await asyncio.sleep(0.05)
    assert await store.prune_deliveries(timedelta(seconds=0.02)) == 1  # it ages out as well


async def test_deliveries_are_claimed_oldest_first_and_finished(store: Store) -> None:
    await store.record_delivery("d-1", "issues", {"action": "opened"})
    await store.record_delivery("d-2", "ping", {})
    first = await store.claim_delivery("web-a", 30)
    second = await store.claim_delivery("web-b", 30)
    assert (first.id, first.attempts) == ("d-1", 1)
    assert (second.id, second.action) == ("d-2", None)
    assert await store.claim_delivery("web-c", 30) is None  # both leased
    assert await store.count_deliveries(pending=True) == 2
    await store.finish_delivery("d-1")
    await store.finish_delivery("d-2", error="handler raised")
    assert (await store.count_deliveries(), await store.count_deliveries(pending=True)) == (2, 0)
    assert await store.claim_delivery("web-c", 0.01) is None
    assert (await delivery_row(store, "d-1")).status == "done"
    failed = await delivery_row(store, "d-2")
    assert (failed.status, failed.error) == ("failed", "handler raised")
    with pytest.raises(StoreError):
        await store.finish_delivery("d-unknown")


def about_issue(number: int) -> dict[str, Any]:
    return {"action": "edited", "repository": {"full_name": REPO}, "issue": {"number": number}}


async def ids(claimed: Any) -> list[str]:
    return [delivery.id for delivery in await claimed]


async def test_a_subject_is_handled_in_order_across_processes(store: Store, store_url: str) -> None:
    """Two processes ("a" and "b", each its own Store) never hold one issue's deliveries at
    once, and take them in the order they arrived; unrelated deliveries pass."""
    other = await Store.open(store_url)
    other.delivery_retry_delay = 0.05
    try:
        for delivery_id, number in [("one-1", 1), ("one-2", 1), ("two-1", 2)]:
            await store.record_delivery(delivery_id, "issues", about_issue(number))
        await store.record_delivery("ping-1", "ping", {})  # about nothing in particular
        assert await ids(store.claim_deliveries("a", 30, limit=10)) == ["one-1", "two-1", "ping-1"]
        assert await ids(other.claim_deliveries("b", 30, limit=10)) == []  # a holds issue 1

        # Arriving while "a" holds issue 1: stored unclaimed, at "b" and at "a" alike, for
        # one-2 (pending, nobody's) is older.
        body = orjson.dumps(about_issue(1))
        for owner, at, delivery_id in [("b", other, "one-3"), ("a", store, "one-4")]:
            recorded = await at.record_claimed(
                delivery_id, "issues", body, parsed=about_issue(1), owner=owner, lease_seconds=30
            )
            assert recorded.stored and recorded.claimed is None, delivery_id
        # About another issue, or about one "a" alone holds: stored claimed for its owner.
        fresh = await store.record_claimed(
            "two-2", "issues", body, parsed=about_issue(2), owner="a", lease_seconds=30
        )
        assert fresh.claimed is not None and fresh.claimed.id == "two-2"
        assert (await delivery_row(store, "two-2")).lease_owner == "a"

        await store.finish_deliveries([Finished(d) for d in ("one-1", "two-1", "ping-1")])
        assert await ids(other.claim_deliveries("b", 30, limit=10)) == ["one-2"]
        assert await ids(store.claim_deliveries("a", 30, limit=10)) == []  # b holds one-2

        # A delivery handed back to retry later keeps its place: nothing behind it goes first.
        await other.finish_deliveries([Finished("one-2", "GitHub said 502", retry=True)])
        assert await ids(store.claim_deliveries("a", 30, limit=10)) == []
        await asyncio.sleep(0.1)  # its back-off is over
        assert await ids(store.claim_deliveries("a", 30, limit=10)) == ["one-2"]
        # Behind a delivery "a" holds itself, "a" may take the next (it handles them in order).
        assert await ids(store.claim_deliveries("a", 30, limit=10)) == ["one-3"]
        assert await ids(other.claim_deliveries("b", 30, limit=10)) == []
        await store.finish_deliveries([Finished("one-2"), Finished("one-3")])
        assert await ids(other.claim_deliveries("b", 30, limit=10)) == ["one-4"]
    finally:
        await other.close()


async def test_two_processes_storing_one_subject_at_once_claim_it_once(
    store: Store, store_url: str
) -> None:
    """Two processes store a delivery about the same issue at the same moment, each asking
    to claim its own: one is claimed, the other waits behind it (PostgreSQL: the per-subject
    lock; SQLite: one writer at a time)."""
    other = await Store.open(store_url)
    try:
        for number in range(1, 13):
            body = orjson.dumps(about_issue(number))
            a, b = await asyncio.gather(
                *(
                    at.record_claimed(
                        f"{owner}-{number}",
                        "issues",
                        body,
                        parsed=about_issue(number),
                        owner=owner,
                        lease_seconds=30,
                    )
                    for owner, at in (("a", store), ("b", other))
                )
            )
            assert a.stored and b.stored
            assert (a.claimed is None) != (b.claimed is None), number
    finally:
        await other.close()


async def test_a_delivery_whose_lease_expired_is_claimed_again(store: Store) -> None:
    await store.record_delivery("d-1", "issues", {})
    assert some(await store.claim_delivery("web-a", 0.01)).attempts == 1
    await asyncio.sleep(0.05)
    again = await store.claim_delivery("web-b", 30)
    assert again is not None and again.attempts == 2
    assert (await delivery_row(store, "d-1")).lease_owner == "web-b"


async def test_a_retried_delivery_waits_and_is_given_up_after_five_attempts(store: Store) -> None:
    # Long enough that a loaded machine's next claim still falls inside the back-off.
    store.delivery_retry_delay = 1.0
    await store.record_delivery("d-1", "issues", {})
    await store.claim_delivery("web", 30)
    await store.finish_delivery("d-1", error="GitHub said 502", retry=True)
    assert await store.claim_delivery("web", 30) is None  # backing off
    await asyncio.sleep(1.05)
    assert some(await store.claim_delivery("web", 30)).attempts == 2
    store.delivery_retry_delay = 0
    for attempt in range(3, 6):
        await store.finish_delivery("d-1", error="GitHub said 502", retry=True)
        assert (await delivery_row(store, "d-1")).status == "pending"
        assert some(await store.claim_delivery("web", 30)).attempts == attempt
    await store.finish_delivery("d-1", error="GitHub said 502", retry=True)
    assert await store.claim_delivery("web", 30) is None
    row = await delivery_row(store, "d-1")
    assert (row.status, row.lease_owner) == ("failed", None)
    assert row.error == "gave up after 5 attempts: GitHub said 502"
    assert await store.count_deliveries(pending=True) == 0


# -- runs: enqueue and the one-active-run rule ---------------------------------------------------


async def test_one_active_run_per_issue(store: Store) -> None:
    first = some(await store.enqueue_run(issue_run(1, requested_by="mona", delivery_id="d-9")))
    assert (first.state, first.kind, first.attempts) == (RunState.QUEUED, RunKind.ISSUE, 0)
    assert (first.requested_by, first.delivery_id) == ("mona", "d-9")
    assert first.created_at is not None and first.created_at.tzinfo == UTC
    assert await store.enqueue_run(issue_run(1)) is None
    assert await store.enqueue_run(issue_run(2)) is not None
    assert await store.enqueue_run(issue_run(1, repo="octo/other")) is not None
    await store.claim_run("w", 30)
    assert await store.enqueue_run(issue_run(1)) is None  # running counts too
    await store.finish_run(first.id, RunState.SUCCEEDED)
    assert await store.enqueue_run(issue_run(1)) is not None


async def test_an_issue_with_an_active_retry_gets_no_new_run(store: Store) -> None:
    original = some(await store.enqueue_run(issue_run(5)))
    await store.update_run(original.id, pr_number=40)
    await store.finish_run(original.id, RunState.SUCCEEDED)
    assert await store.enqueue_run(pr_run(RunKind.RETRY, 40)) is not None
    assert await store.enqueue_run(issue_run(5)) is None


async def test_the_partial_unique_index_refuses_a_second_active_issue_run(store: Store) -> None:
    """What keeps concurrent enqueues from two processes honest."""
    await store.enqueue_run(issue_run(1))
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
        results = await asyncio.gather(*(s.enqueue_run(issue_run(8)) for s in [store, other] * 5))
    finally:
        await other.close()
    assert sum(r is not None for r in results) == 1


# -- runs: claiming, serial keys, leases ---------------------------------------------------------


async def test_runs_are_claimed_oldest_first(store: Store) -> None:
    queued = [some(await store.enqueue_run(issue_run(n))) for n in (3, 1, 2)]
    claimed = [some(await store.claim_run(f"w{n}", 30)) for n in range(3)]
    assert [r.id for r in claimed] == [r.id for r in queued]
    assert await store.claim_run("w9", 30) is None
    run = claimed[0]
    assert (run.state, run.attempts, run.lease_owner) == (RunState.RUNNING, 1, "w0")
    assert run.started_at is not None and run.lease_expires_at > run.started_at


async def test_a_retry_waits_behind_the_active_run_of_its_issue(store: Store) -> None:
    original = some(await store.enqueue_run(issue_run(5)))
    await store.claim_run("w1", 30)
    await store.update_run(original.id, pr_number=40, branch="honk/5-fix")
    retry = some(await store.enqueue_run(pr_run(RunKind.RETRY, 40, instructions="use tabs")))
    ci_fix = some(await store.enqueue_run(pr_run(RunKind.CI_FIX, 40, round=1)))
    assert await store.claim_run("w2", 30) is None
    unrelated = some(await store.enqueue_run(issue_run(6)))
    assert some(await store.claim_run("w2", 30)).id == unrelated.id
    await store.finish_run(original.id, RunState.SUCCEEDED)
    next_up = await store.claim_run("w3", 30)
    assert next_up is not None and (next_up.id, next_up.instructions) == (retry.id, "use tabs")
    assert await store.claim_run("w4", 30) is None  # the CI fix waits for the retry
    await store.finish_run(retry.id, RunState.NO_CHANGE)
    last = await store.claim_run("w4", 30)
    assert last is not None and (last.id, last.kind, last.round) == (ci_fix.id, RunKind.CI_FIX, 1)


async def test_runs_on_a_pr_without_an_issue_share_the_pr_queue(store: Store) -> None:
    first = some(await store.enqueue_run(pr_run(RunKind.CI_FIX, 12)))
    second = some(await store.enqueue_run(pr_run(RunKind.CI_FIX, 12)))
    other_pr = some(await store.enqueue_run(pr_run(RunKind.CI_FIX, 13)))
    assert some(await store.claim_run("w1", 30)).id == first.id
    assert some(await store.claim_run("w2", 30)).id == other_pr.id
    assert await store.claim_run("w3", 30) is None
    await store.finish_run(first.id, RunState.FAILED, error="tests still red")
    assert some(await store.claim_run("w3", 30)).id == second.id


async def test_lease_renewal_expiry_and_reclaim(store: Store) -> None:
    run = some(await store.enqueue_run(issue_run(1)))
    first = await store.claim_run("w1", 0.2)
    assert first is not None and first.id == run.id
    assert await store.renew_lease(first.id, "w2", 30) is False
    assert await store.renew_lease(first.id, "w1", 0.2) is True
    assert await store.claim_run("w2", 30) is None  # lease live
    await asyncio.sleep(0.3)
    second = await store.claim_run("w2", 30)
    assert second is not None and second.id == first.id
    assert (second.attempts, second.lease_owner, second.state) == (2, "w2", RunState.RUNNING)
    assert second.started_at == first.started_at
    assert await store.renew_lease(first.id, "w1", 30) is False  # w1 lost it
    await store.release_run(first.id, "w1")  # not w1's to release: no effect
    assert some(await store.get_run(first.id)).lease_owner == "w2"


async def test_a_released_run_is_queued_again(store: Store) -> None:
    run = some(await store.enqueue_run(issue_run(1)))
    await store.claim_run("w1", 30)
    await store.release_run(run.id, "w1")
    released = some(await store.get_run(run.id))
    assert (released.state, released.lease_owner) == (RunState.QUEUED, None)
    again = await store.claim_run("w2", 30)
    assert again is not None and (again.id, again.attempts) == (run.id, 2)


# -- cancelling ----------------------------------------------------------------------------------


async def test_cancel_a_queued_run_and_a_running_one(store: Store) -> None:
    running = some(await store.enqueue_run(issue_run(1)))
    await store.claim_run("w1", 30)
    queued = some(await store.enqueue_run(issue_run(2)))
    cancelled = await store.request_cancel(queued.id)
    assert cancelled.state == RunState.CANCELLED and cancelled.finished_at is not None
    flagged = await store.request_cancel(running.id)
    assert (flagged.state, flagged.cancel_requested) == (RunState.RUNNING, True)
    assert await store.claim_run("w2", 30) is None  # the cancelled run is never claimed
    done = await store.finish_run(running.id, RunState.CANCELLED)
    assert (done.state, done.lease_owner, done.lease_expires_at) == (RunState.CANCELLED, None, None)
    with pytest.raises(StoreError):
        await store.request_cancel(999)


async def test_a_cancel_outlives_the_worker_that_died(store: Store) -> None:
    run = some(await store.enqueue_run(issue_run(1)))
    await store.claim_run("w1", 0.01)
    await store.request_cancel(run.id)
    await asyncio.sleep(0.05)
    assert await store.claim_run("w2", 30) is None
    assert some(await store.get_run(run.id)).state == RunState.CANCELLED


async def test_cancel_runs_of_an_installation(store: Store) -> None:
    running = some(await store.enqueue_run(issue_run(1)))
    await store.claim_run("w1", 30)
    queued = some(await store.enqueue_run(issue_run(2)))
    other_repo = some(await store.enqueue_run(issue_run(3, repo="octo/other")))
    other_installation = some(
        await store.enqueue_run(NewRun(repo="someone/else", installation_id=5, issue_number=1))
    )
    assert await store.cancel_runs(installation_id=INSTALLATION, repos=["octo/other"]) == 1
    assert some(await store.get_run(other_repo.id)).state == RunState.CANCELLED
    assert await store.cancel_runs(installation_id=INSTALLATION) == 2
    assert some(await store.get_run(queued.id)).state == RunState.CANCELLED
    assert some(await store.get_run(running.id)).cancel_requested
    assert some(await store.get_run(other_installation.id)).state == RunState.QUEUED


# -- updates, steps, usage, finding ----------------------------------------------------------------


async def test_update_run_steps_and_finish(store: Store) -> None:
    run = some(await store.enqueue_run(issue_run(4)))
    updated = await store.update_run(
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
        await store.update_run(updated.id, state="succeeded")
    with pytest.raises(StoreError):
        await store.update_run(999, branch="x")
    await store.add_step(updated.id, "checkout")
    await store.add_step(updated.id, "agent", "12 turns")
    with pytest.raises(StoreError):
        await store.add_step(999, "checkout")
    with pytest.raises(StoreError):
        await store.finish_run(updated.id, RunState.QUEUED)
    done = await store.finish_run(updated.id, RunState.FAILED, error="push rejected")
    assert [(s.name, s.detail) for s in done.steps] == [("checkout", ""), ("agent", "12 turns")]
    assert all(s.at.tzinfo == UTC for s in done.steps)
    assert (done.state, done.error, done.finished_at is not None) == (
        RunState.FAILED,
        "push rejected",
        True,
    )


async def test_a_run_queued_without_an_issue_joins_its_queue_once_it_has_one(store: Store) -> None:
    slack = some(await store.enqueue_run(NewRun(repo=REPO, installation_id=INSTALLATION)))
    await store.claim_run("w1", 30)
    await store.update_run(slack.id, issue_number=21)
    assert await store.enqueue_run(issue_run(21)) is None


async def test_usage_adds_up_atomically(store: Store, store_url: str) -> None:
    run = some(await store.enqueue_run(issue_run(1)))
    other = await Store.open(store_url)
    try:
        totals = await asyncio.gather(
            *(s.add_usage(run.id, Usage(10, 2, 3, 4, 1)) for s in [store, other] * 5)
        )
    finally:
        await other.close()
    assert max(totals, key=lambda u: u.requests) == Usage(100, 20, 30, 40, 10)
    assert some(await store.get_run(run.id)).usage == Usage(100, 20, 30, 40, 10)
    with pytest.raises(StoreError):
        await store.add_usage(999, Usage(1))


async def test_find_runs_filters_newest_first(store: Store) -> None:
    a = some(await store.enqueue_run(issue_run(1)))
    b = some(await store.enqueue_run(issue_run(2)))
    c = some(await store.enqueue_run(issue_run(3, repo="octo/other")))
    await store.update_run(b.id, pr_number=50, head_sha="f00d", branch="honk/2")
    await store.finish_run(a.id, RunState.SUCCEEDED)
    ids = [r.id for r in await store.find_runs()]
    assert ids == [c.id, b.id, a.id]
    assert [r.id for r in await store.find_runs(repo=REPO)] == [b.id, a.id]
    assert [r.id for r in await store.find_runs(repo=REPO, issue_number=1)] == [a.id]
    for found in (
        await store.find_runs(pr_number=50),
        await store.find_runs(head_sha="f00d"),
        await store.find_runs(branch="honk/2"),
        await store.find_runs(repo=REPO, states=[RunState.QUEUED]),
    ):
        assert [r.id for r in found] == [b.id]
    assert len(await store.find_runs(installation_id=INSTALLATION, limit=2)) == 2
    assert await store.find_runs(installation_id=1) == []


# -- key-value facts -------------------------------------------------------------------------------


async def test_kv_put_get_delete(store: Store) -> None:
    assert await store.get_kv("installations", "77") is None
    await store.put_kv("installations", "77", {"account": "octo", "repos": ["widgets"]})
    await store.put_kv("installations", "77", {"account": "octo", "repos": []})
    await store.put_kv("slack-threads", "77", "1700000000.000100")
    assert await store.get_kv("installations", "77") == {"account": "octo", "repos": []}
    assert await store.get_kv("slack-threads", "77") == "1700000000.000100"
    await store.delete_kv("installations", "77")
    assert await store.get_kv("installations", "77") is None
    assert await store.get_kv("slack-threads", "77") == "1700000000.000100"


async def test_put_kv_if_absent_has_exactly_one_winner(store: Store, store_url: str) -> None:
    other = await Store.open(store_url)
    try:
        won = await asyncio.gather(
            *(s.put_kv_if_absent("ci-notified", "sha", n) for n, s in enumerate([store, other] * 4))
        )
    finally:
        await other.close()
    assert won.count(True) == 1
    assert await store.get_kv("ci-notified", "sha") == won.index(True)


# -- several processes on one file -----------------------------------------------------------------


@pytest.mark.slow
async def test_two_worker_processes_never_claim_the_same_run(store: Store, store_url: str) -> None:
    queued = [some(await store.enqueue_run(issue_run(n))).id for n in range(40)]
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
            run = await store.get_run(run_id)
            assert (run.lease_owner, run.attempts) == (worker, 1)


async def test_a_failed_delivery_can_be_redelivered(store: Store) -> None:
    """GitHub's Redeliver button reuses the delivery id: only a failed one is taken again."""
    assert await store.record_delivery("redo", "issues", {"action": "labeled"})
    claimed = await store.claim_delivery("w", 30)
    assert claimed is not None
    await store.finish_delivery("redo", error="boom")
    assert await store.record_delivery("redo", "issues", {"action": "labeled", "n": 2})
    again = await store.claim_delivery("w", 30)
    assert again is not None and again.id == "redo" and again.payload["n"] == 2
    assert again.attempts == 1
    await store.finish_delivery("redo")
    assert not await store.record_delivery("redo", "issues", {"action": "labeled"})


async def test_a_delivery_lease_is_renewed_only_by_its_holder(store: Store) -> None:
    assert await store.record_delivery("long", "installation", {"action": "created"})
    assert await store.claim_delivery("holder", 0.2) is not None
    assert await store.renew_delivery("long", "holder", 30)
    assert not await store.renew_delivery("long", "someone-else", 30)
    await asyncio.sleep(0.3)  # past the first lease: only the renewal keeps it
    assert await store.claim_delivery("someone-else", 30) is None
    await store.finish_delivery("long")
    assert not await store.renew_delivery("long", "holder", 30)  # done: nothing to renew


async def test_cancelled_callers_never_leave_a_transaction_half_done(store: Store) -> None:
    """Workers are cancelled mid-claim when they stop: the store must stay writable."""
    asyncio.get_running_loop().set_debug(False)  # debug mode's slowness hides the race
    for number in range(20):
        await store.enqueue_run(issue_run(number))
    for attempt in range(200):
        caller = asyncio.ensure_future(store.claim_run(f"w{attempt}", 30))
        await asyncio.sleep((attempt % 10) * 0.0003)  # cut off at different points
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
    # Every cancelled claim still finished (claimed or not); writes go through at once.
    await asyncio.wait_for(store.enqueue_run(issue_run(999)), timeout=5)
    await asyncio.wait_for(store.close(), timeout=5)


async def test_prune_kv_forgets_only_old_facts_of_one_namespace(store: Store) -> None:
    await store.put_kv("slack_seen", "old", {"at": 1})
    await store.put_kv("other", "old", {"at": 1})
    # Windows wide enough that a loaded machine's pause between two lines changes nothing.
    await asyncio.sleep(1.0)
    await store.put_kv("slack_seen", "new", {"at": 2})
    assert await store.prune_kv("slack_seen", timedelta(seconds=0.5)) == 1
    assert await store.get_kv("slack_seen", "old") is None
    assert await store.get_kv("slack_seen", "new") == {"at": 2}
    assert await store.get_kv("other", "old") == {"at": 1}
