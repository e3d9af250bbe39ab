"""People's own GitHub connections, made from Slack: who a Slack user is on GitHub, and the
user token that acts as them (merging, approving as themselves).

The App's user authorization (app/github/oauth.py) gives a user token (8 hours) and a
refresh token (6 months, single-use). Both are kept server-side, encrypted with Fernet
(HONK_TOKEN_KEY, else HONK_SESSION_KEY): the store holds ciphertext only. A token near its
expiry is refreshed before it is used, and the new pair replaces the old one only if no other
process refreshed first (compare-and-set). A connection GitHub no longer honours (refresh
refused, authorization revoked) is forgotten: the person connects again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from app.config import WebSettings
from app.github.client import GitHubClient
from app.github.oauth import GitHubOAuth, OAuthError, UserToken
from app.log import describe_error
from app.store import Store
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)

CONNECT_SECONDS = 15 * 60  # a "Connect GitHub" link works this long, once
CONFIRM_SECONDS = 10 * 60  # after GitHub's sign-in, the person confirms within this
PRUNE_ONE_IN = 20  # one new link in this many forgets the links left over

# nonce -> {"slack_user", "user_id", "channel", "thread_ts", "expires"}: a connection being made;
# + "state" (digest of the OAuth state made for it) once its browser went on to GitHub;
# + "login", "github_id", "token" (sealed), "confirm" (digest) once GitHub signed them in.
_PENDING: Namespace[dict[str, Any]] = Namespace(
    "github_connect_pending", owner=__name__, decode=mapping
)


@dataclass(frozen=True)
class Connection:
    """A Slack user's GitHub account and the token that speaks for them."""

    slack_user: str  # "<team>:<user>"
    login: str
    github_id: int | None
    token: UserToken


@dataclass(frozen=True)
class PendingConnect:
    """A "Connect GitHub" link handed to a Slack user: who, and the thread to come back to."""

    nonce: str
    slack_user: str
    user_id: str
    channel: str | None
    thread_ts: str | None
    expires: float
    login: str | None = None  # the GitHub account signed in for it, waiting for a confirm


class GitHubConnections:
    """The one keeper of people's GitHub tokens: encrypt, store, refresh, forget."""

    def __init__(
        self,
        settings: WebSettings,
        store: Store,
        oauth: GitHubOAuth,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = settings.token_key or settings.session_key
        if key is None:
            log.warning(
                "neither HONK_TOKEN_KEY nor HONK_SESSION_KEY is set: GitHub connections made "
                "from Slack are encrypted with a key of this process only (lost on restart)"
            )
            key = Fernet.generate_key().decode()
        self._fernet = Fernet(key.encode())
        self.store = store
        self.oauth = oauth
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def configured(self) -> bool:
        return self.oauth.configured

    # -- connecting -------------------------------------------------------------------

    async def start(
        self, slack_user: str, user_id: str, *, channel: str | None, thread_ts: str | None
    ) -> PendingConnect:
        """A single-use nonce for the "Connect GitHub" link, remembering where to come back."""
        nonce = secrets.token_urlsafe(24)
        pending = PendingConnect(
            nonce, slack_user, user_id, channel, thread_ts, self.clock() + CONNECT_SECONDS
        )
        if secrets.randbelow(PRUNE_ONE_IN) == 0:
            # Every link ends within CONNECT_SECONDS + CONFIRM_SECONDS; one never used again
            # (a token waiting for a confirm, sealed) is not kept beyond that.
            await _PENDING.prune(self.store, timedelta(hours=1))
        await _PENDING.put(
            self.store,
            nonce,
            {
                "slack_user": slack_user,
                "user_id": user_id,
                "channel": channel,
                "thread_ts": thread_ts,
                "expires": pending.expires,
            },
        )
        return pending

    async def pending(self, nonce: str) -> PendingConnect | None:
        """The link's record while it is valid (not taken)."""
        data = await self._record(nonce)
        return _pending_of(nonce, data) if data is not None else None

    async def bind(self, nonce: str, state: str) -> PendingConnect | None:
        """The link's browser goes on to GitHub with this OAuth `state`: only a callback with
        it may finish the connection (a later press of Continue binds the later state)."""
        data = await self._record(nonce)
        if data is None or data.get("login"):
            return None  # gone, or signed in already and waiting for its confirmation
        await _PENDING.put(self.store, nonce, data | {"state": _digest(state)})
        return _pending_of(nonce, data)

    async def authorized(
        self, nonce: str, state: str, token: UserToken, user: dict[str, Any]
    ) -> tuple[PendingConnect, str] | None:
        """GitHub signed the person in for this link with `state`: keep the token (sealed)
        until they confirm which GitHub account goes to which Slack user. The confirmation
        key (for the browser's session only), or None: not this link's state, or gone."""
        data = await self._record(nonce)
        bound = data.get("state") if data is not None else None
        if data is None or data.get("login") or not isinstance(bound, str):
            return None
        if not hmac.compare_digest(bound, _digest(state)):
            return None
        key = secrets.token_urlsafe(24)
        login = str(user["login"])
        github_id = int(user["id"]) if isinstance(user.get("id"), int) else None
        waiting = data | {
            "state": None,
            "login": login,
            "github_id": github_id,
            "token": self._seal(token).decode(),
            "confirm": _digest(key),
            "expires": self.clock() + CONFIRM_SECONDS,
        }
        await _PENDING.put(self.store, nonce, waiting)
        return _pending_of(nonce, waiting), key

    async def confirm(self, nonce: str, key: str) -> tuple[PendingConnect, Connection] | None:
        """The person confirmed: the waiting token becomes the Slack user's connection.
        Single use; None for a wrong key, a link not signed in yet, or one gone."""
        taken = await self._take_waiting(nonce, key)
        if taken is None:
            return None
        pending, token, data = taken
        user = {"login": data["login"], "id": data.get("github_id")}
        return pending, await self.connect(pending.slack_user, token, user)

    async def cancel(self, nonce: str, key: str) -> PendingConnect | None:
        """The person declined: nothing is connected and the waiting token is revoked."""
        taken = await self._take_waiting(nonce, key)
        if taken is None:
            return None
        pending, token, _data = taken
        await self.revoke_quietly(token, "declined")
        return pending

    async def revoke_quietly(self, token: UserToken, why: str) -> None:
        """Revoke a token this keeper will not keep; a failure is logged, not raised."""
        try:
            await self.oauth.revoke(token)
        except Exception as exc:
            log.warning("could not revoke a %s GitHub token: %s", why, describe_error(exc))

    async def _take_waiting(
        self, nonce: str, key: str
    ) -> tuple[PendingConnect, UserToken, dict[str, Any]] | None:
        data = await self._record(nonce)
        expected = data.get("confirm") if data is not None else None
        if data is None or not isinstance(expected, str) or not isinstance(key, str):
            return None
        if not hmac.compare_digest(expected, _digest(key)):
            return None
        await _PENDING.delete(self.store, nonce)
        token = self._open(str(data.get("token") or "").encode())
        if token is None:
            return None
        return _pending_of(nonce, data), token, data

    async def _record(self, nonce: str) -> dict[str, Any] | None:
        data = await _PENDING.get(self.store, nonce) if nonce else None
        if not data:
            return None
        if float(data.get("expires") or 0) < self.clock():
            await _PENDING.delete(self.store, nonce)
            return None
        return data

    async def connect(
        self, slack_user: str, token: UserToken, user: dict[str, Any] | None = None
    ) -> Connection:
        """Keep `token` for `slack_user`; `user` is GitHub's GET /user (asked when not given)."""
        user = user if user is not None else await self.oauth.user(token)
        login = str(user["login"])
        github_id = int(user["id"]) if isinstance(user.get("id"), int) else None
        await self.store.connections.put(
            slack_user, github_login=login, github_id=github_id, secret=self._seal(token)
        )
        log.info("Slack user %s connected GitHub as %s", slack_user, login)
        return Connection(slack_user, login, github_id, token)

    # -- using -------------------------------------------------------------------------

    async def login_of(self, slack_user: str) -> str | None:
        """The connected GitHub login (no token is used or refreshed for this)."""
        stored = await self.store.connections.get(slack_user)
        return stored.github_login if stored is not None else None

    async def connection(self, slack_user: str) -> Connection | None:
        """The connection with a token fit to use now (refreshed when it was about to expire),
        or None: never connected, or GitHub no longer honours it (then it is forgotten)."""
        async with self._locks.setdefault(slack_user, asyncio.Lock()):
            stored = await self.store.connections.get(slack_user)
            if stored is None:
                return None
            token = self._open(stored.secret)
            if token is None:
                log.warning("the GitHub connection of %s cannot be decrypted", slack_user)
                await self.store.connections.delete(slack_user)
                return None
            now = self.clock()
            if token.expired(now):
                if not token.refreshable(now):
                    await self.forget(slack_user, "its refresh token expired")
                    return None
                try:
                    renewed = await self.oauth.refresh(token)
                except OAuthError as exc:
                    await self.forget(slack_user, f"GitHub refused the refresh ({exc.code})")
                    return None
                if not await self.store.connections.swap_secret(
                    slack_user, stored.secret, self._seal(renewed)
                ):
                    # Another process refreshed first; its pair is the one that holds now.
                    again = await self.store.connections.get(slack_user)
                    theirs = self._open(again.secret) if again is not None else None
                    if theirs is None:
                        return None
                    renewed = theirs
                token = renewed
            return Connection(slack_user, stored.github_login, stored.github_id, token)

    async def client(self, slack_user: str) -> tuple[Connection, GitHubClient] | None:
        """A GitHub client acting as the person (their own token), or None if not connected."""
        found = await self.connection(slack_user)
        if found is None:
            return None
        # This keeper refreshes the token itself: the client must not spend the refresh token.
        return found, self.oauth.client(found.token, refresh=False)

    # -- forgetting --------------------------------------------------------------------

    async def forget(self, slack_user: str, why: str = "on request") -> bool:
        gone = await self.store.connections.delete(slack_user)
        if gone:
            log.info("forgot the GitHub connection of %s: %s", slack_user, why)
        return gone

    async def forget_github_user(self, *, github_id: int | None, login: str | None) -> int:
        """The person revoked the App's authorization on GitHub: forget all they connected."""
        count = await self.store.connections.delete_all_of(github_id=github_id, github_login=login)
        log.info(
            "GitHub user %s revoked Honk: %d connection(s) forgotten", login or github_id, count
        )
        return count

    # -- at rest -----------------------------------------------------------------------

    def _seal(self, token: UserToken) -> bytes:
        return self._fernet.encrypt(json.dumps(token.to_dict()).encode())

    def _open(self, secret: bytes) -> UserToken | None:
        try:
            data = json.loads(self._fernet.decrypt(bytes(secret)))
        except (InvalidToken, ValueError):
            return None
        return UserToken.from_dict(data)


def _pending_of(nonce: str, data: dict[str, Any]) -> PendingConnect:
    login = data.get("login")
    return PendingConnect(
        nonce,
        str(data["slack_user"]),
        str(data.get("user_id") or ""),
        data.get("channel"),
        data.get("thread_ts"),
        float(data["expires"]),
        str(login) if login else None,
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
