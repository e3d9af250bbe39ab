"""GitHub's REST calls Honk makes, by name (collaborators, issues and comments, pull
requests, contents and labels, checks and CI, the installation's repositories), on the
retrying, paced client of app/github/retrying.py."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp
import gidgethub

from app.github.retrying import RetryingGitHubAPI
from app.models import RepoRef

PER_PAGE = 100
ROLES = ("admin", "maintain", "write", "triage", "read")
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
RAW = "application/vnd.github.raw"


class GitHubClient(RetryingGitHubAPI):
    """The retrying, paced API (RetryingGitHubAPI) with Honk's calls by name."""

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
