"""GitHub's transient failures retried: 5xx and broken connections backed off, the primary
and secondary rate limits waited out (Retry-After, the reset, at least a minute), every
request through its installation's budget (app/github/pacing.py) at its priority, a fresh
credential asked for before each attempt; what no retry is left for raised in plain words."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import sansio

from app import metrics
from app.config import GITHUB_API_URL
from app.github.pacing import InstallationBudget, Priority, current_priority

log = logging.getLogger(__name__)

# Returns the whole Authorization header value ("token ...", "Bearer ..."), asked for
# before every attempt so a long-lived client always sends a fresh credential.
Authorization = Callable[[], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]

REQUESTER = "honk"
BACKOFF_BASE = 1.0  # seconds before the first retry of a 5xx; doubles each time
SECONDARY_MIN_WAIT = 60.0  # GitHub: wait at least a minute after a secondary rate limit
# Methods safe to send again when the connection broke after the request went out.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class RetryingGitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's API with GitHub's transient failures retried and every request paced."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str = GITHUB_API_URL,
        authorization: Authorization | None = None,
        oauth_token: str | None = None,
        max_retries: int = 4,
        max_wait: float = 120.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        budget: InstallationBudget | None = None,
        priority: Priority | None = None,
    ) -> None:
        """`budget`: the installation's pacer (app/github/pacing.py), which every request
        passes; `priority`: this client's, else the context's (`pacing.writes_at`)."""
        super().__init__(session, REQUESTER, oauth_token=oauth_token, base_url=base_url)
        self._authorization = authorization
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self.budget = budget
        self.priority = priority

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        priority = self.priority if self.priority is not None else current_priority()
        attempt = 0
        while True:
            attempt += 1
            sent = dict(headers)
            try:
                async with self._paced(method, url, body, priority):
                    # Asked for after the wait for the budget, so it is fresh when it goes.
                    if self._authorization is not None:
                        sent["authorization"] = await self._authorization()
                    status, answer, data = await super()._request(method, url, sent, body)
                    if self.budget is not None:
                        self.budget.observe(answer)  # the budget GitHub tells, in its place
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                metrics.github_calls.labels(method, type(exc).__name__).inc()
                resendable = method in IDEMPOTENT or isinstance(exc, aiohttp.ClientConnectorError)
                if not resendable or attempt > self.max_retries:
                    raise
                wait, reason = self._backoff(attempt), type(exc).__name__
            else:
                metrics.github_calls.labels(method, str(status)).inc()
                remaining = answer.get("x-ratelimit-remaining")
                if remaining is not None and remaining.isdigit():
                    metrics.github_rate_remaining.set(int(remaining))
                retry_in = self._retry_wait(status, answer, data, attempt)
                if retry_in is None:
                    return status, answer, data
                wait = retry_in
                held = self.budget is not None and status in (403, 429)
                if held and self.budget is not None:
                    # Every task of the installation waits, this one in its next admission.
                    self.budget.hold(wait, f"{status} on {method} {urlsplit(url).path}")
                if attempt > self.max_retries or wait > self.max_wait:
                    _give_up(method, url, status, answer, data, attempt, wait, self.max_wait)
                if held:
                    continue  # the budget's hold is this task's wait too
                reason = str(status)
            log.warning(
                "GitHub %s %s failed (%s); retry %d/%d in %.1f s",
                method,
                urlsplit(url).path,
                reason,
                attempt,
                self.max_retries,
                wait,
            )
            await self.sleep(wait)

    def _paced(
        self, method: str, url: str, body: bytes, priority: Priority
    ) -> contextlib.AbstractAsyncContextManager[None]:
        if self.budget is None:
            return contextlib.nullcontext()
        # Longer than max_wait for GitHub's say-so (or the reserve): raised, as a 403 would.
        return self.budget.request(method, url, body, priority=priority, max_hold=self.max_wait)

    def _backoff(self, attempt: int) -> float:
        return min(BACKOFF_BASE * 2.0 ** (attempt - 1), self.max_wait)

    def _retry_wait(
        self, status: int, headers: Mapping[str, str], body: bytes, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again, or None when the answer is final."""
        if status < 500 and status not in (403, 429):
            return None
        retry_after = _retry_after(headers, self._clock())
        if retry_after is not None:
            return retry_after
        if status >= 500:
            return self._backoff(attempt)
        reset = headers.get("x-ratelimit-reset")
        if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
            # The reset is in whole seconds; one more keeps us from arriving early.
            return max(float(reset) - self._clock(), 0.0) + 1.0
        if status == 429 or "secondary rate limit" in _message(body).lower():
            return max(
                SECONDARY_MIN_WAIT, min(SECONDARY_MIN_WAIT * 2.0 ** (attempt - 1), self.max_wait)
            )
        return None  # a plain 403: permission denied


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Retry-After as seconds: GitHub sends a number, HTTP allows a date too."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError):
        return None


def _give_up(
    method: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    attempt: int,
    wait: float,
    max_wait: float,
) -> None:
    """Raise gidgethub's exception for this answer, saying why no retry is left."""
    why = (
        f"gave up after {attempt} attempts"
        if wait <= max_wait
        else f"GitHub asks to wait {wait:.0f} s, more than the {max_wait:.0f} s allowed"
    )
    try:
        sansio.decipher_response(status, headers, body)
    except gidgethub.HTTPException as exc:
        exc.args = (f"{exc} ({method} {urlsplit(url).path}: {why})",)
        raise
    raise gidgethub.HTTPException(HTTPStatus(status), f"{method} {urlsplit(url).path}: {why}")
