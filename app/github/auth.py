"""GitHub App authentication: the App JWT, and scoped installation tokens renewed before expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jwt as pyjwt
from cachetools import TLRUCache

from app.config import ConfigError, GitHubSettings
from app.github.client import GitHubClient
from app.github.pacing import InstallationBudget, PacingLimits, Priority, WritePacer
from app.github.retrying import Authorization, Sleep
from app.log import redact

JWT_BACKDATE = 60  # seconds; a host clock running fast is not refused
JWT_LIFETIME = 600  # GitHub's maximum, counted from the backdated issue time
JWT_REUSE_MARGIN = 60  # a JWT is reused while it has more life left than this
TOKEN_RENEW_MARGIN = 10 * 60  # an installation token is renewed this long before it expires

TokenKey = tuple[int, tuple[str, ...] | None, tuple[tuple[str, str], ...] | None]


@dataclass(frozen=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: datetime
    permissions: dict[str, str]
    repositories: tuple[str, ...] | None  # full names; None: every repository installed on


class GitHubApp:
    """One per process: signs JWTs, hands out installation tokens and clients."""

    def __init__(
        self,
        settings: GitHubSettings,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._jwt: tuple[str, int] | None = None
        self._tokens: TLRUCache[TokenKey, InstallationToken] = TLRUCache(
            maxsize=1024, ttu=_renew_at, timer=clock
        )
        self._locks: dict[TokenKey, asyncio.Lock] = {}
        self._app_info: dict[str, Any] | None = None
        self._bot: tuple[str, str] | None = None
        # This process's share of each installation's budget, shared by all its clients.
        self.pacer = WritePacer(PacingLimits.from_settings(settings), clock=clock, sleep=sleep)

    @property
    def settings(self) -> GitHubSettings:
        return self._settings

    def jwt(self) -> str:
        """The App's RS256 JWT, reused while it has more than a minute left."""
        now = int(self._clock())
        if self._jwt is not None and self._jwt[1] - now > JWT_REUSE_MARGIN:
            return self._jwt[0]
        if self._settings.app_id is None or not self._settings.private_key:
            raise ConfigError("APP_ID and PRIVATE_KEY are needed to act as the GitHub App")
        issued_at = now - JWT_BACKDATE
        expires = issued_at + JWT_LIFETIME
        token = pyjwt.encode(
            {"iat": issued_at, "exp": expires, "iss": str(self._settings.app_id)},
            self._settings.private_key,
            algorithm="RS256",
        )
        self._jwt = (token, expires)
        return token

    async def installation_token(
        self,
        installation_id: int,
        *,
        repositories: Sequence[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> InstallationToken:
        """A token for the installation, narrowed to `repositories` and `permissions` if given."""
        key = _token_key(installation_id, repositories, permissions)
        if (cached := self._tokens.get(key)) is not None:
            return cached
        async with self._locks.setdefault(key, asyncio.Lock()):
            if (cached := self._tokens.get(key)) is not None:
                return cached
            body: dict[str, Any] = {}
            if repositories is not None:
                # The API takes bare names: an installation belongs to one account.
                body["repositories"] = [name.rpartition("/")[2] for name in repositories]
            if permissions is not None:
                body["permissions"] = dict(permissions)
            data = await self.app_client().post(
                f"/app/installations/{int(installation_id)}/access_tokens", data=body
            )
            token = _parse_token(data, repositories)
            redact.add(token.token)
            if _renew_at(key, token, self._clock()) > self._clock():
                self._tokens[key] = token
            return token

    def app_client(self) -> GitHubClient:
        """A client authenticated as the App itself (JWT): for /app endpoints."""

        async def bearer() -> str:
            return f"Bearer {self.jwt()}"

        return self._client(bearer)

    async def installation_client(
        self,
        installation_id: int,
        *,
        repositories: Sequence[str] | None = None,
        permissions: Mapping[str, str] | None = None,
        priority: Priority | None = None,
        max_wait: float | None = None,
    ) -> GitHubClient:
        """A client acting as the installation; its token is renewed as the client lives on.

        Its requests are paced with every other client of the installation in this process;
        `priority` is the client's own, else each request's context's (`pacing.writes_at`).
        `max_wait`: the longest wait for GitHub (a `Retry-After`, a reset) before it gives
        up; bulk work that should wait out a reset sets it long.
        """
        # Fetch now so a removed installation fails here, not at the first call.
        await self.installation_token(
            installation_id, repositories=repositories, permissions=permissions
        )

        async def token() -> str:
            current = await self.installation_token(
                installation_id, repositories=repositories, permissions=permissions
            )
            return f"token {current.token}"

        client = self._client(token, self.pacer.budget(installation_id), priority)
        if max_wait is not None:
            client.max_wait = max_wait
        return client

    async def app_info(self) -> dict[str, Any]:
        """GET /app (slug, id, name, html_url ...), fetched once."""
        if self._app_info is None:
            self._app_info = await self.app_client().getitem("/app")
        return self._app_info

    async def bot_identity(self, installation_id: int) -> tuple[str, str]:
        """(login, email) of the App's bot user, for commit authorship; fetched once.

        Read with the installation's token: GitHub Enterprise Server in private mode refuses
        every anonymous API request, even for a public user.
        """
        if self._bot is None:
            login = f"{(await self.app_info())['slug']}[bot]"
            client = await self.installation_client(installation_id)
            user = await client.getitem(f"/users/{quote(login, safe='')}")
            self._bot = (login, self.noreply_email(user["id"], login))
        return self._bot

    def noreply_email(self, user_id: int, login: str) -> str:
        """GitHub's private commit e-mail of a user (github.com, or a GHES host's)."""
        host = urlsplit(self._settings.url).hostname or "github.com"
        return f"{user_id}+{login}@users.noreply.{host}"

    def forget(self, installation_id: int) -> None:
        """Drop the installation's cached tokens (it was uninstalled or suspended)."""
        for key in [k for k in list(self._tokens.keys()) if k[0] == installation_id]:
            self._tokens.pop(key, None)
        for key in [k for k in self._locks if k[0] == installation_id]:
            del self._locks[key]
        # Its pacing budget is kept: clients still alive share it, and so will new ones.

    def _client(
        self,
        authorization: Authorization,
        budget: InstallationBudget | None = None,
        priority: Priority | None = None,
    ) -> GitHubClient:
        return GitHubClient(
            self._session,
            base_url=self._settings.api_url,
            authorization=authorization,
            sleep=self._sleep,
            clock=self._clock,
            budget=budget,
            priority=priority,
        )


def _token_key(
    installation_id: int,
    repositories: Sequence[str] | None,
    permissions: Mapping[str, str] | None,
) -> TokenKey:
    return (
        int(installation_id),
        tuple(sorted(repositories)) if repositories is not None else None,
        tuple(sorted(permissions.items())) if permissions is not None else None,
    )


def _renew_at(key: TokenKey, token: InstallationToken, now: float) -> float:
    return token.expires_at.timestamp() - TOKEN_RENEW_MARGIN


def _parse_token(data: dict[str, Any], requested: Sequence[str] | None) -> InstallationToken:
    repos = data.get("repositories")
    if repos is not None:
        repositories: tuple[str, ...] | None = tuple(r["full_name"] for r in repos)
    else:
        repositories = tuple(requested) if requested is not None else None
    return InstallationToken(
        token=data["token"],
        expires_at=datetime.fromisoformat(data["expires_at"]),
        permissions=dict(data.get("permissions") or {}),
        repositories=repositories,
    )
