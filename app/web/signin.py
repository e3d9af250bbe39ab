"""Signing in with GitHub on the web: the OAuth web flow, the encrypted session, CSRF tokens.

The session is an encrypted, signed cookie (aiohttp-session's EncryptedCookieStorage,
Fernet with HONK_SESSION_KEY) holding the person's login and user token, and a session id
whose record the store keeps (kv `web_session`, a month). Every request that reads a signed-in
session finds that record first: signing out deletes it (and revokes the user token at
GitHub), so a copy of the cookie is signed out too. A request may instead carry a GitHub
token as a bearer.

The OAuth web flow keeps one marker in the session, made afresh by each start: its `state`
and either the page to come back to (a sign-in) or the Connect GitHub link it is for
(app/web/connect.py). The callback takes that marker whole, so a connection only ever
finishes with the `state` made for it, and a plain sign-in forgets any unfinished one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import gidgethub
from aiohttp import web
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cachetools import TTLCache
from cryptography.fernet import Fernet
from yarl import URL

from app.config import Settings
from app.github.oauth import GitHubOAuth, OAuthError, UserToken
from app.log import describe_error
from app.store import Store
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)
# aiohttp-session keeps its request keys as strings; aiohttp only warns about the style.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")

COOKIE = "honk_session"
SESSION_DAYS = 30  # the refresh token lasts six months; a session, a month
SIGNIN_PATH = "/signin"
CALLBACK_PATH = "/signin/callback"
SIGNOUT_PATH = "/signout"
LOGIN_TTL = 300.0  # a bearer token's login, remembered for minutes
CSRF_FIELD = "csrf"
SID = "sid"  # the session id, whose record the store keeps while the session lasts
OAUTH = "oauth"  # the OAuth flow under way: {"state", "next"} or {"state", "connect"}
CONNECT_WAITING = "connect_confirm"  # {"nonce", "key"}: a connection waiting for its confirm
IDENTITY = frozenset({SID, "login", "token"})  # keys only a signed-in session holds
LEGACY_FLOW = ("oauth_state", "connect", "next")  # the flow's keys in older cookies
PRUNE_ONE_IN = 50  # one sign-in in this many forgets the records of ended sessions
NEXT_MAX = 2048  # a path to come back to; longer is not one Honk made
SIGNED_OUT = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<title>Signed out · Honk</title><link rel="stylesheet" href="/assets/honk.css"></head>'
    '<body><main><h1>You are signed out</h1><p><a href="/runs">Sign in again</a></p></main>'
    "</body></html>\n"
)


# sha256(session id) -> {"login", "expires"}: a signed-in session, until it ends.
_SESSIONS: Namespace[dict[str, Any]] = Namespace("web_session", owner=__name__, decode=mapping)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: their GitHub login and the token that speaks for them."""

    login: str
    token: UserToken
    via: str  # "session" or "bearer"


class SignIn:
    """The sign-in flow's state for one process: the OAuth client and short caches."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.oauth = GitHubOAuth(settings.github, session)
        self._logins: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=LOGIN_TTL)
        # Two requests refreshing at once would spend the single-use refresh token twice.
        self._refreshed: TTLCache[str, UserToken] = TTLCache(maxsize=1024, ttl=LOGIN_TTL)
        self._refreshing = asyncio.Lock()

    def callback_url(self, request: web.Request) -> str:
        from app.web.setup import public_base_url

        return (self.settings.web.url or public_base_url(request)) + CALLBACK_PATH

    async def viewer(self, request: web.Request) -> Viewer | None:
        """The bearer token's owner, else the signed-in person (their token refreshed)."""
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and credential.strip():
            login = await self.login_of(credential.strip())
            return Viewer(login, UserToken(credential.strip()), "bearer") if login else None
        session = await get_session(request)
        token = UserToken.from_dict(session.get("token"))
        login = session.get("login")
        if token is None or not isinstance(login, str):
            return None
        try:
            fresh = await self._fresh(token)
        except (OAuthError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("signed %s out: %s", login, describe_error(exc))
            await self.end_session(session.get(SID))
            session.invalidate()
            return None
        if fresh is not token:
            session["token"] = fresh.to_dict()
        return Viewer(login, fresh, "session")

    # -- the store's record of each signed-in session ------------------------------------

    async def open_session(self, login: str) -> str:
        """A new session id for `login`, recorded for SESSION_DAYS."""
        sid = secrets.token_urlsafe(32)
        expires = self.oauth.now() + SESSION_DAYS * 86400
        await _SESSIONS.put(self.store, _digest(sid), {"login": login, "expires": expires})
        if secrets.randbelow(PRUNE_ONE_IN) == 0:
            await _SESSIONS.prune(self.store, timedelta(days=SESSION_DAYS))
        return sid

    async def session_valid(self, sid: object) -> bool:
        """Whether the store still has this session (not signed out, not expired)."""
        if not isinstance(sid, str) or not sid:
            return False
        record = await _SESSIONS.get(self.store, _digest(sid))
        return record is not None and float(record.get("expires") or 0) > self.oauth.now()

    async def end_session(self, sid: object) -> None:
        if isinstance(sid, str) and sid:
            await _SESSIONS.delete(self.store, _digest(sid))

    async def login_of(self, token: str) -> str | None:
        """GET /user with the token (remembered for minutes); None when GitHub refuses it."""
        key = _digest(token)
        if (login := self._logins.get(key)) is not None:
            return login
        try:
            user = await self.oauth.user(token)
        except gidgethub.BadRequest:
            return None
        login = str(user.get("login") or "")
        if login:
            self._logins[key] = login
        return login or None

    async def _fresh(self, token: UserToken) -> UserToken:
        now = self.oauth.now()
        if not (token.expired(now) and token.refreshable(now)):
            return token
        key = _digest(token.refresh_token or "")
        async with self._refreshing:
            if (done := self._refreshed.get(key)) is not None:
                return done
            fresh = await self.oauth.refresh(token)
            self._refreshed[key] = fresh
            return fresh


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SessionValid = Callable[[web.Request, object], Awaitable[bool]]


class RevocableCookieStorage(EncryptedCookieStorage):
    """The encrypted cookie, honoured as signed in only while the store has its session id:
    a signed-in session whose record is gone (signed out, expired, an older cookie with no
    id) loads as a new, empty one, and the answer clears the browser's cookie."""

    def __init__(self, secret_key: str, *, valid: SessionValid, **options: Any) -> None:
        super().__init__(secret_key, **options)
        self._valid = valid

    async def load_session(self, request: web.Request) -> Session:
        session = await super().load_session(request)
        if session.new or not IDENTITY & set(session):
            return session  # no one signed in: a sign-in under way, a CSRF token
        if await self._valid(request, session.get(SID)):
            return session
        ended = Session(None, data=None, new=True, max_age=self.max_age)
        ended.invalidate()  # saved empty: the cookie is deleted
        return ended


async def _session_valid(request: web.Request, sid: object) -> bool:
    flow = request.app.get(SIGN_IN)
    return flow is not None and await flow.session_valid(sid)


SIGN_IN = web.AppKey("sign_in", SignIn)
# Connecting GitHub from Slack (app/web/connect.py) runs this same flow; its callback ends there.
# (request, the link's nonce, the OAuth state made for it, the person's token, GET /user)
OnConnect = Callable[
    [web.Request, str, str, UserToken, dict[str, Any]], Awaitable[web.StreamResponse]
]
ON_CONNECT: web.AppKey[OnConnect] = web.AppKey("on_connect")


def add_routes(app: web.Application, settings: Settings) -> None:
    """The session middleware and /signin, /signin/callback, /signout."""
    key = settings.web.session_key
    if key is None:
        log.warning(
            "HONK_SESSION_KEY is not set: sessions use a key made for this process only "
            "(people sign in again after a restart, and other processes cannot read them)"
        )
        key = Fernet.generate_key().decode()
    secure = bool(settings.web.url and settings.web.url.startswith("https://"))
    sessions = session_middleware(
        RevocableCookieStorage(
            key,
            valid=_session_valid,
            cookie_name=COOKIE,
            max_age=SESSION_DAYS * 86400,
            secure=secure,
            httponly=True,
            samesite="Lax",  # sent on GitHub's redirect back (a top-level GET), not on posts
        )
    )
    machines = (settings.github.webhook_path, "/healthz", "/metrics", "/slack/")

    @web.middleware
    async def people_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Webhooks, Slack and scrapers carry no session: they skip its cost (the hot path).
        if request.path.startswith(machines):
            return await handler(request)
        return await sessions(request, handler)

    app.middlewares.append(people_only)
    app.router.add_get(SIGNIN_PATH, sign_in)
    app.router.add_get(CALLBACK_PATH, callback)
    app.router.add_post(SIGNOUT_PATH, sign_out)


def local_path(value: object, default: str = "/runs") -> str:
    """The path on Honk to send a browser to after sign-in, decided on exactly what the
    Location header will carry; anything else comes back as `default`.

    aiohttp writes a redirect's Location as yarl renders it, and yarl (like a browser) drops
    tabs and line breaks: `/<tab>/evil.example` goes out as `//evil.example`, another site.
    So the value may hold printable ASCII only (no control character, no whitespace, nothing
    a browser strips or rewrites), and both it and its rendering must be a path on Honk: a
    single `/` first, never two, and no backslash anywhere (browsers read `\\` as `/`)."""
    if not isinstance(value, str) or not 0 < len(value) <= NEXT_MAX:
        return default
    if not _path_on_honk(value):
        return default
    try:
        emitted = str(URL(value))
    except ValueError:
        return default
    return emitted if _path_on_honk(emitted) else default


def _path_on_honk(value: str) -> bool:
    if not all("!" <= ch <= "~" for ch in value) or "\\" in value:
        return False  # control characters, whitespace, non-ASCII, backslashes
    if value == "/":
        return True
    return value.startswith("/") and value[1] != "/"


def sign_in_url(request: web.Request) -> str:
    """/signin, remembering the page to come back to."""
    return f"{SIGNIN_PATH}?{urlencode({'next': request.path_qs})}"


def begin_oauth(session: Session, *, back: str | None = None, connect: str | None = None) -> str:
    """A new `state` for GitHub's authorize step, kept in the session with what the flow is
    for: the path to come back to (a sign-in), or the Connect GitHub link. It replaces any
    flow begun before, and any connection waiting for its confirm, so nothing of an
    unfinished one reaches the next callback."""
    state = secrets.token_urlsafe(24)
    for key in (*LEGACY_FLOW, CONNECT_WAITING):
        session.pop(key, None)
    flow: dict[str, str] = {"state": state}
    if connect is not None:
        flow["connect"] = connect
    else:
        flow["next"] = local_path(back)
    session[OAUTH] = flow
    return state


def take_oauth(session: Session) -> Mapping[str, Any]:
    """The flow under way, taken out of the session (a callback uses it once)."""
    for key in LEGACY_FLOW:
        session.pop(key, None)  # an older cookie's flow: never honoured
    flow = session.pop(OAUTH, None)
    return flow if isinstance(flow, dict) else {}


async def sign_in(request: web.Request) -> web.StreamResponse:
    flow = request.app[SIGN_IN]
    if not flow.oauth.configured:
        raise web.HTTPServiceUnavailable(
            text="Sign-in with GitHub is not configured: set GITHUB_CLIENT_ID and "
            "GITHUB_CLIENT_SECRET (Honk's set-up writes them into .env).\n"
        )
    session = await get_session(request)
    state = begin_oauth(session, back=request.query.get("next"))
    raise web.HTTPFound(
        flow.oauth.authorize_url(redirect_uri=flow.callback_url(request), state=state)
    )


async def callback(request: web.Request) -> web.StreamResponse:
    """GitHub sends the person back with a code: trade it, learn who they are, go on."""
    flow = request.app[SIGN_IN]
    session = await get_session(request)
    begun = take_oauth(session)
    expected = begun.get("state")
    state = request.query.get("state", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, state):
        raise web.HTTPBadRequest(text="This sign-in link is unknown or expired: sign in again.\n")
    if request.query.get("error"):
        raise web.HTTPForbidden(text=f"GitHub did not sign you in ({request.query['error']}).\n")
    code = request.query.get("code", "")
    try:
        token = await flow.oauth.exchange(code, redirect_uri=flow.callback_url(request))
        user = await flow.oauth.user(token)
    except (OAuthError, gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("sign-in failed: %s", describe_error(exc))
        raise web.HTTPBadGateway(text="GitHub did not sign you in; try again.\n") from None
    connecting = begun.get("connect")  # a Slack user connecting GitHub, not a sign-in
    if isinstance(connecting, str) and ON_CONNECT in request.app:
        # The token goes to the server-side keeper only: a cookie holding the same single-use
        # refresh token would spend it from under the keeper (or the keeper from under it).
        return await request.app[ON_CONNECT](request, connecting, state, token, user)
    back = local_path(begun.get("next"))
    await flow.end_session(session.get(SID))  # whoever was signed in here before
    fresh = await new_session(request)  # a new session: nothing of the old one carries over
    fresh[SID] = await flow.open_session(str(user["login"]))
    fresh["login"] = str(user["login"])
    fresh["token"] = token.to_dict()
    fresh[CSRF_FIELD] = secrets.token_urlsafe(24)
    log.info("%s signed in", user["login"])
    raise web.HTTPFound(back)


async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session here and in the store (a copy of the cookie ends with it), and
    revoke its user token at GitHub."""
    flow = request.app[SIGN_IN]
    session = await get_session(request)
    form = await request.post()
    if not csrf_ok(session, form.get(CSRF_FIELD)):
        raise web.HTTPForbidden(text="This form has expired; reload the page and try again.\n")
    token = UserToken.from_dict(session.get("token"))
    login = session.get("login")
    await flow.end_session(session.get(SID))
    session.invalidate()
    if token is not None:
        try:
            await flow.oauth.revoke(token)
        except (OAuthError, aiohttp.ClientError, TimeoutError) as exc:
            # Signed out here all the same; the token lapses at GitHub within hours.
            log.warning("could not revoke %s's token at GitHub: %s", login, describe_error(exc))
    log.info("%s signed out", login)
    # A page of its own: /runs would send them straight back through GitHub's sign-in.
    return web.Response(
        text=SIGNED_OUT, content_type="text/html", headers={"Cache-Control": "no-store"}
    )


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use; every POST form carries it."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session[CSRF_FIELD] = token
    return token


def csrf_ok(session: Session, sent: Any) -> bool:
    expected = session.get(CSRF_FIELD)
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and hmac.compare_digest(expected.encode(), sent.encode())
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
