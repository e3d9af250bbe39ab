"""The HTTP entry: verify and store GitHub deliveries, answer fast; health; the app factory."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from gidgethub import ValidationFailure, sansio

from app.config import Settings
from app.log import log_context
from app.services import Services, open_services
from app.web import pages, setup
from app.web.slack import SLACK, add_slack_routes

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey("settings", Settings)

# GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024


def create_app(settings: Settings, *, workers: int | None = None) -> web.Application:
    """The aiohttp application; its cleanup context owns every long-lived collaborator."""
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
    app[SETTINGS] = settings

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings, workers=workers) as services:
            app[SERVICES] = services
            app[SLACK] = services.slack_front
            yield

    app.cleanup_ctx.append(services_ctx)
    pages.add_routes(app, settings, SERVICES)  # /runs, /runs/<id>, /api/runs, /signin
    app.router.add_post(settings.webhook_path, github_webhook)
    app.router.add_get("/healthz", healthz)
    add_slack_routes(app)  # /slack/events, /slack/commands, /slack/interactions
    if settings.github_configured:
        app.router.add_get("/", index)
    setup.add_routes(app, settings)  # also "/" while GitHub is not configured
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def github_webhook(request: web.Request) -> web.Response:
    """Verify, store, acknowledge; the dispatcher routes the event from the store."""
    services = request.app[SERVICES]
    secret = services.settings.webhook_secret
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        return _error(413, "payload larger than GitHub's 25 MB limit")
    signature = request.headers.get("X-Hub-Signature-256", "")
    body = await request.read()
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    with log_context(delivery_id=delivery_id or None):
        if not secret:
            log.error("webhook refused: WEBHOOK_SECRET is not configured")
            return _error(401, "webhook secret not configured")
        if not signature.startswith("sha256="):
            log.warning("webhook refused: missing X-Hub-Signature-256")
            return _error(401, "missing or unsupported signature")
        try:
            sansio.validate_event(body, signature=signature, secret=secret)
        except ValidationFailure:
            log.warning("webhook refused: signature mismatch")
            return _error(401, "signature mismatch")
        event = request.headers.get("X-GitHub-Event", "")
        if not event or not delivery_id:
            return _error(400, "X-GitHub-Event and X-GitHub-Delivery headers are required")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "body is not a JSON object")
        stored = await services.store.record_delivery(delivery_id, event, payload)
        if not stored:
            log.info("delivery %s already received; ignored", delivery_id)
            return web.json_response({"status": "duplicate"}, status=200)
        log.info("stored %s.%s", event, payload.get("action") or "-")
        services.dispatcher.wake()
        return web.json_response({"status": "accepted"}, status=202)


async def healthz(request: web.Request) -> web.Response:
    ok = await request.app[SERVICES].store.ping()
    return web.json_response({"ok": ok, "store": "up" if ok else "down"}, status=200 if ok else 503)


async def index(request: web.Request) -> web.Response:
    return web.Response(
        text="Honk is running. GitHub webhooks go to "
        f"{request.app[SETTINGS].webhook_path}; health at /healthz; the runs at /runs.\n"
    )
