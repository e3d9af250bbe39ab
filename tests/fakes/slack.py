"""Fake Slack: the Web API answering like slack.com/api/ (recording every call), response_url
endpoints, and Slack's side of the front door: signed commands, events and clicks sent to Honk."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from app.config import Settings

FAKE_TOKEN = "xoxb-1111-2222-fakeSlackBotToken"
TEAM_ID = "T0HONKTEAM"
BOT_USER_ID = "U0HONKBOT"
CHANNEL_ID = "C0HONK0001"
CHANNEL_NAME = "honk"
FIRST_TS = 1_700_000_000
SIGNING_SECRET = "8f14e45fceea167a5a36dedd4bea2543"

Handler = Callable[["FakeSlack", dict[str, Any]], dict[str, Any]]


class SlackError(Exception):
    """Answered as {"ok": false, "error": code}, as Slack does (HTTP 200)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    token: str | None
    status: int  # the HTTP status the fake answered with


@dataclass
class PostedMessage:
    """A message as chat.postMessage left it (chat.update edits it in place)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    user: str | None = None  # set for chat.postEphemeral only
    edits: int = 0
    author: str = BOT_USER_ID  # who wrote it: Slack lets an app edit only its own messages

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


@dataclass
class FakeUser:
    id: str
    name: str
    email: str
    real_name: str = ""

    def to_api(self) -> dict[str, Any]:
        real_name = self.real_name or self.name.title()
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": False,
            "profile": {
                "email": self.email,
                "real_name": real_name,
                "display_name": self.name,
            },
        }


@dataclass
class FakeSlack:
    """Channels and users to answer with; `.calls` and `.messages()` to assert on.

    `down = True` answers 503 (Slack down); `rate_limit_next(n)` answers the next n calls 429;
    `fail_next(method, error)` makes one call to `method` answer {"ok": false, "error": error}.
    """

    token: str = FAKE_TOKEN
    url: str = ""  # ends with "/api/" once served: usable as settings.slack.api_url
    down: bool = False
    calls: list[SlackCall] = field(default_factory=list)
    posted: list[PostedMessage] = field(default_factory=list)
    ephemeral: list[PostedMessage] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posted to response_urls
    signing_secret: str = SIGNING_SECRET
    channels: dict[str, str] = field(default_factory=lambda: {CHANNEL_ID: CHANNEL_NAME})
    users: dict[str, FakeUser] = field(
        default_factory=lambda: {
            "U0ALICE": FakeUser("U0ALICE", "alice", "alice@example.com"),
            "U0BOB": FakeUser("U0BOB", "bob", "bob@example.com"),
        }
    )
    _rate_limited: int = 0
    _retry_after: int = 1
    _failures: dict[str, list[str]] = field(default_factory=dict)
    _clock: int = 0
    _triggers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test helpers

    def settings(self, base: Settings, channel: str = f"#{CHANNEL_NAME}") -> Settings:
        """`base` pointed at this fake with a valid bot token and channel."""
        return base.with_overrides(
            slack_bot_token=self.token,
            slack_channel=channel,
            slack_api_url=self.url,
            slack_signing_secret=self.signing_secret,
        )

    def messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[PostedMessage]:
        """Posted messages, oldest first; with `thread_ts`, only the replies in that thread."""
        return [
            m
            for m in self.posted
            if (channel is None or m.channel == self._channel_id(channel, create=False))
            and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def rate_limit_next(self, n: int, retry_after: int = 1) -> None:
        self._rate_limited = n
        self._retry_after = retry_after

    def fail_next(self, method: str, error: str) -> None:
        self._failures.setdefault(method, []).append(error)

    def add_channel(self, name: str, channel_id: str | None = None) -> str:
        channel_id = channel_id or f"C{len(self.channels) + 1:09d}"
        self.channels[channel_id] = name.lstrip("#")
        return channel_id

    def add_user(self, user_id: str, name: str, email: str) -> FakeUser:
        self.users[user_id] = FakeUser(user_id, name, email)
        return self.users[user_id]

    def user_message(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> PostedMessage:
        """A message a person wrote (not the app): permalinks work, chat.update refuses."""
        message = PostedMessage(
            self._channel_id(channel), self._next_ts(), text, None, thread_ts, author=user
        )
        self.posted.append(message)
        return message

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts in commands and clicks."""
        return f"{self.url.removesuffix('/api/')}/respond/{next(self._triggers)}"

    def trigger_id(self) -> str:
        return f"{next(self._triggers)}.1111.{hashlib.sha1(str(time.time()).encode()).hexdigest()}"

    # -- Slack's side of the front door: signed requests to Honk

    def signed_headers(
        self, body: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> dict[str, str]:
        """X-Slack-Signature and X-Slack-Request-Timestamp as Slack computes them (v0)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = f"v0:{stamp}:".encode() + body
        digest = hmac.new((secret or self.signing_secret).encode(), base, hashlib.sha256)
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}

    async def send(
        self,
        client: TestClient,
        path: str,
        body: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        **signing: Any,
    ) -> ClientResponse:
        sent = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        sent.update(self.signed_headers(body, **signing))
        sent.update(headers or {})
        return await client.post(path, data=body, headers=sent)

    async def command(
        self,
        client: TestClient,
        text: str,
        *,
        user: str = "U0ALICE",
        channel: str = CHANNEL_ID,
        trigger_id: str | None = None,
        headers: dict[str, str] | None = None,
        **signing: Any,
    ) -> ClientResponse:
        """`/honk <text>` typed by `user` in `channel`."""
        form = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "honk-test",
            "channel_id": channel,
            "channel_name": self.channels.get(channel, "directmessage"),
            "user_id": user,
            "user_name": self.users[user].name if user in self.users else user.lower(),
            "command": "/honk",
            "text": text,
            "api_app_id": "A0HONKAPP",
            "is_enterprise_install": "false",
            "response_url": self.response_url(),
            "trigger_id": trigger_id or self.trigger_id(),
        }
        body = urlencode(form).encode()
        return await self.send(
            client,
            "/slack/commands",
            body,
            "application/x-www-form-urlencoded",
            headers=headers,
            **signing,
        )

    async def event(
        self,
        client: TestClient,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        headers: dict[str, str] | None = None,
        **signing: Any,
    ) -> ClientResponse:
        """An Events API callback carrying `event`."""
        payload = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0HONKAPP",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._triggers):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        }
        return await self.send(
            client,
            "/slack/events",
            json.dumps(payload).encode(),
            "application/json",
            headers=headers,
            **signing,
        )

    async def mention(
        self, client: TestClient, text: str, *, user: str = "U0ALICE", channel: str = CHANNEL_ID
    ) -> tuple[PostedMessage, ClientResponse]:
        """`user` writes "@Honk <text>" in `channel`; Slack tells Honk (app_mention)."""
        message = self.user_message(channel, user, f"<@{BOT_USER_ID}> {text}")
        event = {
            "type": "app_mention",
            "user": user,
            "text": message.text,
            "ts": message.ts,
            "channel": message.channel,
            "event_ts": message.ts,
        }
        return message, await self.event(client, event)

    async def direct_message(
        self, client: TestClient, text: str, *, user: str = "U0ALICE", channel: str = "D0ALICE001"
    ) -> tuple[PostedMessage, ClientResponse]:
        """`user` writes to Honk in their DM with it; Slack tells Honk (message.im)."""
        message = self.user_message(channel, user, text)
        event = {
            "type": "message",
            "channel_type": "im",
            "user": user,
            "text": text,
            "ts": message.ts,
            "channel": message.channel,
            "event_ts": message.ts,
        }
        return message, await self.event(client, event)

    async def click(
        self, client: TestClient, message: PostedMessage, action_id: str, *, user: str = "U0ALICE"
    ) -> ClientResponse:
        """`user` clicks the button `action_id` on `message` (block_actions)."""
        buttons = [
            element
            for block in message.blocks or []
            if block.get("type") == "actions"
            for element in block.get("elements", [])
        ]
        button = next(b for b in buttons if b.get("action_id") == action_id)
        message_api = _message_api(message)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "team_id": TEAM_ID, "username": self.users[user].name},
            "api_app_id": "A0HONKAPP",
            "team": {"id": TEAM_ID, "domain": "honk-test"},
            "trigger_id": self.trigger_id(),
            "response_url": self.response_url(),
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "channel": {"id": message.channel, "name": self.channels.get(message.channel, "")},
            "message": message_api,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": button.get("value"),
                    "action_ts": str(time.time()),
                }
            ],
        }
        return await self._interaction(client, payload)

    async def submit(
        self,
        client: TestClient,
        view: dict[str, Any],
        values: dict[str, dict[str, str]],
        *,
        user: str = "U0ALICE",
    ) -> ClientResponse:
        """`user` submits the modal `view` with `values` ({block_id: {action_id: text}})."""
        state = {
            block: {action: {"type": "plain_text_input", "value": text}}
            for block, inputs in values.items()
            for action, text in inputs.items()
        }
        payload = {
            "type": "view_submission",
            "user": {"id": user, "team_id": TEAM_ID, "username": self.users[user].name},
            "api_app_id": "A0HONKAPP",
            "team": {"id": TEAM_ID, "domain": "honk-test"},
            "trigger_id": self.trigger_id(),
            "view": {**view, "id": view.get("id", "V000000001"), "state": {"values": state}},
        }
        return await self._interaction(client, payload)

    async def _interaction(self, client: TestClient, payload: dict[str, Any]) -> ClientResponse:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send(
            client, "/slack/interactions", body, "application/x-www-form-urlencoded"
        )

    # -- the HTTP side

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/respond/{id}", self._respond)
        return app

    async def _respond(self, request: web.Request) -> web.Response:
        """A response_url: Slack takes the JSON message (ephemeral unless in_channel)."""
        self.responses.append(await request.json())
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        token = _bearer(request) or params.pop("token", None)
        if self.down:
            self.calls.append(SlackCall(method, params, token, 503))
            return web.Response(
                status=503,
                text="<html><body>Service Unavailable</body></html>",
                content_type="text/html",
            )
        if self._rate_limited > 0:
            self._rate_limited -= 1
            self.calls.append(SlackCall(method, params, token, 429))
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self._retry_after)},
            )
        self.calls.append(SlackCall(method, params, token, 200))
        handler = _HANDLERS.get(method)
        try:
            if token is None:
                raise SlackError("not_authed")
            if token != self.token:
                raise SlackError("invalid_auth")
            if handler is None:
                raise SlackError("unknown_method")
            if self._failures.get(method):
                raise SlackError(self._failures[method].pop(0))
            body = {"ok": True, **handler(self, params)}
        except SlackError as error:
            body = {"ok": False, "error": error.code}
        return web.json_response(body)

    # -- state used by the method handlers

    def _next_ts(self) -> str:
        self._clock += 1
        return f"{FIRST_TS + self._clock}.{self._clock:06d}"

    def _channel_id(self, channel: str, create: bool = True) -> str:
        """IDs pass as they are; names (#honk or honk) resolve, and new names are created."""
        if re.fullmatch(r"[CDG][A-Z0-9]{6,}", channel):
            if create:
                self.channels.setdefault(channel, channel.lower())
            return channel
        name = channel.lstrip("#")
        for channel_id, known in self.channels.items():
            if known == name:
                return channel_id
        return self.add_channel(name) if create else channel

    def _known_channel(self, params: dict[str, Any]) -> str:
        channel = _required(params, "channel", "channel_not_found")
        if channel not in self.channels and not channel.startswith("D"):
            raise SlackError("channel_not_found")
        return channel

    def _message(self, channel: str, ts: str) -> PostedMessage:
        for message in self.posted:
            if message.channel == channel and message.ts == ts:
                return message
        raise SlackError("message_not_found")

    def _user(self, user_id: str | None) -> FakeUser:
        if not user_id or user_id not in self.users:
            raise SlackError("user_not_found")
        return self.users[user_id]


async def _params(request: web.Request) -> dict[str, Any]:
    """Query string plus a JSON or form body; `blocks` sent in a form arrive as a JSON string."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json() if request.can_read_body else {}
        params.update(body)
    elif request.can_read_body:
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    for key in ("blocks", "attachments", "view"):
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def _required(params: dict[str, Any], name: str, error: str) -> str:
    value = params.get(name)
    if not value:
        raise SlackError(error)
    return str(value)


def _message_content(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    text, blocks = str(params.get("text") or ""), params.get("blocks") or None
    if not text and not blocks:
        raise SlackError("no_text")
    if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50):
        raise SlackError("invalid_blocks")
    return text, blocks


def _post_message(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = fake._channel_id(_required(params, "channel", "channel_not_found"))
    text, blocks = _message_content(params)
    thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
    message = PostedMessage(channel, fake._next_ts(), text, blocks, thread_ts)
    fake.posted.append(message)
    return {"channel": channel, "ts": message.ts, "message": _message_api(message)}


def _update(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = fake._known_channel(params)
    message = fake._message(channel, _required(params, "ts", "message_not_found"))
    if message.author != BOT_USER_ID:
        raise SlackError("cant_update_message")
    message.text, message.blocks = _message_content(params)
    message.edits += 1
    return {
        "channel": channel,
        "ts": message.ts,
        "text": message.text,
        "message": _message_api(message),
    }


def _post_ephemeral(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = fake._channel_id(_required(params, "channel", "channel_not_found"))
    user = fake._user(params.get("user")).id
    text, blocks = _message_content(params)
    message = PostedMessage(channel, fake._next_ts(), text, blocks, params.get("thread_ts"), user)
    fake.ephemeral.append(message)
    return {"message_ts": message.ts}


def _get_permalink(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = fake._known_channel(params)
    message = fake._message(channel, _required(params, "message_ts", "message_not_found"))
    permalink = f"https://honk-test.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
    return {"channel": channel, "permalink": permalink}


def _auth_test(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": "https://honk-test.slack.com/",
        "team": "Honk Test",
        "user": "honk",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": "B0HONKBOT",
        "is_enterprise_install": False,
    }


def _conversations_info(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    channel = fake._known_channel(params)
    return {
        "channel": {
            "id": channel,
            "name": fake.channels.get(channel, ""),
            "is_channel": not channel.startswith("D"),
            "is_im": channel.startswith("D"),
            "is_private": False,
            "is_archived": False,
            "is_member": True,
        }
    }


def _users_info(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    return {"user": fake._user(params.get("user")).to_api()}


def _lookup_by_email(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    email = str(params.get("email") or "").lower()
    for user in fake.users.values():
        if user.email.lower() == email:
            return {"user": user.to_api()}
    raise SlackError("users_not_found")


def _views_open(fake: FakeSlack, params: dict[str, Any]) -> dict[str, Any]:
    _required(params, "trigger_id", "invalid_trigger_id")
    view = params.get("view")
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments")
    fake.views.append(view)
    return {"view": {"id": f"V{len(fake.views):09d}", "team_id": TEAM_ID, **view}}


def _message_api(message: PostedMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "message", "user": message.author, "ts": message.ts}
    data["text"] = message.text
    if message.blocks is not None:
        data["blocks"] = message.blocks
    if message.thread_ts is not None:
        data["thread_ts"] = message.thread_ts
    return data


_HANDLERS: dict[str, Handler] = {
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.postEphemeral": _post_ephemeral,
    "chat.getPermalink": _get_permalink,
    "auth.test": _auth_test,
    "conversations.info": _conversations_info,
    "users.info": _users_info,
    "users.lookupByEmail": _lookup_by_email,
    "views.open": _views_open,
}


@pytest.fixture
async def fake_slack(aiohttp_server: AiohttpServer) -> FakeSlack:
    """A FakeSlack served on loopback; `fake_slack.settings(base_settings)` points Honk at it."""
    fake = FakeSlack()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/api/"))
    return fake
