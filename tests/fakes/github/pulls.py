"""Pull requests and their review comments."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.github.issues import IssuesMixin
from tests.fakes.github.state import (
    JSON_BODY,
    _Answer,
    _git,
    _number,
    _validation_failed,
)


class PullsMixin(IssuesMixin):
    """Pull requests (each one an issue too, as on GitHub) and their review comments."""

    # --- seeding -------------------------------------------------------------------

    def add_pull(
        self,
        repo: str,
        *,
        head: str,
        base: str | None = None,
        title: str = "A pull request",
        body: str = "",
        user: str = "octocat",
        draft: bool = False,
        state: str = "open",
    ) -> dict[str, Any]:
        """A pull request from branch `head` (which must exist, see commit_files)."""
        repo_state = self.repo(repo)
        base = base or repo_state["data"]["default_branch"]
        head_sha = self.branch_sha(repo, head)
        if head_sha is None:
            raise ValueError(f"no branch {head} in {repo}")
        pr = self._new_pull(
            repo_state,
            head,
            base,
            head_sha,
            self.branch_sha(repo, base) or head_sha,
            title,
            body,
            self._user(user),
            draft,
        )
        if state != "open":
            self._set_pull_state(repo_state, pr, state)
        return pr

    def add_review_comment(
        self,
        repo: str,
        number: int,
        body: str,
        user: str = "octocat",
        *,
        path: str = "README.md",
        line: int = 1,
    ) -> dict[str, Any]:
        state = self.repo(repo)
        pr = state["pulls"][number]
        api = state["data"]["url"]
        comment_id = next(self._ids)
        comment = {
            "id": comment_id,
            "node_id": f"PRRC_{comment_id}",
            "url": f"{api}/pulls/comments/{comment_id}",
            "html_url": f"{pr['html_url']}#discussion_r{comment_id}",
            "pull_request_url": pr["url"],
            "pull_request_review_id": next(self._ids),
            "diff_hunk": "@@ -1 +1 @@",
            "path": path,
            "line": line,
            "side": "RIGHT",
            "commit_id": pr["head"]["sha"],
            "original_commit_id": pr["head"]["sha"],
            "in_reply_to_id": None,
            "body": body,
            "user": self._user(user),
            "author_association": "COLLABORATOR",
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        state["review_comments"][comment_id] = comment
        return comment

    # --- building ------------------------------------------------------------------

    def _new_pull(
        self,
        state: dict[str, Any],
        head: str,
        base: str,
        head_sha: str,
        base_sha: str,
        title: str,
        body: str | None,
        user: dict[str, Any],
        draft: bool,
    ) -> dict[str, Any]:
        number = self._next_number(state)
        issue = self._new_issue(state, number, title, body, user, ())
        api = f"{state['data']['url']}/pulls/{number}"
        html = f"{state['data']['html_url']}/pull/{number}"
        issue["pull_request"] = {
            "url": api,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": None,
        }
        state["issues"][number] = issue
        owner = state["data"]["owner"]
        pr = {
            "id": next(self._ids),
            "node_id": f"PR_{state['data']['id']}_{number}",
            "number": number,
            "url": api,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue["url"],
            "comments_url": issue["comments_url"],
            "review_comments_url": f"{api}/comments",
            "statuses_url": f"{state['data']['url']}/statuses/{head_sha}",
            "state": "open",
            "locked": False,
            "draft": bool(draft),
            "title": title,
            "body": body,
            "user": user,
            "labels": [],
            "merged": False,
            "merged_at": None,
            "mergeable": True,
            "maintainer_can_modify": False,
            "author_association": issue["author_association"],
            "head": {
                "label": f"{owner['login']}:{head}",
                "ref": head,
                "sha": head_sha,
                "user": owner,
                "repo": state["data"],
            },
            "base": {
                "label": f"{owner['login']}:{base}",
                "ref": base,
                "sha": base_sha,
                "user": owner,
                "repo": state["data"],
            },
            "created_at": issue["created_at"],
            "updated_at": issue["updated_at"],
            "closed_at": None,
        }
        state["pulls"][number] = pr
        return pr

    async def _refresh_pull(self, state: dict[str, Any], pr: dict[str, Any]) -> dict[str, Any]:
        """A pull request's head sha follows its branch, as pushes move it."""
        if pr["state"] == "open":
            code, out = await _git(
                "--git-dir",
                str(self.bare_path(state["data"]["full_name"])),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{pr['head']['ref']}",
            )
            if code == 0:
                pr["head"]["sha"] = out.decode().strip()
        return pr

    # --- handlers: pull requests ---------------------------------------------------

    async def _list_pulls(self, request: web.Request) -> web.Response:
        state, query = self._state(request), request.query
        wanted = query.get("state", "open")
        pulls = []
        for pr in sorted(state["pulls"].values(), key=lambda p: -p["number"]):
            if wanted != "all" and pr["state"] != wanted:
                continue
            if "head" in query and pr["head"]["label"].lower() != query["head"].lower():
                continue
            if "base" in query and pr["base"]["ref"] != query["base"]:
                continue
            pulls.append(await self._refresh_pull(state, pr))
        return self._page(request, pulls)

    async def _create_pull(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        for key in ("head", "base", "title"):
            if not body.get(key):
                raise _validation_failed(resource="PullRequest", field=key, code="missing_field")
        owner = state["data"]["owner"]["login"]
        head_owner, _, head = body["head"].rpartition(":")
        if head_owner and head_owner.lower() != owner.lower():
            raise _validation_failed(resource="PullRequest", field="head", code="invalid")
        full = state["data"]["full_name"]
        head_sha, base_sha = self.branch_sha(full, head), self.branch_sha(full, body["base"])
        if head_sha is None:
            raise _validation_failed(resource="PullRequest", field="head", code="invalid")
        if base_sha is None:
            raise _validation_failed(resource="PullRequest", field="base", code="invalid")
        for pr in state["pulls"].values():
            if pr["state"] == "open" and pr["head"]["ref"] == head:
                raise _validation_failed(
                    resource="PullRequest",
                    code="custom",
                    message=f"A pull request already exists for {owner}:{head}.",
                )
        code, out = await _git(
            "--git-dir", str(self.bare_path(full)), "rev-list", "--count", f"{base_sha}..{head_sha}"
        )
        if code != 0 or out.strip() == b"0":
            raise _validation_failed(
                resource="PullRequest",
                code="custom",
                message=f"No commits between {body['base']} and {head}",
            )
        pr = self._new_pull(
            state,
            head,
            body["base"],
            head_sha,
            base_sha,
            body["title"],
            body.get("body"),
            self._actor(request),
            body.get("draft", False),
        )
        return web.json_response(pr, status=201)

    async def _get_pull(self, request: web.Request) -> web.Response:
        state = self._state(request)
        pr = state["pulls"].get(_number(request))
        if pr is None:
            raise _Answer(404)
        return web.json_response(await self._refresh_pull(state, pr))

    async def _update_pull(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        pr = state["pulls"].get(_number(request))
        if pr is None:
            raise _Answer(404)
        issue = state["issues"][pr["number"]]
        for key in ("title", "body"):
            if key in body:
                pr[key] = issue[key] = body[key]
        if "base" in body:
            pr["base"]["ref"] = body["base"]
        if "state" in body:
            self._set_pull_state(state, pr, body["state"])
        pr["updated_at"] = issue["updated_at"] = self._now()
        return web.json_response(await self._refresh_pull(state, pr))

    async def _list_review_comments(self, request: web.Request) -> web.Response:
        state = self._state(request)
        pr = state["pulls"].get(_number(request))
        if pr is None:
            raise _Answer(404)
        comments = [
            c for c in state["review_comments"].values() if c["pull_request_url"] == pr["url"]
        ]
        return self._page(request, comments)
