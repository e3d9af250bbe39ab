"""Going live: a pull request's files, its reviews, and merging it into its base for real.

As GitHub does: PUT .../merge needs push access (a user token acts as its user, within their
permission), the merge method must be one the repository allows, a branch that requires
approving reviews refuses with GitHub's own words until enough writers approved the head
commit, and a moved head is a 409. The merge is a real commit in the bare repository (a merge
commit, a squash, or the commits rebased), and the base branch moves to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.fakes.github.oauth import USER_GRANT, WRITE_ROLES
from tests.fakes.github.pulls import PullsMixin
from tests.fakes.github.state import (
    GIT_ENV,
    JSON_BODY,
    TOKEN,
    _Answer,
    _number,
    _validation_failed,
)

PROTECTED_DOCS = "https://docs.github.com/articles/about-protected-branches"
METHODS = {
    "merge": ("allow_merge_commit", "Merge commits are not allowed on this repository."),
    "squash": ("allow_squash_merge", "Squash merges are not allowed on this repository."),
    "rebase": ("allow_rebase_merge", "Rebase merges are not allowed on this repository."),
}
REVIEW_EVENTS = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}


class MergingMixin(PullsMixin):
    """Seeds branch protection and merge settings; answers files, reviews and merges."""

    # --- seeding -------------------------------------------------------------------

    def require_reviews(self, repo: str, count: int = 1, *, branch: str | None = None) -> None:
        """Branch protection on `branch` (the default branch): `count` approving reviews by
        people with write access before a merge."""
        state = self.repo(repo)
        branch = branch or state["data"]["default_branch"]
        state["protection"][branch] = {"required_approving_review_count": count}

    def allow_merge_methods(
        self, repo: str, *, squash: bool = True, merge: bool = True, rebase: bool = True
    ) -> None:
        self.repo(repo)["data"].update(
            allow_squash_merge=squash, allow_merge_commit=merge, allow_rebase_merge=rebase
        )

    def reviews_of(self, repo: str, number: int) -> list[dict[str, Any]]:
        return list(self.repo(repo)["reviews"].get(number, []))

    # --- handlers ------------------------------------------------------------------

    async def _list_pull_files(self, request: web.Request) -> web.Response:
        state = self._state(request)
        pr = await self._open_pull_or_404(request)
        git_dir = str(self.bare_path(state["data"]["full_name"]))
        base = await _git_out(git_dir, "merge-base", pr["base"]["ref"], pr["head"]["sha"])
        numstat = await _git_out(git_dir, "diff", "--numstat", "-M", base, pr["head"]["sha"])
        statuses = await _git_out(git_dir, "diff", "--name-status", "-M", base, pr["head"]["sha"])
        kinds = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "T": "changed"}
        named = [line.split("\t") for line in statuses.splitlines() if line]
        files = []
        for line, status in zip(numstat.splitlines(), named, strict=False):
            added, removed, *_ = line.split("\t")
            filename = status[-1]
            files.append(
                {
                    "filename": filename,
                    "status": kinds.get(status[0][:1], "modified"),
                    "additions": int(added) if added.isdigit() else 0,
                    "deletions": int(removed) if removed.isdigit() else 0,
                    "changes": (int(added) if added.isdigit() else 0)
                    + (int(removed) if removed.isdigit() else 0),
                    "blob_url": f"{state['data']['html_url']}/blob/{pr['head']['sha']}/{filename}",
                }
            )
        return self._page(request, files)

    async def _list_reviews(self, request: web.Request) -> web.Response:
        state = self._state(request)
        pr = state["pulls"].get(_number(request))
        if pr is None:
            raise _Answer(404)
        return self._page(request, list(state["reviews"].get(pr["number"], [])))

    async def _create_review(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        pr = await self._open_pull_or_404(request)
        event = body.get("event")
        if event not in REVIEW_EVENTS:
            raise _validation_failed(resource="PullRequestReview", field="event", code="invalid")
        user = self._actor(request)
        if user["login"].lower() == pr["user"]["login"].lower() and event != "COMMENT":
            raise _Answer(422, "Unprocessable Entity", ["Can not approve your own pull request"])
        review_id = next(self._ids)
        review = {
            "id": review_id,
            "node_id": f"PRR_{review_id}",
            "user": user,
            "body": body.get("body") or "",
            "state": REVIEW_EVENTS[event],
            "commit_id": body.get("commit_id") or pr["head"]["sha"],
            "html_url": f"{pr['html_url']}#pullrequestreview-{review_id}",
            "pull_request_url": pr["url"],
            "author_association": self._association(state, user["login"]),
            "submitted_at": self._now(),
        }
        state["reviews"].setdefault(pr["number"], []).append(review)
        return web.json_response(review)

    async def _merge_pull(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        pr = await self._open_pull_or_404(request)
        if pr["draft"]:
            raise _Answer(405, "Pull Request is still a draft")
        method = body.get("merge_method") or "merge"
        if method not in METHODS:
            raise _validation_failed(resource="PullRequest", field="merge_method", code="invalid")
        allowed_field, refusal = METHODS[method]
        if state["data"].get(allowed_field) is False:
            raise _Answer(405, refusal)
        if body.get("sha") and body["sha"] != pr["head"]["sha"]:
            raise _Answer(409, "Head branch was modified. Review and try the merge again.")
        self._check_reviews(state, pr)
        actor = self._actor(request)
        sha = await self._merge_in_git(state, pr, method, actor, body)
        now = self._now()
        pr.update(
            merged=True,
            merged_at=now,
            merge_commit_sha=sha,
            merged_by=actor,
            state="closed",
            closed_at=now,
            updated_at=now,
        )
        issue = state["issues"][pr["number"]]
        issue.update(state="closed", closed_at=now, updated_at=now)
        issue["pull_request"]["merged_at"] = now
        return web.json_response(
            {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    async def _graphql(self, request: web.Request) -> web.Response:
        """GraphQL, for the one mutation REST lacks: marking a draft ready for review."""
        body = request[JSON_BODY]
        query, variables = str(body.get("query") or ""), body.get("variables") or {}
        if "markPullRequestReadyForReview" not in query:
            return web.json_response({"errors": [{"message": "the fake knows one mutation"}]})
        for state in self._repos.values():
            for pr in state["pulls"].values():
                if pr["node_id"] == variables.get("id"):
                    if request.get(USER_GRANT) is None and not self._may_access(
                        request[TOKEN], state["data"]["full_name"]
                    ):
                        break
                    pr["draft"] = False
                    ready = {"pullRequest": {"number": pr["number"], "isDraft": False}}
                    return web.json_response({"data": {"markPullRequestReadyForReview": ready}})
        message = f"Could not resolve to a node with the global id of '{variables.get('id')}'"
        return web.json_response(
            {"data": None, "errors": [{"type": "NOT_FOUND", "message": message}]}
        )

    # --- helpers -------------------------------------------------------------------

    async def _open_pull_or_404(self, request: web.Request) -> dict[str, Any]:
        state = self._state(request)
        pr = state["pulls"].get(_number(request))
        if pr is None:
            raise _Answer(404)
        await self._refresh_pull(state, pr)
        if request.method != "GET" and (pr["state"] != "open" or pr.get("merged")):
            raise _Answer(405, "Pull Request is not mergeable")
        return pr

    def _check_reviews(self, state: dict[str, Any], pr: dict[str, Any]) -> None:
        """Branch protection: enough approvals of the head commit by people who may write,
        each reviewer's latest review counting once."""
        rule = state["protection"].get(pr["base"]["ref"]) or {}
        needed = int(rule.get("required_approving_review_count") or 0)
        if not needed:
            return
        latest: dict[str, dict[str, Any]] = {}
        for review in state["reviews"].get(pr["number"], []):
            if review["state"] != "COMMENTED":
                latest[review["user"]["login"].lower()] = review
        approvals = sum(
            1
            for login, review in latest.items()
            if review["state"] == "APPROVED"
            and review["commit_id"] == pr["head"]["sha"]
            and state["collaborators"].get(login, "none") in WRITE_ROLES
        )
        if approvals < needed:
            noun = "approving review is" if needed == 1 else "approving reviews are"
            raise _Answer(405, f"At least {needed} {noun} required by reviewers with write access.")

    async def _merge_in_git(
        self,
        state: dict[str, Any],
        pr: dict[str, Any],
        method: str,
        actor: dict[str, Any],
        body: dict[str, Any],
    ) -> str:
        git_dir = str(self.bare_path(state["data"]["full_name"]))
        base_ref = f"refs/heads/{pr['base']['ref']}"
        base = await _git_out(git_dir, "rev-parse", base_ref)
        head = pr["head"]["sha"]
        email = f"{actor['id']}+{actor['login']}@users.noreply.github.com"
        who = {"GIT_AUTHOR_NAME": actor["login"], "GIT_AUTHOR_EMAIL": email}
        who |= {"GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com"}
        title = body.get("commit_title")
        if method == "rebase":
            if await _git_code(git_dir, "merge-base", "--is-ancestor", base, head) != 0:
                raise _Answer(405, "This branch can't be rebased")
            current = base
            for commit in (
                await _git_out(git_dir, "rev-list", "--reverse", f"{base}..{head}")
            ).split():
                tree = await _git_out(git_dir, "rev-parse", f"{commit}^{{tree}}")
                message = await _git_out(git_dir, "log", "-1", "--format=%B", commit)
                current = await _git_out(
                    git_dir, "commit-tree", tree, "-p", current, "-m", message, env=who
                )
            new = current
        else:
            code, tree = await _git_run(git_dir, "merge-tree", "--write-tree", base, head)
            if code != 0:
                raise _Answer(405, "Pull Request is not mergeable")
            tree = tree.splitlines()[0]
            if method == "squash":
                message = f"{title or pr['title']} (#{pr['number']})"
                new = await _git_out(
                    git_dir, "commit-tree", tree, "-p", base, "-m", message, env=who
                )
            else:
                owner = state["data"]["owner"]["login"]
                message = title or (
                    f"Merge pull request #{pr['number']} from {owner}/{pr['head']['ref']}"
                )
                new = await _git_out(
                    git_dir, "commit-tree", tree, "-p", base, "-p", head, "-m",
                    f"{message}\n\n{pr['title']}", env=who,
                )  # fmt: skip
        if await _git_code(git_dir, "update-ref", base_ref, new, base) != 0:
            raise _Answer(409, "Base branch was modified. Review and try the merge again.")
        return new


async def _git_run(git_dir: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "--git-dir",
        git_dir,
        *args,
        env=GIT_ENV | (env or {}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


async def _git_out(git_dir: str, *args: str, env: dict[str, str] | None = None) -> str:
    code, out = await _git_run(git_dir, *args, env=env)
    if code != 0:
        raise _Answer(500, f"git {args[0]} failed in the fake")
    return out


async def _git_code(git_dir: str, *args: str) -> int:
    return (await _git_run(git_dir, *args))[0]
