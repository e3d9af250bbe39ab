"""Small test helpers: signed webhook posts and waiting for background work."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient

from tests.conftest import WEBHOOK_SECRET, sign

T = TypeVar("T")
# pytest-aiohttp's `aiohttp_client` fixture: an app (or server) in, a client out.
ClientFactory = Callable[..., Awaitable[TestClient]]


async def post_webhook(
    client: TestClient,
    event: str,
    payload: dict[str, Any] | bytes,
    *,
    delivery_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    signature: str | None = None,
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": signature if signature is not None else sign(body, secret),
        "User-Agent": "GitHub-Hookshot/test",
    }
    # A BytesIO keeps aiohttp from warning about large raw bodies (the 413 test).
    return await client.post("/api/github/webhooks", data=io.BytesIO(body), headers=headers)


async def eventually(
    probe: Callable[[], Awaitable[T] | T], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Wait until `probe()` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value  # type: ignore[assignment]
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(interval)
