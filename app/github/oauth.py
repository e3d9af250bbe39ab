"""Signing people in with GitHub: the App's user authorization (OAuth web flow).

Reusable by anything that acts as a person: exchange a code, refresh an expiring user token
(8 hours; its refresh token lasts 6 months and is single-use), revoke one, and a per-user
GitHubClient that refreshes as it goes. Tokens are registered with the log redactor as they arrive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp

from app.config import GitHubSettings
from app.github.client import GitHubClient
from app.log import redact

AUTHORIZE_PATH = "/login/oauth/authorize"
TOKEN_PATH = "/login/oauth/access_token"
REFRESH_MARGIN = 300.0  # seconds: a user token this close to expiry is refreshed first
REVOKE_TIMEOUT = 10.0  # seconds: signing out waits this long at most for GitHub

OnRefresh = Callable[["UserToken"], Awaitable[None]]


class OAuthError(Exception):
    """GitHub refused: `code` is its error (bad_verification_code, bad_refresh_token, ...)."""

    def __init__(self, code: str, description: str = "") -> None:
        detail = f": {description}" if description else ""
        super().__init__(f"GitHub refused the sign-in ({code}){detail}")
        self.code = code


@dataclass(frozen=True)
class UserToken:
    """A user access token, when it expires, and the refresh token that renews it."""

    access_token: str = field(repr=False)
    expires_at: float | None = None  # epoch seconds; None: it does not expire
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None

    def expired(self, now: float, margin: float = REFRESH_MARGIN) -> bool:
        return self.expires_at is not None and self.expires_at - margin <= now

    def refreshable(self, now: float) -> bool:
        return bool(self.refresh_token) and (
            self.refresh_expires_at is None or self.refresh_expires_at > now
        )

    def to_dict(self) -> dict[str, Any]:
        """For a store that encrypts it (the session cookie); never for logs."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "refresh_expires_at": self.refresh_expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> UserToken | None:
        if not data or not isinstance(data.get("access_token"), str):
            return None
        token = cls(
            access_token=data["access_token"],
            expires_at=_number(data.get("expires_at")),
            refresh_token=data.get("refresh_token") or None,
            refresh_expires_at=_number(data.get("refresh_expires_at")),
        )
        redact.add(token.access_token, token.refresh_token)
        return token


class GitHubOAuth:
    """The App's OAuth client (GITHUB_CLIENT_ID/SECRET) on GITHUB_URL, GHES too."""

    def __init__(
        self,
        settings: GitHubSettings,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._session = session
        self._clock = clock

    @property
    def configured(self) -> bool:
        return self._settings.sign_in_configured

    def now(self) -> float:
        return self._clock()

    def authorize_url(self, *, redirect_uri: str, state: str) -> str:
        """Where to send the browser: GitHub asks the person, then redirects back with a code."""
        query = {
            "client_id": self._settings.client_id or "",
            "redirect_uri": redirect_uri,
            "state": state,
            "allow_signup": "false",
        }
        return f"{self._settings.url}{AUTHORIZE_PATH}?{urlencode(query)}"

    async def exchange(self, code: str, *, redirect_uri: str) -> UserToken:
        """Trade the callback's code (single-use, ten minutes) for the person's token."""
        return await self._token({"code": code, "redirect_uri": redirect_uri})

    async def refresh(self, token: UserToken) -> UserToken:
        """A new token pair; the old refresh token stops working."""
        if not token.refresh_token:
            raise OAuthError("bad_refresh_token", "this token has no refresh token")
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": token.refresh_token}
        )

    async def fresh(self, token: UserToken) -> UserToken:
        """`token`, or a refreshed one when it is (nearly) expired and can be refreshed."""
        now = self._clock()
        if token.expired(now) and token.refreshable(now):
            return await self.refresh(token)
        return token

    def client(
        self,
        token: UserToken | str,
        *,
        on_refresh: OnRefresh | None = None,
        refresh: bool = True,
    ) -> GitHubClient:
        """A GitHubClient acting as the person; it refreshes an expiring token before a call
        and hands the new one to `on_refresh`, so its keeper stores it (the old refresh token
        is spent). refresh=False for a token whose keeper refreshes it itself."""
        current = token if isinstance(token, UserToken) else UserToken(token)
        redact.add(current.access_token)

        async def authorization() -> str:
            nonlocal current
            renewed = await self.fresh(current) if refresh else current
            if renewed is not current:
                current = renewed
                if on_refresh is not None:
                    await on_refresh(renewed)
            return f"Bearer {current.access_token}"

        return GitHubClient(
            self._session,
            base_url=self._settings.api_url,
            authorization=authorization,
            max_retries=2,
        )

    async def user(self, token: UserToken | str) -> dict[str, Any]:
        """GET /user: who the token belongs to (the token as it is, never refreshed here)."""
        return cast("dict[str, Any]", await self.client(token, refresh=False).getitem("/user"))

    async def revoke(self, token: UserToken | str) -> bool:
        """DELETE /applications/{client_id}/token (Basic auth with the App's client id and
        secret): the user token stops working at GitHub. True when GitHub revoked it now,
        False when it did not know it (revoked already, expired, another App's); OAuthError
        for any other answer."""
        settings = self._settings
        if not settings.client_id or not settings.client_secret:
            raise OAuthError("not_configured", "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET")
        access = token.access_token if isinstance(token, UserToken) else token
        url = f"{settings.api_url}/applications/{quote(settings.client_id)}/token"
        async with self._session.delete(
            url,
            json={"access_token": access},
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": aiohttp.encode_basic_auth(
                    settings.client_id, settings.client_secret
                ),
            },
            timeout=aiohttp.ClientTimeout(total=REVOKE_TIMEOUT),
        ) as response:
            status = response.status
        if status == 204:
            return True
        if status in (404, 422):
            return False
        raise OAuthError(f"http_{status}", "GitHub did not revoke the token")

    async def _token(self, params: dict[str, str]) -> UserToken:
        settings = self._settings
        if not settings.client_id or not settings.client_secret:
            raise OAuthError("not_configured", "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET")
        form = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            **params,
        }
        now = self._clock()
        async with self._session.post(
            f"{settings.url}{TOKEN_PATH}",
            data=form,
            headers={"Accept": "application/json"},
        ) as response:
            body = await response.text()
            content_type = response.content_type
            status = response.status
        answer = parse_token_answer(body, content_type)
        if answer.get("error"):
            raise OAuthError(str(answer["error"]), str(answer.get("error_description") or ""))
        if status != 200 or not answer.get("access_token"):
            raise OAuthError(f"http_{status}", "GitHub's answer has no access token")
        token = UserToken(
            access_token=str(answer["access_token"]),
            expires_at=_after(now, answer.get("expires_in")),
            refresh_token=str(answer["refresh_token"]) if answer.get("refresh_token") else None,
            refresh_expires_at=_after(now, answer.get("refresh_token_expires_in")),
        )
        redact.add(token.access_token, token.refresh_token)
        return token


def parse_token_answer(body: str, content_type: str) -> dict[str, Any]:
    """GitHub's token answer: JSON when asked for it, form-encoded otherwise (HTTP 200 both)."""
    if "json" in content_type or body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            return {"error": "bad_answer", "error_description": "not JSON"}
        return data if isinstance(data, dict) else {"error": "bad_answer"}
    return dict(parse_qsl(body, keep_blank_values=True))


def _after(now: float, seconds: Any) -> float | None:
    try:
        return now + float(seconds) if seconds not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
