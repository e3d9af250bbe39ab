"""Fake Slack Web API: a real aiohttp app answering like slack.com/api/, recording every call."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from app.config import Settings

FAKE_TOKEN = "xoxb-1111-2222-fakeSlackBotToken"
TEAM_ID = "T0HONKTEAM"
BOT_USER_ID = "U0HONKBOT"
CHANNEL_ID = "C0HONK0001"
CHANNEL_NAME = "honk"
FIRST_TS = 1_700_000_000

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
    url: str = ""  # ends with "/api/" once served: usable as settings.slack_api_url
    down: bool = False
    calls: list[SlackCall] = field(default_factory=list)
    posted: list[PostedMessage] = field(default_factory=list)
    ephemeral: list[PostedMessage] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
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

    # -- test helpers

    def settings(self, base: Settings, channel: str = f"#{CHANNEL_NAME}") -> Settings:
        """`base` pointed at this fake with a valid bot token and channel."""
        return base.with_overrides(
            slack_bot_token=self.token, slack_channel=channel, slack_api_url=self.url
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

    # -- the HTTP side

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        return app

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
    data: dict[str, Any] = {"type": "message", "user": BOT_USER_ID, "ts": message.ts}
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
