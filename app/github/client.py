"""GitHub REST client: gidgethub over aiohttp, with retries and the calls Honk makes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
from gidgethub import sansio

from app import metrics
from app.config import GITHUB_API_URL
from app.github.pacing import InstallationBudget, Priority, current_priority
from app.models import RepoRef

log = logging.getLogger(__name__)

# Returns the whole Authorization header value ("token ...", "Bearer ..."), asked for
# before every attempt so a long-lived client always sends a fresh credential.
Authorization = Callable[[], Awaitable[str]]
Sleep = Callable[[float], Awaitable[None]]

REQUESTER = "honk"
PER_PAGE = 100
ROLES = ("admin", "maintain", "write", "triage", "read")
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
BACKOFF_BASE = 1.0  # seconds before the first retry of a 5xx; doubles each time
SECONDARY_MIN_WAIT = 60.0  # GitHub: wait at least a minute after a secondary rate limit
RAW = "application/vnd.github.raw"
# Methods safe to send again when the connection broke after the request went out.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's API with GitHub's transient failures retried, and Honk's calls by name."""

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

    # --- collaborators -------------------------------------------------------------

    async def permission(self, repo: str, user: str) -> str:
        """The user's role: admin, maintain, write, triage, read or none."""
        try:
            data = await self.getitem(
                f"{_repo_path(repo)}/collaborators/{_segment(user)}/permission"
            )
        except gidgethub.BadRequest as exc:
            if exc.status_code == HTTPStatus.NOT_FOUND:
                return "none"
            raise
        role = data.get("role_name")
        # Custom roles have their own names; their base permission is the legacy field.
        return role if role in ROLES else data.get("permission") or "none"

    async def can_write(self, repo: str, user: str) -> bool:
        return await self.permission(repo, user) in WRITE_ROLES

    # --- issues and comments -------------------------------------------------------

    async def react(self, url_or_issue_path: str, content: str) -> dict[str, Any]:
        """React to an issue or comment, given its API URL or path."""
        target = url_or_issue_path.rstrip("/")
        if not target.endswith("/reactions"):
            target += "/reactions"
        return cast("dict[str, Any]", await self.post(target, data={"content": content}))

    async def comment(self, repo: str, number: int, body: str) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            await self.post(
                f"{_repo_path(repo)}/issues/{int(number)}/comments", data={"body": body}
            ),
        )

    async def edit_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            await self.patch(
                f"{_repo_path(repo)}/issues/comments/{int(comment_id)}", data={"body": body}
            ),
        )

    async def issue(self, repo: str, number: int) -> dict[str, Any]:
        return cast(
            "dict[str, Any]", await self.getitem(f"{_repo_path(repo)}/issues/{int(number)}")
        )

    async def issue_comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return await self._all(f"{_repo_path(repo)}/issues/{int(number)}/comments")

    async def create_issue(
        self, repo: str, title: str, body: str, labels: Sequence[str] = ()
    ) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            await self.post(
                f"{_repo_path(repo)}/issues",
                data={"title": title, "body": body, "labels": list(labels)},
            ),
        )

    # --- pull requests -------------------------------------------------------------

    async def find_pull(self, repo: str, head_owner: str, branch: str) -> dict[str, Any] | None:
        """The pull request from `head_owner:branch`, open ones first, then the newest."""
        query = urlencode({"head": f"{head_owner}:{branch}", "state": "all"})
        pulls = await self._all(f"{_repo_path(repo)}/pulls?{query}")
        if not pulls:
            return None
        return max(pulls, key=lambda pr: (pr["state"] == "open", pr["number"]))

    async def open_pull(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Open a PR from `head`, or update the open one already there: (pr, created)."""
        owner, _, branch = head.rpartition(":")
        owner = owner or RepoRef.parse(repo).owner
        existing = await self.find_pull(repo, owner, branch)
        if existing is None or existing["state"] != "open":
            try:
                created = await self.post(
                    f"{_repo_path(repo)}/pulls",
                    data={"head": head, "base": base, "title": title, "body": body, "draft": draft},
                )
                return created, True
            except gidgethub.BadRequest as exc:
                # Another run opened it between our look and our post.
                if not _already_exists(exc):
                    raise
                existing = await self.find_pull(repo, owner, branch)
                if existing is None or existing["state"] != "open":
                    raise
        updated = await self.patch(
            f"{_repo_path(repo)}/pulls/{existing['number']}", data={"title": title, "body": body}
        )
        return updated, False

    async def pull(self, repo: str, number: int) -> dict[str, Any]:
        return cast("dict[str, Any]", await self.getitem(f"{_repo_path(repo)}/pulls/{int(number)}"))

    async def review_comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return await self._all(f"{_repo_path(repo)}/pulls/{int(number)}/comments")

    async def pull_files(self, repo: str, number: int, limit: int = 100) -> list[dict[str, Any]]:
        """The PR's files (name, status, additions, deletions): the first `limit` only."""
        url = f"{_repo_path(repo)}/pulls/{int(number)}/files?per_page={min(limit, PER_PAGE)}"
        return list(await self.getitem(url))[:limit]

    async def mark_ready_for_review(self, node_id: str, *, graphql_url: str) -> None:
        """A draft PR ready for review: GraphQL's markPullRequestReadyForReview (REST has none)."""
        await self.graphql(
            "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
            "{ pullRequest { isDraft } } }",
            endpoint=graphql_url,
            id=node_id,
        )

    # --- contents and labels -------------------------------------------------------

    async def file_text(
        self, repo: str, path: str, ref: str | None = None
    ) -> tuple[str, str] | None:
        """(text, blob sha) of a file, or None when there is no such file."""
        url = f"{_repo_path(repo)}/contents/{quote(path.strip('/'), safe='/')}"
        if ref:
            url += "?" + urlencode({"ref": ref})
        try:
            data = await self.getitem(url)
        except gidgethub.BadRequest as exc:
            if exc.status_code == HTTPStatus.NOT_FOUND:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        if data.get("encoding") == "base64":
            text = base64.b64decode(data.get("content") or "").decode("utf-8", "replace")
        else:
            # Files over 1 MB come without content; the raw media type has them.
            raw = await self.getitem(url, accept=RAW)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        return text, data["sha"]

    async def ensure_label(self, repo: str, name: str, color: str, description: str) -> bool:
        """Create the label unless it exists (an existing one is left alone): True if created."""
        try:
            await self.getitem(f"{_repo_path(repo)}/labels/{_segment(name)}")
            return False
        except gidgethub.BadRequest as exc:
            if exc.status_code != HTTPStatus.NOT_FOUND:
                raise
        try:
            await self.post(
                f"{_repo_path(repo)}/labels",
                data={"name": name, "color": color.lstrip("#"), "description": description},
            )
        except gidgethub.BadRequest as exc:
            errors = getattr(exc, "errors", None) or []
            if any(isinstance(e, Mapping) and e.get("code") == "already_exists" for e in errors):
                return False
            raise
        return True

    # --- checks and CI -------------------------------------------------------------

    async def create_check_run(self, repo: str, **fields: Any) -> dict[str, Any]:
        return cast(
            "dict[str, Any]", await self.post(f"{_repo_path(repo)}/check-runs", data=fields)
        )

    async def update_check_run(self, repo: str, check_run_id: int, **fields: Any) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            await self.patch(f"{_repo_path(repo)}/check-runs/{int(check_run_id)}", data=fields),
        )

    async def check_runs(self, repo: str, ref: str) -> list[dict[str, Any]]:
        return await self._all(
            f"{_repo_path(repo)}/commits/{_segment(ref)}/check-runs", key="check_runs"
        )

    async def check_suites(self, repo: str, ref: str) -> list[dict[str, Any]]:
        return await self._all(
            f"{_repo_path(repo)}/commits/{_segment(ref)}/check-suites", key="check_suites"
        )

    async def combined_status(self, repo: str, ref: str) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            await self.getitem(f"{_repo_path(repo)}/commits/{_segment(ref)}/status"),
        )

    async def workflow_jobs(self, repo: str, run_id: int) -> list[dict[str, Any]]:
        return await self._all(f"{_repo_path(repo)}/actions/runs/{int(run_id)}/jobs", key="jobs")

    async def job_logs(self, repo: str, job_id: int) -> str:
        """A job's log text; aiohttp follows GitHub's redirect to the log storage."""
        data = await self.getitem(f"{_repo_path(repo)}/actions/jobs/{int(job_id)}/logs")
        if isinstance(data, bytes):
            return data.decode("utf-8", "replace")
        return data if isinstance(data, str) else ""

    async def artifacts(self, repo: str, run_id: int) -> list[dict[str, Any]]:
        return await self._all(
            f"{_repo_path(repo)}/actions/runs/{int(run_id)}/artifacts", key="artifacts"
        )

    # --- installation --------------------------------------------------------------

    async def installation_repositories(self) -> list[dict[str, Any]]:
        return await self._all("/installation/repositories", key="repositories")

    async def _all(self, url: str, key: str | None = None) -> list[dict[str, Any]]:
        """Every item of a paginated list, a hundred per request."""
        url += ("&" if "?" in url else "?") + f"per_page={PER_PAGE}"
        if key is None:
            return [item async for item in self.getiter(url)]
        return [item async for item in self.getiter(url, iterable_key=key)]


async def convert_manifest(
    session: aiohttp.ClientSession, api_url: str, code: str
) -> dict[str, Any]:
    """Trade a manifest flow's code for the new App's id, key and secrets (no auth needed)."""
    client = GitHubClient(session, base_url=api_url)
    return cast(
        "dict[str, Any]",
        await client.post(f"/app-manifests/{_segment(code)}/conversions", data=b""),
    )


def _already_exists(exc: gidgethub.BadRequest) -> bool:
    return exc.status_code == HTTPStatus.UNPROCESSABLE_ENTITY and "already exists" in str(exc)


def _repo_path(repo: str) -> str:
    ref = RepoRef.parse(repo)
    return f"/repos/{_segment(ref.owner)}/{_segment(ref.name)}"


def _segment(value: str) -> str:
    return quote(value, safe="")


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
