"""The webhook entry over real HTTP: signatures, malformed bodies, size cap, replays, health."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.web import SERVICES, create_app
from tests.conftest import load_payload, sign
from tests.helpers import ClientFactory, eventually, post_webhook


@pytest.fixture
async def client(aiohttp_client: ClientFactory, base_settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(base_settings, workers=0))


async def stored_delivery_count(client: TestClient) -> int:
    store = client.app[SERVICES].store
    return await store.inbox.count()


async def test_good_signature_is_stored_and_acknowledged(client: TestClient) -> None:
    response = await post_webhook(client, "ping", load_payload("ping.1"), delivery_id="d-1")
    assert response.status == 202
    assert (await response.json())["status"] == "accepted"
    assert await stored_delivery_count(client) == 1


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=" + "0" * 64, "sha1=0123456789abcdef0123456789abcdef01234567", "garbage"],
)
async def test_bad_signature_is_refused_and_nothing_stored(
    client: TestClient, signature: str
) -> None:
    response = await post_webhook(client, "ping", load_payload("ping.1"), signature=signature)
    assert response.status == 401
    assert await stored_delivery_count(client) == 0


async def test_signature_with_the_wrong_secret_is_refused(client: TestClient) -> None:
    response = await post_webhook(client, "ping", load_payload("ping.1"), secret="not-the-secret")
    assert response.status == 401
    assert await stored_delivery_count(client) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b"\xff\xfe"])
async def test_malformed_body_is_a_400(client: TestClient, body: bytes) -> None:
    response = await post_webhook(client, "issues", body)
    assert response.status == 400
    assert await stored_delivery_count(client) == 0


async def test_missing_event_header_is_a_400(client: TestClient) -> None:
    body = json.dumps(load_payload("ping.1")).encode()
    response = await client.post(
        "/api/github/webhooks",
        data=body,
        headers={"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "x"},
    )
    assert response.status == 400


async def test_body_over_25_mb_is_a_413(client: TestClient) -> None:
    body = b'{"padding": "' + b"x" * (25 * 1024 * 1024 + 10) + b'"}'
    response = await post_webhook(client, "issues", body)
    assert response.status == 413
    assert await stored_delivery_count(client) == 0


async def test_redelivery_is_acknowledged_and_ignored(client: TestClient) -> None:
    payload = load_payload("ping.1")
    first = await post_webhook(client, "ping", payload, delivery_id="same-id")
    second = await post_webhook(client, "ping", payload, delivery_id="same-id")
    assert first.status == 202
    assert second.status == 200
    assert (await second.json())["status"] == "duplicate"
    assert await stored_delivery_count(client) == 1


async def test_unknown_events_are_acknowledged_and_dispatched(client: TestClient) -> None:
    payload: dict[str, Any] = {"action": "flabbergasted", "zen": "?"}
    response = await post_webhook(client, "some_future_event", payload, delivery_id="u-1")
    assert response.status == 202
    store = client.app[SERVICES].store
    await eventually(lambda: _no_pending(store))


async def _no_pending(store: Any) -> bool:
    return await store.inbox.count(pending=True) == 0


async def test_healthz(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["store"] == "up"


async def test_starts_without_anthropic_or_github_credentials(
    aiohttp_client: ClientFactory, base_settings: Settings
) -> None:
    """A first run has no keys yet: the service (and its workers) must still come up."""
    bare = base_settings.with_overrides(anthropic_api_key=None, app_id=None, private_key=None)
    client = await aiohttp_client(create_app(bare, workers=1))
    assert (await client.get("/healthz")).status == 200


async def test_a_payload_missing_its_fields_fails_alone_and_loudly(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Valid JSON without the fields its event must have: recorded as failed, nothing else."""
    broken = {"action": "labeled", "label": {"name": "honk"}}  # no issue, repository, sender
    assert (await post_webhook(client, "issues", broken, delivery_id="broken-1")).status == 202
    assert (await post_webhook(client, "ping", load_payload("ping.1"))).status == 202
    store = client.app[SERVICES].store
    await eventually(lambda: _no_pending(store))
    assert await store.inbox.count() == 2
    assert any(
        "broken-1" in record.getMessage() and record.levelname == "ERROR"
        for record in caplog.records
    )
    assert (await client.get("/healthz")).status == 200
