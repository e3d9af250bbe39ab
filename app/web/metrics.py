"""`/metrics` for Prometheus: behind a bearer token on the main port, or on a loopback port."""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from app import metrics
from app.config import WebSettings
from app.models import RunState
from app.store import Store

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
STORE = web.AppKey("metrics_store", Store)


async def refresh(store: Store) -> None:
    """The gauges that are a reading of the store, taken at scrape time."""
    metrics.inbox_depth.set(await store.inbox.count(pending=True))
    oldest = await store.inbox.oldest_pending()
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
    metrics.inbox_oldest.set(max(age, 0.0))
    counts = await store.stats.runs_by_state()
    for state in RunState:
        metrics.runs.labels(state.value).set(counts.get(state.value, 0))


async def scrape(store: Store) -> web.Response:
    await refresh(store)
    body, content_type = metrics.exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_metrics_route(app: web.Application, settings: WebSettings) -> None:
    """`GET /metrics` on the main app, only for HONK_METRICS_TOKEN as a bearer token."""
    token = settings.metrics_token
    if not token:
        return

    async def handler(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "a bearer token is required"}, status=401)
        return await scrape(request.app[STORE])

    app.router.add_get(METRICS_PATH, handler)


@contextlib.asynccontextmanager
async def loopback_metrics(
    settings: WebSettings, store: Store, sock: socket.socket | None = None
) -> AsyncIterator[None]:
    """HONK_METRICS_PORT: /metrics unauthenticated on 127.0.0.1 only, for a local scraper.

    `sock`: the port bound already (`honk serve` binds it before anything starts).
    """
    if not settings.metrics_port:
        yield
        return
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return await scrape(store)

    app.router.add_get(METRICS_PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site: web.BaseSite = (
        web.SockSite(runner, sock)
        if sock is not None
        else web.TCPSite(runner, "127.0.0.1", settings.metrics_port)
    )
    await site.start()
    log.info("metrics on http://127.0.0.1:%d%s", settings.metrics_port, METRICS_PATH)
    try:
        yield
    finally:
        await runner.cleanup()
