"""Slack's HTTP entry: signature and timestamp checked first, retries dropped, answered in 3 s.

slack_sdk's SignatureVerifier rather than slack_bolt: Honk already owns its aiohttp app,
its session and its task lifetimes; bolt would bring a second framework (its own
listeners, acks and lazy tasks) to do what three small handlers do here.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from app.services import Services
from app.slack.commands import FrontDoor

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("slack_services_key", web.AppKey)
PRUNE_ONE_IN = 100  # about one request in this many prunes old "seen" records
SEEN = "slack_seen"  # kv: "event:<event_id>" | "command:<trigger_id>" | … -> when it came
# Slack's payloads are small; anything near this is not from Slack.
MAX_SLACK_BYTES = 1024 * 1024
EVENTS_PATH, COMMANDS_PATH, INTERACTIONS_PATH = (
    "/slack/events",
    "/slack/commands",
    "/slack/interactions",
)


def add_slack_routes(app: web.Application, services: web.AppKey[Services]) -> None:
    """Mount Slack's three request URLs; the front door itself is one of the services."""
    app[SERVICES_KEY] = services
    app.router.add_post(EVENTS_PATH, slack_events)
    app.router.add_post(COMMANDS_PATH, slack_command)
    app.router.add_post(INTERACTIONS_PATH, slack_interaction)


def _door(request: web.Request) -> FrontDoor:
    return request.app[request.app[SERVICES_KEY]].front_door


async def slack_events(request: web.Request) -> web.StreamResponse:
    """Events API: the URL check, then mentions and DMs (each event_id handled once)."""
    body = await _verified_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "body is not JSON")
    if not isinstance(payload, dict):
        return _error(400, "body is not a JSON object")
    if payload.get("type") == "url_verification":
        return web.json_response({"challenge": str(payload.get("challenge") or "")})
    if payload.get("type") != "event_callback":
        return web.Response(status=200)
    event_id = payload.get("event_id")
    if not event_id:
        return _error(400, "event_id is missing")
    if await _first_time(request, f"event:{event_id}"):
        await _door(request).event(payload)
    return web.Response(status=200)


async def slack_command(request: web.Request) -> web.StreamResponse:
    """`/honk …`: answered at once; GitHub work continues after the answer."""
    body = await _verified_body(request)
    if isinstance(body, web.Response):
        return body
    form = _form(body)
    trigger_id = form.get("trigger_id")
    if not trigger_id:
        return _error(400, "trigger_id is missing")
    if not await _first_time(request, f"command:{trigger_id}"):
        return web.Response(status=200)
    return web.json_response(await _door(request).command(form))


async def slack_interaction(request: web.Request) -> web.StreamResponse:
    """Buttons and modals: the form's `payload` field holds the JSON."""
    body = await _verified_body(request)
    if isinstance(body, web.Response):
        return body
    form = _form(body)
    try:
        payload = json.loads(form.get("payload") or "")
    except ValueError:
        return _error(400, "payload is not JSON")
    if not isinstance(payload, dict):
        return _error(400, "payload is not a JSON object")
    trigger_id = payload.get("trigger_id")
    if trigger_id and not await _first_time(request, f"interaction:{trigger_id}"):
        return web.Response(status=200)
    answer = await _door(request).interaction(payload)
    return web.json_response(answer) if answer is not None else web.Response(status=200)


async def _verified_body(request: web.Request) -> bytes | web.Response:
    """The body, once Slack's signature and its 5-minute timestamp window hold; else a 401."""
    secret = _door(request).settings.slack_signing_secret
    if not secret:
        log.error("Slack request refused: SLACK_SIGNING_SECRET is not configured")
        return _error(401, "Slack signing secret not configured")
    if request.content_length is not None and request.content_length > MAX_SLACK_BYTES:
        return _error(413, "payload too large for Slack")
    body = await request.read()
    try:
        valid = SignatureVerifier(secret).is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        )
    except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number, bad UTF-8
        valid = False
    if not valid:
        log.warning("Slack request refused: bad signature or stale timestamp")
        return _error(401, "bad signature or stale timestamp")
    return body


async def _first_time(request: web.Request, key: str) -> bool:
    """True once per key: Slack's retries (X-Slack-Retry-Num) and replays are dropped."""
    store = _door(request).store
    first = await store.put_kv_if_absent(SEEN, key, {"at": datetime.now(UTC).isoformat()})
    if first and secrets.randbelow(PRUNE_ONE_IN) == 0:
        # Slack retries within minutes; a day of ids is plenty, and the table stays small.
        await store.prune_kv(SEEN, timedelta(days=1))
    if not first:
        retry = request.headers.get("X-Slack-Retry-Num")
        log.info("Slack %s already received%s; ignored", key, f" (retry {retry})" if retry else "")
    return first


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
