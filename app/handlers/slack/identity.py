"""Who a Slack user is on GitHub: a link they confirmed from GitHub, or their verified e-mail."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import gidgethub
from cachetools import TTLCache
from slack_sdk.web.async_client import AsyncWebClient

from app.github.client import GitHubClient
from app.store import Store
from app.store.kv import Namespace, mapping

# "<team>:<user>" -> {"login", "via", "at"}: a link the Slack user confirmed from GitHub
_LINKS: Namespace[dict[str, Any]] = Namespace("slack_github_login", owner=__name__, decode=mapping)
# "<team>:<user>" -> {"login", "code", "expires"}: a link waiting for its confirming comment
_PENDING: Namespace[dict[str, Any]] = Namespace(
    "slack_link_pending", owner=__name__, decode=mapping
)
LINK_CODE_SECONDS = 30 * 60
# The confirming comment must be this fresh and never edited: anyone with write access may
# edit anyone's comment on GitHub, so an edited or old comment proves nothing of its author.
LINK_COMMENT_SECONDS = 10 * 60
ORG_INDEX_SECONDS = 10 * 60  # how long an org's e-mail -> login index is trusted
USER_LOOKUPS = 8  # concurrent GET /users/{login} while indexing an org


class LinkError(Exception):
    """A link cannot be confirmed; the message is shown to the Slack user."""


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
    via: str = ""  # "link" | "email" | ""
    email: str | None = None


def link_code() -> str:
    return f"honk-link-{secrets.token_hex(5)}"


class Identity:
    """Maps Slack users to GitHub logins; explicit links win over e-mail matches."""

    def __init__(
        self, store: Store, slack: AsyncWebClient, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.slack = slack
        self.clock = clock
        self._org_index: TTLCache[str, dict[str, str]] = TTLCache(
            maxsize=256, ttl=ORG_INDEX_SECONDS, timer=clock
        )
        self._locks: dict[str, asyncio.Lock] = {}

    async def github_login(self, user: SlackUser, gh: GitHubClient, owner: str) -> Who:
        """The user's GitHub login among `owner`'s members (or a confirmed link)."""
        linked = await self.linked(user)
        if linked:
            return Who(linked, "link")
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

    # -- explicit links ---------------------------------------------------------------

    async def linked(self, user: SlackUser) -> str | None:
        record = await _LINKS.get(self.store, user.key)
        return record.get("login") if record else None

    async def unlink(self, user: SlackUser) -> str | None:
        login = await self.linked(user)
        await _LINKS.delete(self.store, user.key)
        return login

    async def start_link(self, user: SlackUser, login: str) -> str:
        """Record a pending link to `login`; returns the one-time code to comment on GitHub."""
        code = link_code()
        await _PENDING.put(
            self.store,
            user.key,
            {"login": login, "code": code, "expires": self.clock() + LINK_CODE_SECONDS},
        )
        return code

    async def confirm_link(self, user: SlackUser, comment: dict[str, Any]) -> str:
        """Link the user to the comment's author if it holds their pending code; the login."""
        pending = await _PENDING.get(self.store, user.key)
        if not pending:
            raise LinkError("there is no link waiting: start with `/honk link <github-login>`")
        if float(pending.get("expires") or 0) < self.clock():
            await _PENDING.delete(self.store, user.key)
            raise LinkError("the code has expired: start again with `/honk link <github-login>`")
        author = str((comment.get("user") or {}).get("login") or "")
        if author.lower() != str(pending["login"]).lower():
            raise LinkError(f"that comment is by `{author}`, not `{pending['login']}`")
        if pending["code"] not in str(comment.get("body") or ""):
            raise LinkError(f"that comment does not contain the code `{pending['code']}`")
        self._check_written_now(comment)
        await _LINKS.put(
            self.store, user.key, {"login": author, "via": "comment", "at": self.clock()}
        )
        await _PENDING.delete(self.store, user.key)
        return author

    def _check_written_now(self, comment: dict[str, Any]) -> None:
        """The comment was written as it is, minutes ago: its author wrote the code."""
        created, updated = comment.get("created_at"), comment.get("updated_at")
        if not created or created != updated:
            raise LinkError(
                "that comment was edited after it was written (anyone with write access can "
                "edit a comment): write the code in a new comment"
            )
        try:
            written = datetime.fromisoformat(str(created)).timestamp()
        except ValueError:
            raise LinkError("GitHub gave that comment no time Honk understands") from None
        if self.clock() - written > LINK_COMMENT_SECONDS:
            raise LinkError(
                f"that comment is older than {LINK_COMMENT_SECONDS // 60} minutes: write the "
                "code in a new comment and confirm right away"
            )
