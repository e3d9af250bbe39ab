"""The inbox's contract, one test run against each backend: the SQLite lane (a SQLite file),
the portable SQLAlchemy path on a SQLite file, and PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from app.store import Store, StoreError
from app.store.inbox import Finished, body_digest
from app.store.inbox_lane import LaneInbox
from app.store.inbox_portable import PortableInbox
from app.store.tables import deliveries
from tests.store.test_store import REPO, delivery_row, some
from tests.store.test_store_postgres import create_database, drop_database, url_of

Opener = Callable[[], Awaitable[Store]]
BACKENDS = ["lane", "portable-sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLite file, or a fresh PostgreSQL database of this test's own."""
    if backend != "postgres":
        yield f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"
        return
    name = await create_database()
    try:
        yield url_of(name)
    finally:
        await drop_database(name)


@pytest.fixture
def open_store(backend: str, store_url: str) -> Opener:
    """Another process's store on the same database, with the same backend."""

    async def opened() -> Store:
        return await Store.open(store_url, lane=backend == "lane")

    return opened


@pytest.fixture
async def store(open_store: Opener) -> AsyncIterator[Store]:
    opened = await open_store()
    yield opened
    await opened.close()


async def test_each_engine_gets_its_backend(store: Store, backend: str) -> None:
    expected = LaneInbox if backend == "lane" else PortableInbox
    assert type(store.inbox.backend) is expected
    assert await store.inbox.body("unknown") is None
    assert await store.inbox.renew(["unknown"], "w", 30) == 0
    assert await store.inbox.oldest_pending() is None
    await store.inbox.record("d-1", "issues", {"action": "opened"})
    oldest = await store.inbox.oldest_pending()
    assert oldest is not None and oldest == (await delivery_row(store, "d-1")).received_at


async def test_a_redelivery_is_recognised(store: Store) -> None:
    payload = {"action": "labeled", "issue": {"number": 3}}
    assert await store.inbox.record("d-1", "issues", payload) is True
    assert await store.inbox.record("d-1", "issues", payload) is False
    delivery = await store.inbox.claim_one("web", 30)
    assert delivery is not None
    assert (delivery.id, delivery.event, delivery.action) == ("d-1", "issues", "labeled")
    assert delivery.payload == payload
    assert delivery.received_at.tzinfo is not None


async def test_a_body_stored_under_another_id_is_a_duplicate(store: Store) -> None:
    """GitHub signs the body only: the same body under a new delivery id is a replay."""
    body = b'{"action": "labeled", "issue": {"number": 3}, "repository": {"full_name": "o/r"}}'
    digest = body_digest(body)
    assert await store.inbox.record("d-1", "issues", body, digest=digest) is True
    assert await store.inbox.record("d-2", "issues", body, digest=digest) is False
    replayed = await store.inbox.record_claimed(
        "d-3", "issues", body, parsed=orjson.loads(body), owner="web", lease_seconds=30,
        digest=digest,
    )  # fmt: skip
    assert replayed == (False, None)
    # Two at once, in one group commit: one is stored.
    other = b'{"action": "opened", "issue": {"number": 4}}'
    together = await asyncio.gather(
        store.inbox.record("d-4", "issues", other, digest=body_digest(other)),
        store.inbox.record("d-5", "issues", other, digest=body_digest(other)),
    )
    assert sorted(together) == [False, True]
    # GitHub's own redelivery keeps its id: a failed one is taken again, body and all.
    first = some(await store.inbox.claim_one("web", 30))
    assert first.id == "d-1"
    await store.inbox.finish_one("d-1", error="boom")
    assert await store.inbox.record("d-1", "issues", body, digest=digest) is True
    assert (await delivery_row(store, "d-1")).status == "pending"
    # Without a digest (Slack's requests, or stored before migration 0011) nothing collides.
    assert await store.inbox.record("s-1", "slack", {"kind": "command"}) is True
    assert await store.inbox.record("s-2", "slack", {"kind": "command"}) is True
    kept_of_two = "d-4" if together[0] else "d-5"
    ids = {row.id for row in await _all_deliveries(store)}
    assert ids == {"d-1", kept_of_two, "s-1", "s-2"}


async def _all_deliveries(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(deliveries))).all())


async def test_a_delivery_that_starts_nothing_is_stored_done(store: Store) -> None:
    assert await store.inbox.record("star-1", "star", b'{"action": "created"}', done=True)
    assert await store.inbox.record("star-1", "star", b'{"action": "created"}') is False
    row = await delivery_row(store, "star-1")
    assert (row.status, row.lease_owner, row.attempts) == ("done", None, 0)
    assert row.finished_at is not None and row.finished_at == row.received_at
    assert await store.inbox.claim("web", 30, limit=10) == []
    assert await store.inbox.count(pending=True) == 0
    assert await store.inbox.body("star-1") == b'{"action": "created"}'
    await asyncio.sleep(0.05)
    assert await store.inbox.prune(timedelta(seconds=0.02)) == 1  # it ages out as well


async def test_deliveries_are_claimed_oldest_first_and_finished(store: Store) -> None:
    await store.inbox.record("d-1", "issues", {"action": "opened"})
    await store.inbox.record("d-2", "ping", {})
    first = await store.inbox.claim_one("web-a", 30)
    second = await store.inbox.claim_one("web-b", 30)
    assert (first.id, first.attempts) == ("d-1", 1)
    assert (second.id, second.action) == ("d-2", None)
    assert await store.inbox.claim_one("web-c", 30) is None  # both leased
    assert await store.inbox.count(pending=True) == 2
    await store.inbox.finish_one("d-1")
    await store.inbox.finish_one("d-2", error="handler raised")
    assert (await store.inbox.count(), await store.inbox.count(pending=True)) == (2, 0)
    assert await store.inbox.claim_one("web-c", 0.01) is None
    assert (await delivery_row(store, "d-1")).status == "done"
    failed = await delivery_row(store, "d-2")
    assert (failed.status, failed.error) == ("failed", "handler raised")
    with pytest.raises(StoreError):
        await store.inbox.finish_one("d-unknown")


def about_issue(number: int) -> dict[str, Any]:
    return {"action": "edited", "repository": {"full_name": REPO}, "issue": {"number": number}}


async def ids(claimed: Any) -> list[str]:
    return [delivery.id for delivery in await claimed]


async def claimed_once_backed_off(store: Store, owner: str) -> list[str]:
    """What `owner` claims once a delivery's back-off is over (polled, up to 20 s)."""
    deadline = asyncio.get_running_loop().time() + 20
    while not (claimed := await ids(store.inbox.claim(owner, 30, limit=10))):
        assert asyncio.get_running_loop().time() < deadline, "the back-off never ended"
        await asyncio.sleep(0.1)
    return claimed


async def test_a_subject_is_handled_in_order_across_processes(
    store: Store, open_store: Opener
) -> None:
    """Two processes ("a" and "b", each its own Store) never hold one issue's deliveries at
    once, and take them in the order they arrived; unrelated deliveries pass."""
    other = await open_store()
    # Long enough that a loaded machine's next claim still falls inside the back-off.
    other.inbox.retry_delay = 1.0
    try:
        for delivery_id, number in [("one-1", 1), ("one-2", 1), ("two-1", 2)]:
            await store.inbox.record(delivery_id, "issues", about_issue(number))
        await store.inbox.record("ping-1", "ping", {})  # about nothing in particular
        assert await ids(store.inbox.claim("a", 30, limit=10)) == ["one-1", "two-1", "ping-1"]
        assert await ids(other.inbox.claim("b", 30, limit=10)) == []  # a holds issue 1

        # Arriving while "a" holds issue 1: stored unclaimed, at "b" and at "a" alike, for
        # one-2 (pending, nobody's) is older.
        body = orjson.dumps(about_issue(1))
        for owner, at, delivery_id in [("b", other, "one-3"), ("a", store, "one-4")]:
            recorded = await at.inbox.record_claimed(
                delivery_id, "issues", body, parsed=about_issue(1), owner=owner, lease_seconds=30
            )
            assert recorded.stored and recorded.claimed is None, delivery_id
        # About another issue, or about one "a" alone holds: stored claimed for its owner.
        fresh = await store.inbox.record_claimed(
            "two-2", "issues", body, parsed=about_issue(2), owner="a", lease_seconds=30
        )
        assert fresh.claimed is not None and fresh.claimed.id == "two-2"
        assert (await delivery_row(store, "two-2")).lease_owner == "a"

        await store.inbox.finish([Finished(d) for d in ("one-1", "two-1", "ping-1")])
        assert await ids(other.inbox.claim("b", 30, limit=10)) == ["one-2"]
        assert await ids(store.inbox.claim("a", 30, limit=10)) == []  # b holds one-2

        # A delivery handed back to retry later keeps its place: nothing behind it goes first.
        await other.inbox.finish([Finished("one-2", "GitHub said 502", retry=True)])
        assert await ids(store.inbox.claim("a", 30, limit=10)) == []
        assert await claimed_once_backed_off(store, "a") == ["one-2"]
        # Behind a delivery "a" holds itself, "a" may take the next (it handles them in order).
        assert await ids(store.inbox.claim("a", 30, limit=10)) == ["one-3"]
        assert await ids(other.inbox.claim("b", 30, limit=10)) == []
        await store.inbox.finish([Finished("one-2"), Finished("one-3")])
        assert await ids(other.inbox.claim("b", 30, limit=10)) == ["one-4"]
    finally:
        await other.close()


async def test_two_processes_storing_one_subject_at_once_claim_it_once(
    store: Store, open_store: Opener
) -> None:
    """Two processes store a delivery about the same issue at the same moment, each asking
    to claim its own: one is claimed, the other waits behind it (PostgreSQL: the per-subject
    lock; SQLite: one writer at a time)."""
    other = await open_store()
    try:
        for number in range(1, 13):
            body = orjson.dumps(about_issue(number))
            a, b = await asyncio.gather(
                *(
                    at.inbox.record_claimed(
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
    await store.inbox.record("d-1", "issues", {})
    assert some(await store.inbox.claim_one("web-a", 0.01)).attempts == 1
    await asyncio.sleep(0.05)
    again = await store.inbox.claim_one("web-b", 30)
    assert again is not None and again.attempts == 2
    assert (await delivery_row(store, "d-1")).lease_owner == "web-b"


async def test_a_retried_delivery_waits_and_is_given_up_after_five_attempts(store: Store) -> None:
    # Long enough that a loaded machine's next claim still falls inside the back-off.
    store.inbox.retry_delay = 1.0
    await store.inbox.record("d-1", "issues", {})
    await store.inbox.claim_one("web", 30)
    await store.inbox.finish_one("d-1", error="GitHub said 502", retry=True)
    assert await store.inbox.claim_one("web", 30) is None  # backing off
    await asyncio.sleep(1.05)
    assert some(await store.inbox.claim_one("web", 30)).attempts == 2
    store.inbox.retry_delay = 0
    for attempt in range(3, 6):
        await store.inbox.finish_one("d-1", error="GitHub said 502", retry=True)
        assert (await delivery_row(store, "d-1")).status == "pending"
        assert some(await store.inbox.claim_one("web", 30)).attempts == attempt
    await store.inbox.finish_one("d-1", error="GitHub said 502", retry=True)
    assert await store.inbox.claim_one("web", 30) is None
    row = await delivery_row(store, "d-1")
    assert (row.status, row.lease_owner) == ("failed", None)
    assert row.error == "gave up after 5 attempts: GitHub said 502"
    assert await store.inbox.count(pending=True) == 0


async def test_a_failed_delivery_can_be_redelivered(store: Store) -> None:
    """GitHub's Redeliver button reuses the delivery id: only a failed one is taken again."""
    assert await store.inbox.record("redo", "issues", {"action": "labeled"})
    claimed = await store.inbox.claim_one("w", 30)
    assert claimed is not None
    await store.inbox.finish_one("redo", error="boom")
    assert await store.inbox.record("redo", "issues", {"action": "labeled", "n": 2})
    again = await store.inbox.claim_one("w", 30)
    assert again is not None and again.id == "redo" and again.payload["n"] == 2
    assert again.attempts == 1
    await store.inbox.finish_one("redo")
    assert not await store.inbox.record("redo", "issues", {"action": "labeled"})


async def test_a_delivery_lease_is_renewed_only_by_its_holder(store: Store) -> None:
    assert await store.inbox.record("long", "installation", {"action": "created"})
    assert await store.inbox.claim_one("holder", 0.2) is not None
    assert await store.inbox.renew_one("long", "holder", 30)
    assert not await store.inbox.renew_one("long", "someone-else", 30)
    await asyncio.sleep(0.3)  # past the first lease: only the renewal keeps it
    assert await store.inbox.claim_one("someone-else", 30) is None
    await store.inbox.finish_one("long")
    assert not await store.inbox.renew_one("long", "holder", 30)  # done: nothing to renew
