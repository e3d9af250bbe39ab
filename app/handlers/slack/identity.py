"""Who a Slack user is on GitHub: the account they connected (signing in with GitHub from
Slack, app/github/connections.py), else a hint from their verified e-mail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import gidgethub
from cachetools import TTLCache
from slack_sdk.web.async_client import AsyncWebClient

from app.github.client import GitHubClient
from app.github.connections import GitHubConnections
from app.store import Store

ORG_INDEX_SECONDS = 10 * 60  # how long an org's e-mail -> login index is trusted
USER_LOOKUPS = 8  # concurrent GET /users/{login} while indexing an org


@dataclass(frozen=True)
class SlackUser:
    team: str
    id: str

    @property
    def key(self) -> str:
        return f"{self.team}:{self.id}"


@dataclass(frozen=True)
class Who:
    """The answer: a GitHub login (or None), how it was found, and the Slack e-mail seen."""

    login: str | None
    via: str = ""  # "github" (connected) | "email" | ""
    email: str | None = None


class Identity:
    """Maps Slack users to GitHub logins: a connected account wins over an e-mail match.

    Only who someone is comes from here; what they may do on GitHub (merge, approve) is
    decided by GitHub, on their own token.
    """

    def __init__(
        self,
        store: Store,
        slack: AsyncWebClient,
        connections: GitHubConnections | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.slack = slack
        self.connections = connections
        self.clock = clock
        self._org_index: TTLCache[str, dict[str, str]] = TTLCache(
            maxsize=256, ttl=ORG_INDEX_SECONDS, timer=clock
        )
        self._locks: dict[str, asyncio.Lock] = {}

    async def github_login(self, user: SlackUser, gh: GitHubClient, owner: str) -> Who:
        """The user's connected GitHub login, else theirs among `owner`'s members by e-mail."""
        connected = await self.connected(user)
        if connected:
            return Who(connected, "github")
        email = await self.slack_email(user)
        if not email:
            return Who(None)
        index = await self.org_emails(gh, owner)
        return Who(index.get(email.lower()), "email", email)

    async def slack_email(self, user: SlackUser) -> str | None:
        """The e-mail on the Slack profile (needs the users:read.email scope)."""
        answer = await self.slack.users_info(user=user.id)
        profile: dict[str, Any] = (answer.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        return str(email) if email else None

    async def org_emails(self, gh: GitHubClient, owner: str) -> dict[str, str]:
        """E-mail -> login for the org's members, from their public (hence verified) e-mail.

        GitHub only lets a verified address be the profile's public e-mail. For a personal
        account (no /orgs/ endpoint) the index holds the owner alone.
        """
        key = owner.lower()
        if (cached := self._org_index.get(key)) is not None:
            return cached
        async with self._locks.setdefault(key, asyncio.Lock()):
            if (cached := self._org_index.get(key)) is not None:
                return cached
            try:
                logins = [
                    member["login"]
                    async for member in gh.getiter(
                        f"/orgs/{quote(owner, safe='')}/members?per_page=100"
                    )
                ]
            except gidgethub.BadRequest as exc:
                if exc.status_code != HTTPStatus.NOT_FOUND:
                    raise
                logins = [owner]
            limit = asyncio.Semaphore(USER_LOOKUPS)

            async def email_of(login: str) -> tuple[str, str | None]:
                async with limit:
                    user = await gh.getitem(f"/users/{quote(login, safe='')}")
                return user.get("login") or login, user.get("email")

            pairs = await asyncio.gather(*(email_of(login) for login in logins))
            index = {email.lower(): login for login, email in pairs if email}
            self._org_index[key] = index
            return index

    async def connected(self, user: SlackUser) -> str | None:
        """The GitHub login the user connected from Slack, if any."""
        return await self.connections.login_of(user.key) if self.connections else None
