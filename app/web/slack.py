"""Slack's HTTP entry: signature and timestamp checked first, retries dropped, answered in 3 s.

slack_sdk's SignatureVerifier rather than slack_bolt: Honk already owns its aiohttp app,
its session and its task lifetimes; bolt would bring a second framework (its own
listeners, acks and lazy tasks) to do what three small handlers do here.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from app.handlers.slack.buttons import acts, answer_at_once
from app.handlers.slack.commands import SLACK_EVENT, acknowledgement, quick_answer
from app.handlers.slack.conversation import SlackContext
from app.handlers.slack.fleet import form_errors, open_form
from app.handlers.slack.parsing import Origin, command_request, event_request, interaction_user
from app.store.inbox import body_digest
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)

SLACK = web.AppKey("slack", SlackContext)
PRUNE_ONE_IN = 100  # about one request in this many prunes old "seen" records
# "event:<event_id>" | "command:<trigger_id>" | "interaction:<trigger_id>" -> when it came
_SEEN: Namespace[dict[str, Any]] = Namespace("slack_seen", owner=__name__, decode=mapping)
# Slack's payloads are small; anything near this is not from Slack.
MAX_SLACK_BYTES = 1024 * 1024
EVENTS_PATH, COMMANDS_PATH, INTERACTIONS_PATH = (
    "/slack/events",
    "/slack/commands",
    "/slack/interactions",
)


def add_slack_routes(app: web.Application) -> None:
    """Mount Slack's three request URLs; whoever builds the services sets app[SLACK]."""
    app.router.add_post(EVENTS_PATH, slack_events)
    app.router.add_post(COMMANDS_PATH, slack_command)
    app.router.add_post(INTERACTIONS_PATH, slack_interaction)


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
        found = event_request(payload)
        if found is not None:
            await _store_request(request, found[0], {"kind": "event", "payload": payload})
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
    origin, command = command_request(form)
    if command.kind == "fleet":
        # A form: it opens with the command's trigger_id, which Slack honours for 3 s.
        said = await open_form(request.app[SLACK], origin, command, str(trigger_id))
        if said is None:
            return web.Response(status=200)
        return web.json_response({"response_type": "ephemeral", "text": said})
    text = quick_answer(command)
    if text is None:
        await _store_request(request, origin, {"kind": "command", "form": form})
        text = acknowledgement(command)
    return web.json_response({"response_type": "ephemeral", "text": text})


async def slack_interaction(request: web.Request) -> web.StreamResponse:
    """Buttons and modals (the form's `payload` field holds the JSON): what must happen within
    Slack's 3 seconds happens now; an action is stored in the inbox, then Slack is answered."""
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
    if errors := form_errors(payload):
        # A fleet form's mistakes, shown by Slack beside their fields; the form stays open.
        return web.json_response({"response_action": "errors", "errors": errors})
    if acts(payload):
        # A click is a delivery: stored before Slack hears back, so a crash after the answer
        # loses no Merge or Cancel; whichever process dispatches next does it, once (the
        # inbox's id drops Slack's retries and replays of it).
        key = str(trigger_id or body_digest(body))[:80]
        origin = Origin(interaction_user(payload), "", request_id=f"interaction:{key}")
        await _store_request(request, origin, {"kind": "interaction", "payload": payload})
        return web.Response(status=200)
    if trigger_id and not await _first_time(request, f"interaction:{trigger_id}"):
        return web.Response(status=200)
    await answer_at_once(request.app[SLACK], payload)  # Retry's form: the trigger lasts 3 s
    return web.Response(status=200)


async def _verified_body(request: web.Request) -> bytes | web.Response:
    """The body, once Slack's signature and its 5-minute timestamp window hold; else a 401."""
    secret = request.app[SLACK].settings.slack.signing_secret
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
    store = request.app[SLACK].store
    first = await _SEEN.put_if_absent(store, key, {"at": datetime.now(UTC).isoformat()})
    if first and secrets.randbelow(PRUNE_ONE_IN) == 0:
        # Slack retries within minutes; a day of ids is plenty, and the table stays small.
        await _SEEN.prune(store, timedelta(days=1))
    if not first:
        retry = request.headers.get("X-Slack-Retry-Num")
        log.info("Slack %s already received%s; ignored", key, f" (retry {retry})" if retry else "")
    return first


async def _store_request(request: web.Request, origin: Origin, stored: Mapping[str, Any]) -> None:
    """Into the stored inbox, like GitHub's deliveries: a crash after Slack's answer loses
    nothing, and whichever process dispatches next does the work."""
    ctx = request.app[SLACK]
    await ctx.store.inbox.record(f"slack:{origin.request_id}", SLACK_EVENT, dict(stored))
    ctx.wake_dispatcher()


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
