"""GitHub's rate limits on installation tokens, on the fake's clock.

Primary: each installation has `primary_limit` requests an hour per resource (core,
graphql), told in `X-RateLimit-*` headers on every answer; at zero, a 403 "API rate limit
exceeded" until the reset. Secondary: at most `secondary_limits` content-creating requests
(POST, PATCH, PUT, DELETE, GraphQL mutations) a minute and an hour; past either, a 403
"secondary rate limit" with `Retry-After`. Code search (GET /search/code) has a budget of
its own, `code_search_limit` requests a minute (resource `code_search`), spending nothing
of the hour's. Refused requests spend nothing, as on GitHub.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.github.state import (
    DOCS_URL,
    JSON_BODY,
    SECONDARY_RATE_LIMIT,
    TOKEN,
    Call,
    GitHubState,
)

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class PrimaryWindow:
    used: int
    reset: int  # epoch seconds, as GitHub sends it


class RateLimitsMixin(GitHubState):
    primary_limit = 5000
    # (per minute, per hour) content-creating requests per installation; None: unlimited.
    secondary_limits: tuple[int, int] | None = (80, 500)
    secondary_retry_after = 60
    # GitHub's code search: requests a minute per installation (its own resource); None:
    # unlimited.
    code_search_limit: int | None = 10

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._primary_windows: dict[tuple[int, str], PrimaryWindow] = {}
        self._installation_writes: dict[int, list[float]] = {}
        self.rate_limited: list[Call] = []  # the calls refused for a rate limit

    # --- reading -------------------------------------------------------------------

    def installation_writes(self, installation_id: int) -> list[float]:
        """When each content-creating request the installation was allowed arrived."""
        return list(self._installation_writes.get(installation_id, []))

    def busiest_window(self, installation_id: int, seconds: float) -> int:
        """The most content-creating requests in any `seconds` (half-open) of the fake's log."""
        times = sorted(self.installation_writes(installation_id))
        most, start = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def primary_remaining(self, installation_id: int, resource: str = "core") -> int:
        window = self._primary_windows.get((installation_id, resource))
        if window is None or window.reset <= self.clock():
            return self._limit(resource)
        return self._limit(resource) - window.used

    def primary_reset(self, installation_id: int, resource: str = "core") -> int:
        """When the installation's hour ends (epoch seconds), as X-RateLimit-Reset says."""
        return self._primary_window(installation_id, resource).reset

    def set_primary_used(self, installation_id: int, used: int, resource: str = "core") -> None:
        """Seed how much of the installation's hour is spent already."""
        window = self._primary_window(installation_id, resource)
        window.used = used

    # --- for the middleware ----------------------------------------------------------

    def _spend(self, request: web.Request) -> tuple[web.Response | None, dict[str, str]]:
        """A refusal if the request is over a limit (else None), and the headers to send."""
        issued = request.get(TOKEN)
        if issued is None:  # not an installation token: the App's JWT, a user, public
            return None, {}
        installation_id = issued.installation_id
        resource = _resource(request.path)
        if resource == "code_search" and self.code_search_limit is None:
            return None, {}
        window = self._primary_window(installation_id, resource)
        if window.used >= self._limit(resource):
            headers = self._primary_headers(window, resource)
            message = f"API rate limit exceeded for installation ID {installation_id}."
            return self._refused(message, headers), headers
        if self._content_creating(request) and self.secondary_limits is not None:
            writes = self._installation_writes.setdefault(installation_id, [])
            now = self.clock()
            per_minute, per_hour = self.secondary_limits
            in_minute = sum(1 for at in writes if at > now - 60)
            in_hour = sum(1 for at in writes if at > now - 3600)
            if in_minute >= per_minute or in_hour >= per_hour:
                headers = self._primary_headers(window, resource)
                headers["Retry-After"] = str(self.secondary_retry_after)
                return self._refused(SECONDARY_RATE_LIMIT, headers), headers
            writes.append(now)
        window.used += 1
        return None, self._primary_headers(window, resource)

    def _limit(self, resource: str) -> int:
        if resource == "code_search" and self.code_search_limit is not None:
            return self.code_search_limit
        return self.primary_limit

    def _primary_window(self, installation_id: int, resource: str) -> PrimaryWindow:
        window = self._primary_windows.get((installation_id, resource))
        if window is None or window.reset <= self.clock():
            length = 60 if resource == "code_search" else 3600
            window = PrimaryWindow(used=0, reset=int(self.clock()) + length)
            self._primary_windows[(installation_id, resource)] = window
        return window

    def _primary_headers(self, window: PrimaryWindow, resource: str) -> dict[str, str]:
        limit = self._limit(resource)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - window.used, 0)),
            "X-RateLimit-Used": str(window.used),
            "X-RateLimit-Reset": str(window.reset),
            "X-RateLimit-Resource": resource,
        }

    def _content_creating(self, request: web.Request) -> bool:
        if request.method not in WRITE_METHODS:
            return False
        if request.path.rstrip("/") == "/graphql":
            query = str((request.get(JSON_BODY) or {}).get("query") or "")
            return query.lstrip().startswith("mutation")
        return True

    def _refused(self, message: str, headers: dict[str, str]) -> web.Response:
        self.rate_limited.append(self.calls[-1])  # the middleware recorded it first
        body = {"message": message, "documentation_url": f"{DOCS_URL}/rate-limit"}
        return web.json_response(body, status=403, headers=headers)


def _resource(path: str) -> str:
    """The budget a request spends, as GitHub's `X-RateLimit-Resource` names it."""
    path = path.rstrip("/")
    if path == "/graphql":
        return "graphql"
    if path == "/search/code":
        return "code_search"
    return "core"
