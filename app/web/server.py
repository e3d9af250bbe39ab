"""The HTTP entry: verify and store GitHub deliveries, answer fast; health; the app factory."""

from __future__ import annotations

import gc
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from gidgethub import ValidationFailure, sansio

from app import metrics
from app.config import Settings
from app.log import log_context
from app.services import GitHubTime, Services, open_services
from app.web import pages, setup
from app.web.metrics import STORE, add_metrics_route, loopback_metrics
from app.web.slack import SLACK, add_slack_routes

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey("settings", Settings)

# GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024


def create_app(
    settings: Settings,
    *,
    workers: int | None = None,
    metrics_socket: socket.socket | None = None,
    github_time: GitHubTime | None = None,
) -> web.Application:
    """The aiohttp application; its cleanup context owns every long-lived collaborator.

    `metrics_socket`: HONK_METRICS_PORT's listener, bound already (see `listen`).
    `github_time`: the clock and sleep of GitHub's side (tests: the fake GitHub's clock).
    """
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
    app[SETTINGS] = settings

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with (
            open_services(settings, workers=workers, github_time=github_time) as services,
            loopback_metrics(settings.web, services.store, metrics_socket),
        ):
            app[SERVICES] = services
            app[SLACK] = services.slack_front
            app[STORE] = services.store
            yield

    app.cleanup_ctx.append(services_ctx)
    app.on_startup.append(_freeze_startup_objects)
    pages.add_routes(app, settings, SERVICES)  # /runs, /runs/<id>, /api/runs, /signin
    app.router.add_post(settings.github.webhook_path, github_webhook)
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app, settings.web)  # /metrics, with HONK_METRICS_TOKEN
    add_slack_routes(app)  # /slack/events, /slack/commands, /slack/interactions
    if settings.github.configured:
        app.router.add_get("/", index)
    setup.add_routes(app, settings)  # also "/" while GitHub is not configured
    return app


async def _freeze_startup_objects(_app: web.Application) -> None:
    # What startup made (modules, settings, clients) lives as long as the process: kept out
    # of the collector's full passes, which otherwise stall every request for 100 ms or more.
    gc.freeze()
    # A request allocates hundreds of objects that reference counting frees at once; young
    # collections every 700 allocations mostly found nothing to collect (paired bench rounds:
    # 16 of 24 faster with 10,000 or more, 2 to 12 us less CPU per delivery).
    gc.set_threshold(10_000, 10, 10)


_ACCEPTED = b'{"status": "accepted"}'


def _accepted() -> web.Response:
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def github_webhook(request: web.Request) -> web.Response:
    """Verify, store, acknowledge; the dispatcher routes the event from the store."""
    started = time.perf_counter()
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    with log_context(delivery_id=delivery_id or None):
        response, outcome = await _take_webhook(request, delivery_id)
    # A refused request's event header is anyone's to choose: not a label.
    event = request.headers.get("X-GitHub-Event", "") if outcome != "refused" else "-"
    metrics.labelled(metrics.deliveries, event, outcome).inc()
    metrics.ingest_seconds.observe(time.perf_counter() - started)
    return response


async def _take_webhook(request: web.Request, delivery_id: str) -> tuple[web.Response, str]:
    """The answer, and what became of the delivery: stored, duplicate or refused."""
    services = request.app[SERVICES]
    secret = services.settings.github.webhook_secret
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        return _error(413, "payload larger than GitHub's 25 MB limit"), "refused"
    signature = request.headers.get("X-Hub-Signature-256", "")
    body = await request.read()
    if not secret:
        log.error("webhook refused: WEBHOOK_SECRET is not configured")
        return _error(401, "webhook secret not configured"), "refused"
    if not signature.startswith("sha256="):
        log.warning("webhook refused: missing X-Hub-Signature-256")
        return _error(401, "missing or unsupported signature"), "refused"
    try:
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        log.warning("webhook refused: signature mismatch")
        return _error(401, "signature mismatch"), "refused"
    event = request.headers.get("X-GitHub-Event", "")
    if not event or not delivery_id:
        message = "X-GitHub-Event and X-GitHub-Delivery headers are required"
        return _error(400, message), "refused"
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _error(400, "body is not JSON"), "refused"
    if not isinstance(payload, dict):
        return _error(400, "body is not a JSON object"), "refused"
    # The signature just verified is HMAC-SHA256 of the body (lowercase hex, or it would not
    # have matched): the body's digest for the replay check, at no cost of its own.
    digest = signature.removeprefix("sha256=")
    if not await _store(services, delivery_id, event, body, payload, digest):
        log.info("delivery %s (or its body, under another id) already received; ignored",
                 delivery_id)  # fmt: skip
        return web.json_response({"status": "duplicate"}, status=200), "duplicate"
    log.debug("stored %s.%s", event, payload.get("action") or "-")
    return _accepted(), "stored"


async def _store(
    services: Services,
    delivery_id: str,
    event: str,
    body: bytes,
    payload: dict[str, Any],
    digest: str,
) -> bool:
    """Store the body as received (parsed once, never serialised again); False: a duplicate.

    A delivery no handler listens to is stored as handled already. When this process's
    dispatcher has room, the delivery is stored already claimed by it and
    handed over at once: no claim of its own, and no second parse. One that must wait for an
    earlier delivery about its subject (another process's) is left for the claim.
    """
    dispatcher, store = services.dispatcher, services.store
    # GitHub signs the body only, and the delivery id is a header anyone can change: a body
    # stored once (its `digest`) is a duplicate under any id (a redelivery keeps the id).
    if not dispatcher.starts_something(event, payload, delivery_id):
        stored = await store.inbox.record(
            delivery_id, event, body, parsed=payload, done=True, digest=digest
        )
        if stored:
            dispatcher.handled_already(event)
        return stored
    if not dispatcher.has_room:
        stored = await store.inbox.record(delivery_id, event, body, parsed=payload, digest=digest)
        dispatcher.wake()
        return stored
    recorded = await store.inbox.record_claimed(
        delivery_id,
        event,
        body,
        parsed=payload,
        owner=dispatcher.owner,
        lease_seconds=dispatcher.lease_seconds,
        digest=digest,
    )
    if recorded.claimed is not None:
        dispatcher.take(recorded.claimed)
    elif recorded.stored:  # held back behind an earlier delivery about its subject
        dispatcher.wake()
    return recorded.stored


async def healthz(request: web.Request) -> web.Response:
    ok = await request.app[SERVICES].store.ping()
    return web.json_response({"ok": ok, "store": "up" if ok else "down"}, status=200 if ok else 503)


async def index(request: web.Request) -> web.Response:
    return web.Response(
        text="Honk is running. GitHub webhooks go to "
        f"{request.app[SETTINGS].github.webhook_path}; health at /healthz; the runs at /runs.\n"
    )
