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
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from app.config import Settings
from app.github.client import GitHubClient
from app.github.oauth import GitHubOAuth, OAuthError, UserToken
from app.store import Store
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)

CONNECT_SECONDS = 15 * 60  # a "Connect GitHub" link works this long, once

# nonce -> {"slack_user", "user_id", "channel", "thread_ts", "expires"}: a connection being made
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


class GitHubConnections:
    """The one keeper of people's GitHub tokens: encrypt, store, refresh, forget."""

    def __init__(
        self,
        settings: Settings,
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
        data = await _PENDING.get(self.store, nonce) if nonce else None
        if not data:
            return None
        if float(data.get("expires") or 0) < self.clock():
            await _PENDING.delete(self.store, nonce)
            return None
        return PendingConnect(
            nonce,
            str(data["slack_user"]),
            str(data.get("user_id") or ""),
            data.get("channel"),
            data.get("thread_ts"),
            float(data["expires"]),
        )

    async def take(self, nonce: str) -> PendingConnect | None:
        """The link's record, used up: a second callback with the same link connects no one."""
        found = await self.pending(nonce)
        if found is not None:
            await _PENDING.delete(self.store, nonce)
        return found

    async def connect(
        self, slack_user: str, token: UserToken, user: dict[str, Any] | None = None
    ) -> Connection:
        """Keep `token` for `slack_user`; `user` is GitHub's GET /user (asked when not given)."""
        user = user if user is not None else await self.oauth.user(token)
        login = str(user["login"])
        github_id = int(user["id"]) if isinstance(user.get("id"), int) else None
        await self.store.put_connection(
            slack_user, github_login=login, github_id=github_id, secret=self._seal(token)
        )
        log.info("Slack user %s connected GitHub as %s", slack_user, login)
        return Connection(slack_user, login, github_id, token)

    # -- using -------------------------------------------------------------------------

    async def login_of(self, slack_user: str) -> str | None:
        """The connected GitHub login (no token is used or refreshed for this)."""
        stored = await self.store.get_connection(slack_user)
        return stored.github_login if stored is not None else None

    async def connection(self, slack_user: str) -> Connection | None:
        """The connection with a token fit to use now (refreshed when it was about to expire),
        or None: never connected, or GitHub no longer honours it (then it is forgotten)."""
        async with self._locks.setdefault(slack_user, asyncio.Lock()):
            stored = await self.store.get_connection(slack_user)
            if stored is None:
                return None
            token = self._open(stored.secret)
            if token is None:
                log.warning("the GitHub connection of %s cannot be decrypted", slack_user)
                await self.store.delete_connection(slack_user)
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
                if not await self.store.swap_connection_secret(
                    slack_user, stored.secret, self._seal(renewed)
                ):
                    # Another process refreshed first; its pair is the one that holds now.
                    again = await self.store.get_connection(slack_user)
                    renewed = self._open(again.secret) if again is not None else None
                    if renewed is None:
                        return None
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
        gone = await self.store.delete_connection(slack_user)
        if gone:
            log.info("forgot the GitHub connection of %s: %s", slack_user, why)
        return gone

    async def forget_github_user(self, *, github_id: int | None, login: str | None) -> int:
        """The person revoked the App's authorization on GitHub: forget all they connected."""
        count = await self.store.delete_connections_of(github_id=github_id, github_login=login)
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
