"""Ingest and dispatch at pace: group commit, bodies as received, batched concurrent dispatch,
subject order, a SIGKILL under load losing nothing answered, retention and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from app import metrics
from app.config import Settings
from app.store import NewRun, Store, body_log
from app.store.inbox import Finished
from app.store.tables import deliveries, delivery_bodies
from app.web import SERVICES, create_app
from tests.conftest import WEBHOOK_SECRET, sign
from tests.helpers import ClientFactory, eventually, post_webhook

ROOT = Path(__file__).resolve().parents[2]


def histogram_count(histogram: Any) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


async def test_concurrent_records_share_transactions_and_each_hears_the_truth(
    tmp_path: Path,
) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}")
    try:
        batches_before = histogram_count(metrics.inbox_batch)
        ids = [f"d-{n}" for n in range(300)] + ["d-7", "d-8"]  # two duplicates among them
        answers = await asyncio.gather(
            *(store.inbox.record(i, "issues", {"action": "opened", "n": i}) for i in ids)
        )
        batches = histogram_count(metrics.inbox_batch) - batches_before
        assert answers.count(True) == 300 and answers[-2:] == [False, False]
        assert batches <= 300 / 10, f"{batches} transactions for 300 concurrent deliveries"
        assert await store.inbox.count(pending=True) == 300
        # A redelivery of one already stored is a duplicate, at any time.
        assert await store.inbox.record("d-3", "issues", {"action": "opened"}) is False
    finally:
        await store.close()


async def test_claims_come_in_arrival_order_and_finish_in_one_batch(store: Store) -> None:
    for n in range(12):
        await store.inbox.record(f"z-{11 - n}", "ping", {"n": n})  # ids sort backwards
    first = await store.inbox.claim("w", 30, limit=5)
    assert [d.payload["n"] for d in first] == [0, 1, 2, 3, 4]
    assert all(d.attempts == 1 for d in first)
    await store.inbox.finish(
        [Finished(first[0].id), Finished(first[1].id, "boom"), Finished(first[2].id, "5xx", True)]
    )
    rest = await store.inbox.claim("w", 30, limit=50)
    assert [d.payload["n"] for d in rest] == list(range(5, 12))  # 3 and 4 are still leased
    assert await store.inbox.count(pending=True) == 12 - 2  # the retried one waits


async def test_the_body_is_stored_and_dispatched_exactly_as_received(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    client = await aiohttp_client(create_app(base_settings))
    services = client.app[SERVICES]
    seen: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> None:
        seen.append(payload)

    services.dispatcher.register("honk_test", handler)
    body = b'{ "zeta": 1,\n  "alpha": [1.50, "\\u00e9"], "action": "poked" }'
    response = await post_webhook(client, "honk_test", body, delivery_id="raw-1")
    assert response.status == 202
    await eventually(lambda: seen)
    assert seen == [{"zeta": 1, "alpha": [1.5, "é"], "action": "poked"}]
    assert await services.store.inbox.body("raw-1") == body  # byte for byte
    # On SQLite the body lies in a file beside the database, not in it.
    async with services.store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(delivery_bodies)) == 0
    files = list(body_log.directory_for(str(base_settings.store.data_dir / "honk.db")).iterdir())
    assert len(files) == 1 and files[0].read_bytes() == body


def step_about(number: int, step: str) -> dict[str, Any]:
    """A test event about issue `number` of octo/widgets, saying which step it is."""
    return {"repository": {"full_name": "octo/widgets"}, "issue": {"number": number}, "step": step}


async def test_one_subject_in_order_while_others_pass_a_slow_handler(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    client = await aiohttp_client(create_app(base_settings))
    services = client.app[SERVICES]
    order: list[str] = []
    release = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        if payload["step"] == "slow":
            await release.wait()
        order.append(f"{payload['issue']['number']}:{payload['step']}")

    services.dispatcher.register("honk_test", handler)

    for number, step in [(1, "slow"), (1, "second"), (2, "other"), (1, "third"), (3, "more")]:
        assert (await post_webhook(client, "honk_test", step_about(number, step))).status == 202
    # Issue 2 and 3 are not held up by issue 1's slow first delivery; issue 1 waits its turn.
    await eventually(lambda: {"2:other", "3:more"} <= set(order))
    assert not any(entry.startswith("1:") for entry in order)
    release.set()
    await eventually(lambda: len(order) == 5)
    assert [e for e in order if e.startswith("1:")] == ["1:slow", "1:second", "1:third"]

    async def all_finished() -> bool:
        return await services.store.inbox.count(pending=True) == 0

    await eventually(all_finished)  # and each finish was written back


def dispatched(event: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "honk_dispatched_total", {"event": event, "result": result}
    )
    return value or 0.0


async def test_a_webhook_no_handler_listens_to_is_stored_handled(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    """A star starts nothing: stored (its body too) as done in one write, never claimed."""
    client = await aiohttp_client(create_app(base_settings))
    store = client.app[SERVICES].store
    before = dispatched("star", "done")
    body = b'{"action": "created", "starred_at": null}'
    response = await post_webhook(client, "star", body, delivery_id="star-9")
    assert response.status == 202
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(deliveries).where(deliveries.c.id == "star-9"))).one()
    assert (row.status, row.attempts, row.lease_owner) == ("done", 0, None)
    assert row.finished_at is not None
    assert await store.inbox.body("star-9") == body
    assert dispatched("star", "done") == before + 1
    again = await post_webhook(client, "star", body, delivery_id="star-9")
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    assert dispatched("star", "done") == before + 1


async def test_two_processes_sharing_a_store_keep_one_subject_in_order(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    """Two Honk instances on one database: while one handles an issue's delivery, the other
    stores the next about that issue but waits its turn; another issue's goes by at once."""
    first = await aiohttp_client(create_app(base_settings))
    second = await aiohttp_client(create_app(base_settings))
    order: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(payload: dict[str, Any]) -> None:
        if payload["step"] == "slow":
            started.set()
            await release.wait()
        order.append(f"{payload['issue']['number']}:{payload['step']}")

    for client in (first, second):
        client.app[SERVICES].dispatcher.register("honk_test", handler)

    assert (await post_webhook(first, "honk_test", step_about(1, "slow"))).status == 202
    await asyncio.wait_for(started.wait(), 10)
    assert (await post_webhook(second, "honk_test", step_about(1, "second"))).status == 202
    assert (await post_webhook(second, "honk_test", step_about(2, "other"))).status == 202
    await eventually(lambda: "2:other" in order)
    await asyncio.sleep(0.3)  # several of the second's polls
    assert order == ["2:other"]  # issue 1's second waits for its first, in the other process
    release.set()
    await eventually(lambda: len(order) == 3)
    assert order == ["2:other", "1:slow", "1:second"]


async def test_finished_deliveries_age_out_and_runs_stay(store: Store) -> None:
    for n in range(3):
        await store.inbox.record(f"old-{n}", "ping", {})
    await store.inbox.record("waiting", "ping", {})
    claimed = await store.inbox.claim("w", 30, limit=3)
    await store.inbox.finish([Finished(d.id) for d in claimed[:2]] + [Finished("old-2", "x")])
    run = await store.runs.enqueue(NewRun(repo="octo/widgets", installation_id=1, issue_number=4))
    await asyncio.sleep(0.05)
    assert await store.inbox.prune(timedelta(seconds=0.02)) == 3  # done and failed alike
    assert await store.inbox.count() == 1 and await store.inbox.count(pending=True) == 1
    assert run is not None and await store.runs.get(run.id) is not None
    assert await store.inbox.body("waiting") == b"{}"


async def test_a_day_file_of_bodies_goes_once_no_delivery_needs_it(tmp_path: Path) -> None:
    database = tmp_path / "honk.db"
    store = await Store.open(f"sqlite+aiosqlite:///{database}")
    try:
        await store.inbox.record("done-1", "ping", b'{"n": 1}')
        await store.inbox.record("waiting", "ping", b'{"n": 2}')
        # Both bodies went to today's file; make it a file of long ago.
        folder = body_log.directory_for(str(database))
        (today,) = folder.iterdir()
        old = today.with_name("2020-01-01-" + today.name.split("-", 3)[3])
        today.rename(old)
        async with store.engine.begin() as conn:
            await conn.execute(update(deliveries).values(body_file=old.name))
        stray = folder / "2020-01-02-0123abcd.log"  # no delivery's: a crashed write's file
        stray.write_bytes(b"x")
        claimed = await store.inbox.claim("w", 30, limit=1)
        await store.inbox.finish([Finished(claimed[0].id)])
        await asyncio.sleep(0.02)
        assert await store.inbox.prune(timedelta(seconds=0.01)) == 1
        assert old.exists() and not stray.exists()  # "waiting" still needs the old file
        assert await store.inbox.body("waiting") == b'{"n": 2}'
        claimed = await store.inbox.claim("w", 30, limit=1)
        assert [d.payload for d in claimed] == [{"n": 2}]
        await store.inbox.finish([Finished("waiting")])
        await asyncio.sleep(0.02)
        assert await store.inbox.prune(timedelta(seconds=0.01)) == 1
        assert not old.exists()
        # A body whose file is gone fails its delivery with a clear error; others go on.
        await store.inbox.record("lost", "ping", b'{"n": 3}')
        for path in folder.iterdir():
            path.unlink()
        await store.inbox.record("kept", "ping", b'{"n": 4}')
        claimed = await store.inbox.claim("w", 30, limit=5)
        assert [d.id for d in claimed] == ["kept"]
        async with store.engine.connect() as conn:
            status, error = (
                await conn.execute(
                    select(deliveries.c.status, deliveries.c.error).where(deliveries.c.id == "lost")
                )
            ).one()
        assert status == "failed" and "is missing or cut short" in error
    finally:
        await store.close()


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_need_the_token_and_count_what_came_in(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    plain = await aiohttp_client(create_app(base_settings))
    assert (await plain.get("/metrics")).status == 404  # no token configured: not served
    token = "metrics-token-" + uuid.uuid4().hex
    client = await aiohttp_client(create_app(base_settings.with_overrides(metrics_token=token)))
    await post_webhook(client, "issues", {"action": "opened"})
    await post_webhook(client, "issues", {"action": "opened"}, signature="sha256=0000")
    assert (await client.get("/metrics")).status == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status == 200 and scraped.content_type.startswith("text/plain")
    text = await scraped.text()
    assert 'honk_deliveries_total{event="issues",outcome="stored"}' in text
    assert 'honk_deliveries_total{event="-",outcome="refused"}' in text
    assert "honk_inbox_pending " in text and 'honk_runs{state="queued"} 0.0' in text
    assert "honk_ingest_seconds_bucket" in text and token not in text


async def test_metrics_on_their_own_loopback_port(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    await aiohttp_client(create_app(base_settings.with_overrides(metrics_port=port)))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert "honk_inbox_oldest_pending_seconds" in await response.text()


# -- a real `honk serve`, killed under load -----------------------------------------------------


@contextlib.asynccontextmanager
async def honk_serve(data_dir: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": str(ROOT),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "HONK_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'honk.db'}",
        "HONK_WORKERS": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "--env-file", "", "serve",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_answered_delivery(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/github/webhooks"
    answered: list[str] = []
    async with honk_serve(tmp_path, port) as process, aiohttp.ClientSession() as session:

        async def up() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status == 200
            return False

        await eventually(up, within=30)

        async def sender(lane: int) -> None:
            for n in range(10_000):
                delivery_id = f"kill-{lane}-{n}"
                # Each body its own, as GitHub's are: a body seen before is a replay.
                issue = {"number": lane * 10_000 + n}
                body = json.dumps({"action": "opened", "issue": issue}).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": delivery_id,
                    "X-Hub-Signature-256": sign(body),
                }
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if response.status == 202:
                            answered.append(delivery_id)
                except aiohttp.ClientError:
                    return  # the server is gone

        senders = [asyncio.create_task(sender(lane)) for lane in range(32)]
        await eventually(lambda: len(answered) > 300, within=30)
        process.send_signal(signal.SIGKILL)  # mid-load: requests in flight everywhere
        assert await process.wait() == -signal.SIGKILL
        killed_with = len(answered)
        await asyncio.gather(*senders)
    assert len(answered) == killed_with  # nothing answered after the kill
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}", migrate=False)
    try:
        async with store.engine.connect() as conn:
            rows = await conn.execute(select(deliveries.c.id))
            stored = set(rows.scalars())
        missing = [i for i in answered if i not in stored]
        assert not missing, f"{len(missing)} answered deliveries lost, e.g. {missing[:3]}"
        for delivery_id in answered:  # and each one's body, whole
            body = await store.inbox.body(delivery_id)
            assert body is not None and json.loads(body)["action"] == "opened", delivery_id
    finally:
        await store.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}")
    yield opened
    await opened.close()


async def test_bodies_stored_before_the_files_are_still_read_after_the_upgrade(
    tmp_path: Path,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from app.store.engine import alembic_config, create_engine

    url = f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"
    engine = create_engine(url)

    def to_0006(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")

    async with engine.begin() as conn:
        await conn.run_sync(to_0006)
        await conn.execute(
            text(
                "INSERT INTO deliveries (id, event, status, attempts, received_at) "
                "VALUES ('before', 'ping', 'pending', 0, '2026-11-30 10:00:00.000000')"
            )
        )
        await conn.execute(
            text("INSERT INTO delivery_bodies (delivery_id, body) VALUES ('before', :b)"),
            {"b": b'{"zen": "old"}'},
        )
    await engine.dispose()
    store = await Store.open(url)  # migrates to the newest revision
    try:
        await store.inbox.record("after", "ping", b'{"zen": "new"}')
        assert await store.inbox.body("before") == b'{"zen": "old"}'
        claimed = await store.inbox.claim("w", 30, limit=5)
        assert [(d.id, d.payload) for d in claimed] == [
            ("before", {"zen": "old"}),
            ("after", {"zen": "new"}),
        ]
    finally:
        await store.close()
