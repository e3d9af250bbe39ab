"""The same queue semantics on the real PostgreSQL at 127.0.0.1:5432, in a database of our own."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import insert, select, text

from app.models import RunState
from app.store import Store
from app.store.engine import head_revision
from app.store.tables import runs

# The run events' tests too: stored, bounded, redacted, read by another process.
from tests.runs.test_run_events import (  # noqa: F401
    test_a_long_transcript_is_bounded_with_a_note_of_what_was_cut,
    test_a_run_claimed_again_carries_on_numbering_and_its_bound,
    test_concurrent_writers_never_share_a_number,
    test_events_are_numbered_per_run_and_read_after_a_cursor,
    test_events_survive_a_restart_and_another_process_reads_them,
    test_secrets_never_reach_the_store,
    test_the_migrated_schema_is_the_tables_schema,
)

# Every queue test of the SQLite suite runs again here, with `store_url` pointing at PostgreSQL
# (the inbox's run in tests/store/test_inbox_contract.py, against every backend).
from tests.store.test_store import (  # noqa: F401
    INSTALLATION,
    REPO,
    issue_run,
    some,
    store_fixture,
    test_a_cancel_outlives_the_worker_that_died,
    test_a_released_run_is_queued_again,
    test_a_retry_waits_behind_the_active_run_of_its_issue,
    test_a_run_queued_without_an_issue_joins_its_queue_once_it_has_one,
    test_an_issue_with_an_active_retry_gets_no_new_run,
    test_cancel_a_queued_run_and_a_running_one,
    test_cancel_runs_of_an_installation,
    test_concurrent_enqueues_for_one_issue_queue_one_run,
    test_find_runs_filters_newest_first,
    test_kv_put_get_delete,
    test_lease_renewal_expiry_and_reclaim,
    test_one_active_run_per_issue,
    test_put_kv_if_absent_has_exactly_one_winner,
    test_runs_are_claimed_oldest_first,
    test_runs_on_a_pr_without_an_issue_share_the_pr_queue,
    test_the_partial_unique_index_refuses_a_second_active_issue_run,
    test_update_run_steps_and_finish,
    test_usage_adds_up_atomically,
)

pytestmark = pytest.mark.postgres
SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


async def create_database() -> str:
    """A fresh, uniquely named database, so parallel test sessions never meet."""
    name = f"honk_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(**SERVER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(**SERVER, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def url_of(name: str) -> str:
    return f"postgresql+asyncpg://{SERVER['user']}@{SERVER['host']}:{SERVER['port']}/{name}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_database() -> AsyncIterator[str]:
    name = await create_database()
    try:
        yield name
    finally:
        await drop_database(name)


@pytest.fixture
async def store_url(session_database: str) -> str:
    """The session's database, migrated and emptied for this test."""
    url = url_of(session_database)
    fresh = await Store.open(url)
    try:
        async with fresh.engine.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE runs, run_steps, run_events, deliveries, kv RESTART IDENTITY CASCADE"
                )
            )
    finally:
        await fresh.close()
    return url


async def test_several_processes_may_migrate_a_new_database_at_once() -> None:
    name = await create_database()
    try:
        stores = await asyncio.gather(*(Store.open(url_of(name)) for _ in range(3)))
        again = await Store.open(url_of(name))
        stores.append(again)
        try:
            async with again.engine.connect() as conn:
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            assert version == head_revision()
            assert all([await s.ping() for s in stores])
        finally:
            for opened in stores:
                await opened.close()
    finally:
        await drop_database(name)


async def test_concurrent_claims_from_several_connections_never_double_claim(
    store: Store, store_url: str
) -> None:
    queued = [some(await store.runs.enqueue(issue_run(n))).id for n in range(30)]
    workers = [store, *[await Store.open(store_url, migrate=False) for _ in range(3)]]

    async def claim_all(worker: Store, name: str) -> list[int]:
        claimed: list[int] = []
        while (run := await worker.runs.claim(name, 60)) is not None:
            claimed.append(run.id)
        return claimed

    try:
        results = await asyncio.gather(
            *(claim_all(w, f"w{i}-{c}") for i, w in enumerate(workers) for c in range(3))
        )
    finally:
        for worker in workers[1:]:
            await worker.close()
    assert sorted(run_id for claimed in results for run_id in claimed) == queued
    assert sum(1 for claimed in results if claimed) > 1
    assert {(r.state, r.attempts) for r in await store.runs.find(limit=100)} == {
        (RunState.RUNNING, 1)
    }


async def test_a_claim_skips_the_run_another_transaction_has_locked(store: Store) -> None:
    first = some(await store.runs.enqueue(issue_run(1)))
    second = some(await store.runs.enqueue(issue_run(2)))
    async with store.engine.connect() as other:
        await other.execute(select(runs.c.id).where(runs.c.id == first.id).with_for_update())
        async with asyncio.timeout(5):  # SKIP LOCKED: no waiting for the other transaction
            claimed = await store.runs.claim("w1", 30)
        assert claimed is not None and claimed.id == second.id
        await other.rollback()
    claimed = await store.runs.claim("w2", 30)
    assert claimed is not None and claimed.id == first.id


async def test_the_unique_index_decides_a_race_between_enqueues(store: Store) -> None:
    """An enqueue whose check missed an uncommitted twin is refused when the twin commits."""
    now = datetime.now(UTC)
    twin = {
        "repo": REPO,
        "installation_id": INSTALLATION,
        "kind": "issue",
        "state": "queued",
        "serial_key": f"{REPO}#3",
        "issue_number": 3,
        "created_at": now,
        "updated_at": now,
    }
    async with store.engine.connect() as other:
        await other.execute(insert(runs).values(**twin))
        racing = asyncio.create_task(store.runs.enqueue(issue_run(3)))
        await asyncio.sleep(0.3)
        assert not racing.done()  # its insert waits on the index entry
        await other.commit()
    async with asyncio.timeout(5):
        assert await racing is None
    assert len(await store.runs.find(repo=REPO, issue_number=3)) == 1
