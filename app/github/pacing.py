"""GitHub's limits kept per installation, before GitHub has to say no.

GitHub allows an installation about 80 content-creating requests a minute and 500 an hour
(its secondary limits) and 5,000 requests an hour (its primary limit). Every request an
installation client makes passes through that installation's `InstallationBudget`:

- Content-creating requests (POST, PATCH, PUT, DELETE; GraphQL mutations) are admitted
  only while the last minute and the last hour hold fewer than the pacer's limits. A write
  holds its place from the moment it is admitted until a window's length after its answer,
  so however long it is in flight, any minute of GitHub's arrivals holds no more than the
  limit.
- Each priority sees a ceiling below the limit: bulk work (labels in every repository of a
  new installation, a fleet) stops at `1 - reserved` of each window, an ordinary run's
  writes at `1 - reserved / 2`, and a person's request being answered (the reaction, the
  tracking comment, a reply) may use the whole window. So bulk work never starves the
  others, and a newly labelled issue starts at once even while runs are writing.
- The primary budget is read from every answer (`X-RateLimit-Remaining`, `-Reset`) and
  counted down as requests go out; below `primary_reserve` of the limit, bulk requests wait
  for the reset. At zero, every request does.
- When GitHub answers with `Retry-After`, a secondary-limit message or an exhausted
  primary budget, the client hands the wait to the budget (`hold`): every task of that
  installation waits it out, not only the one that was told.

The budget is per process: with several processes, `PacingLimits.from_settings` gives each
its share (`HONK_PROCESSES`). Clock and sleep are injected, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

import gidgethub
from gidgethub import sansio

from app import metrics
from app.config import GitHubSettings

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

MINUTE = 60.0
HOUR = 3600.0
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class Priority(IntEnum):
    """Whose writes still find room when an installation's budget runs short: each
    priority's ceiling (`PacingLimits.ceiling`) leaves the ones above it a share."""

    URGENT = 0  # a person's request answered: the reaction, the tracking comment, a reply
    NORMAL = 1  # an ordinary run's writes, CI's reports
    BULK = 2  # work in bulk (labels across an installation, a fleet): never starves the rest


_PRIORITY: ContextVar[Priority] = ContextVar("honk_github_priority", default=Priority.NORMAL)


def current_priority() -> Priority:
    return _PRIORITY.get()


@contextlib.contextmanager
def writes_at(priority: Priority) -> Iterator[None]:
    """GitHub requests made in this block (and tasks it starts) go at `priority`."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


@dataclass(frozen=True)
class PacingLimits:
    """One process's share of an installation's budget; the defaults are the settings'
    (app/config/github.py, GitHubSettings) for one process."""

    per_minute: float = GitHubSettings.writes_per_minute
    per_hour: float = GitHubSettings.writes_per_hour
    # Of each window, kept from bulk work (half of it from runs).
    reserved: float = GitHubSettings.writes_reserved
    # Of the primary limit, never spent by bulk work.
    primary_reserve: float = GitHubSettings.primary_reserve

    @classmethod
    def from_settings(cls, github: GitHubSettings) -> PacingLimits:
        processes = max(github.processes, 1)
        return cls(
            per_minute=github.writes_per_minute / processes,
            per_hour=github.writes_per_hour / processes,
            reserved=github.writes_reserved,
            primary_reserve=github.primary_reserve,
        )

    def ceiling(self, priority: Priority, limit: float) -> int:
        """How many writes a window may hold when one of `priority` asks for another."""
        share = {
            Priority.URGENT: 1.0,
            Priority.NORMAL: 1.0 - self.reserved / 2,
            Priority.BULK: 1.0 - self.reserved,
        }[priority]
        return max(1, math.floor(limit * share + 1e-9))


def is_content_creating(method: str, url: str, body: bytes = b"") -> bool:
    """Whether GitHub counts the request against its secondary write limits."""
    if method.upper() not in WRITE_METHODS:
        return False
    if urlsplit(url).path.rstrip("/").endswith("/graphql"):
        return _is_mutation(body)
    return True


def _is_mutation(body: bytes) -> bool:
    try:
        query = json.loads(body or b"{}").get("query", "")
    except (ValueError, AttributeError):
        return True  # unreadable: count it, to be safe
    return isinstance(query, str) and query.lstrip().startswith("mutation")


def _resource(url: str) -> str:
    """The primary budget a request spends (GitHub's `X-RateLimit-Resource`)."""
    path = urlsplit(url).path
    if path.rstrip("/").endswith("/graphql"):
        return "graphql"
    if "/search/" in path:
        return "search"
    return "core"


@dataclass
class _Primary:
    """What GitHub last said of one primary budget, counted down as requests go out."""

    limit: int
    remaining: int
    reset: float


class InstallationBudget:
    """One installation's writes and primary budget, as this process sees them."""

    def __init__(self, installation_id: int, limits: PacingLimits, clock: Clock, sleep: Sleep):
        self.installation_id = installation_id
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        # When each write's answer came (or now, for those in flight), oldest first.
        self._minute: deque[float] = deque()
        self._hour: deque[float] = deque()
        self._in_flight = 0
        self._held_until = 0.0
        self._held_why = ""
        self._primary: dict[str, _Primary] = {}
        # While a budget is unknown, bulk work sends one request to learn it, then the rest;
        # unmetered: budgets an answer did not tell (GitHub Enterprise without rate limits).
        self._probes: dict[str, asyncio.Event] = {}
        self._unmetered: set[str] = set()
        self._last_bulk_write = -math.inf

    # --- what the client calls -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        priority: Priority | None = None,
        max_hold: float | None = None,
    ) -> AsyncIterator[None]:
        """Wait until the request may go, then hold its place while it is in flight.

        The pacer's own waits (the minute's and the hour's windows) are waited out. A wait
        for GitHub's say-so (`hold`, a spent primary budget) or, for bulk work, for the
        primary reset, longer than `max_hold` raises `gidgethub.RateLimitExceeded` at
        once, as GitHub's own refusal would (a delivery is tried again later, a run says
        why); None waits it out.
        """
        priority = current_priority() if priority is None else priority
        write = is_content_creating(method, url, body)
        resource = _resource(url)
        probe = await self._admit(write, resource, priority, max_hold)
        if write:
            self._in_flight += 1
        try:
            yield
        finally:
            if write:
                self._in_flight -= 1
                answered = self._clock()
                self._minute.append(answered)
                self._hour.append(answered)
            if probe is not None:
                # The client has told the answer's budget (`observe`), if the answer had one.
                del self._probes[resource]
                probe.set()
                if resource not in self._primary:
                    self._unmetered.add(resource)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take the primary budget from an answer's `X-RateLimit-*` headers (within
        `request`'s block, so a probe's answer is known when it ends)."""
        try:
            limit = int(headers["x-ratelimit-limit"])
            remaining = int(headers["x-ratelimit-remaining"])
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return
        resource = headers.get("x-ratelimit-resource") or "core"
        known = self._primary.get(resource)
        self._unmetered.discard(resource)
        if known is None or known.reset != reset:
            self._primary[resource] = _Primary(limit, remaining, reset)
        else:
            # Answers arrive out of order: a late one must not give back what was spent since.
            known.limit, known.remaining = limit, min(known.remaining, remaining)

    def hold(self, seconds: float, why: str) -> None:
        """GitHub asked this installation to wait: every request of it waits too."""
        until = self._clock() + seconds
        if until > self._held_until:
            self._held_until, self._held_why = until, why
            log.warning(
                "GitHub installation %s: every request waits %.0f s (%s)",
                self.installation_id,
                seconds,
                why,
            )

    # --- admission ---------------------------------------------------------------------

    async def _admit(
        self, write: bool, resource: str, priority: Priority, max_hold: float | None
    ) -> asyncio.Event | None:
        """Wait for the request's turn; the probe it is, if it goes to learn the budget."""
        started = self._clock()
        probe = None
        while True:
            now = self._clock()
            wait, bounded = self._wait(write, resource, priority, now)
            if wait <= 0:
                if priority is not Priority.BULK or resource in self._primary:
                    break
                if resource in self._unmetered:
                    break
                if (running := self._probes.get(resource)) is not None:
                    await running.wait()
                    continue
                probe = self._probes[resource] = asyncio.Event()
                break
            if bounded and max_hold is not None and wait > max_hold:
                raise gidgethub.RateLimitExceeded(
                    sansio.RateLimit(limit=0, remaining=0, reset_epoch=now + wait),
                    f"rate limit: installation {self.installation_id} must wait {wait:.0f} s "
                    f"({self._why(resource, now)}), more than the {max_hold:.0f} s allowed",
                )
            await self._sleep(wait)
        now = self._clock()
        if (primary := self._primary.get(resource)) is not None:
            primary.remaining -= 1
        if write:
            metrics.github_writes.labels(priority.name.lower()).inc()
            if priority is Priority.BULK:
                self._last_bulk_write = now
        if now > started:
            metrics.github_paced_seconds.labels(priority.name.lower()).observe(now - started)
        return probe

    def _wait(
        self, write: bool, resource: str, priority: Priority, now: float
    ) -> tuple[float, bool]:
        """Seconds before the request may go, and whether `max_hold` bounds the wait (a
        wait on GitHub's reset or its say-so, not the pacer's own windows)."""
        if self._held_until > now:
            return self._held_until - now, True
        primary = self._primary.get(resource)
        if primary is not None:
            if now >= primary.reset:  # a new hour: full until an answer says otherwise
                primary.remaining, primary.reset = primary.limit, now + HOUR
            until_reset = primary.reset - now + 1.0  # resets are whole seconds
            if primary.remaining <= 0:
                return until_reset, True
            if (
                priority is Priority.BULK
                and primary.remaining - 1 < primary.limit * self.limits.primary_reserve
            ):
                return until_reset, True
        if not write:
            return 0.0, False
        wait = max(
            self._window_wait(self._minute, MINUTE, self.limits.per_minute, priority, now),
            self._window_wait(self._hour, HOUR, self.limits.per_hour, priority, now),
        )
        if priority is Priority.BULK:
            # GitHub asks for a pause of about a second between writes made in bulk.
            spacing = MINUTE / self.limits.per_minute
            wait = max(wait, self._last_bulk_write + spacing - now)
        return wait, False

    def _window_wait(
        self, answered: deque[float], length: float, limit: float, priority: Priority, now: float
    ) -> float:
        while answered and answered[0] <= now - length:
            answered.popleft()
        excess = len(answered) + self._in_flight - self.limits.ceiling(priority, limit) + 1
        if excess <= 0:
            return 0.0
        if excess > len(answered):
            # Those in flight are in the way: none leaves the window before a length after
            # its answer, so nothing frees within this length of time.
            return length
        return answered[excess - 1] + length - now

    def _why(self, resource: str, now: float) -> str:
        if self._held_until > now:
            return self._held_why
        primary = self._primary.get(resource)
        if primary is not None and primary.remaining > 0:
            return f"bulk work leaves the last of the {resource} rate limit until its reset"
        return f"the {resource} rate limit is spent until its reset"


class WritePacer:
    """Per process: each installation's budget, made on first use."""

    def __init__(
        self,
        limits: PacingLimits,
        *,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep: Sleep = sleep or asyncio.sleep
        self._budgets: dict[int, InstallationBudget] = {}

    def budget(self, installation_id: int) -> InstallationBudget:
        installation_id = int(installation_id)
        if (found := self._budgets.get(installation_id)) is None:
            found = InstallationBudget(installation_id, self.limits, self._clock, self._sleep)
            self._budgets[installation_id] = found
        return found
