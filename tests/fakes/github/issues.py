"""Repositories and issues: issues, comments, reactions, labels, permissions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from tests.fakes.github.state import (
    JSON_BODY,
    GitHubState,
    _Answer,
    _number,
    _validation_failed,
)

# role_name -> the legacy `permission` field GitHub sends beside it
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}


class IssuesMixin(GitHubState):
    """Seeds issues, comments and permissions; answers the repository and issue endpoints."""

    # --- seeding -------------------------------------------------------------------

    def set_permission(self, repo: str, user: str, level: str) -> None:
        """admin, maintain, write, triage, read or none."""
        if level not in LEGACY_PERMISSION:
            raise ValueError(level)
        self._user(user)
        self.repo(repo)["collaborators"][user.lower()] = level

    def add_issue(
        self,
        repo: str,
        number: int | None = None,
        title: str = "An issue",
        body: str | None = "",
        user: str = "octocat",
        *,
        labels: Iterable[str] = (),
    ) -> dict[str, Any]:
        state = self.repo(repo)
        number = number or self._next_number(state)
        issue = self._new_issue(state, number, title, body, self._user(user), labels)
        state["issues"][number] = issue
        return issue

    def add_comment(
        self,
        repo: str,
        number: int,
        body: str,
        user: str = "octocat",
        *,
        age: float = 0.0,
    ) -> dict[str, Any]:
        """A comment by `user`, written `age` seconds ago."""
        state = self.repo(repo)
        comment = self._new_comment(state, self._issue(state, number), body, self._user(user))
        if age:
            written = self._now(self.clock() - age)
            comment.update(created_at=written, updated_at=written)
        return comment

    def edit_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        """Someone edits the comment now (GitHub lets anyone with write access edit anyone's
        comment); GitHub moves its `updated_at`, never its `created_at`."""
        comment = self.repo(repo)["comments"][comment_id]
        comment.update(body=body, updated_at=self._now())
        return comment

    # --- building ------------------------------------------------------------------

    def _issue(self, state: dict[str, Any], number: int) -> dict[str, Any]:
        issue = state["issues"].get(number)
        if issue is None:
            raise _Answer(404)
        return issue

    def _label(self, state: dict[str, Any], name: str) -> dict[str, Any]:
        """The label, created with GitHub's default colour if new (as adding one does)."""
        label = state["labels"].get(name.lower())
        if label is None:
            label = self._new_label(state, name, "ededed", None)
        return label

    def _new_label(
        self, state: dict[str, Any], name: str, color: str, description: str | None
    ) -> dict[str, Any]:
        label_id = next(self._ids)
        label = {
            "id": label_id,
            "node_id": f"LA_{label_id}",
            "url": f"{state['data']['url']}/labels/{name}",
            "name": name,
            "color": color,
            "description": description,
            "default": False,
        }
        state["labels"][name.lower()] = label
        return label

    def _new_issue(
        self,
        state: dict[str, Any],
        number: int,
        title: str,
        body: str | None,
        user: dict[str, Any],
        labels: Iterable[str],
    ) -> dict[str, Any]:
        api, html = f"{state['data']['url']}/issues/{number}", state["data"]["html_url"]
        issue_id = next(self._ids)
        return {
            "id": issue_id,
            "node_id": f"I_{issue_id}",
            "url": api,
            "repository_url": state["data"]["url"],
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "html_url": f"{html}/issues/{number}",
            "number": number,
            "title": title,
            "body": body,
            "user": user,
            "labels": [self._label(state, name) for name in labels],
            "state": "open",
            "state_reason": None,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "comments": 0,
            "author_association": self._association(state, user["login"]),
            "created_at": self._now(),
            "updated_at": self._now(),
            "closed_at": None,
        }

    def _association(self, state: dict[str, Any], login: str) -> str:
        if login.lower() == state["data"]["owner"]["login"].lower():
            return "OWNER"
        role = state["collaborators"].get(login.lower(), "none")
        return "NONE" if role == "none" else "COLLABORATOR"

    def _new_comment(
        self, state: dict[str, Any], issue: dict[str, Any], body: str, user: dict[str, Any]
    ) -> dict[str, Any]:
        comment_id = next(self._ids)
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": f"{state['data']['url']}/issues/comments/{comment_id}",
            "html_url": f"{issue['html_url']}#issuecomment-{comment_id}",
            "issue_url": issue["url"],
            "body": body,
            "user": user,
            "author_association": self._association(state, user["login"]),
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        state["comments"][comment_id] = comment
        issue["comments"] += 1
        return comment

    # --- handlers: repositories and issues -----------------------------------------

    async def _get_repo(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(request)["data"])

    async def _permission(self, request: web.Request) -> web.Response:
        state = self._state(request)
        login = request.match_info["user"]
        user = self.users.get(login.lower())
        if user is None:
            raise _Answer(404)
        default = "none" if state["data"]["private"] else "read"
        role = state["collaborators"].get(login.lower(), default)
        return web.json_response(
            {"permission": LEGACY_PERMISSION[role], "role_name": role, "user": user}
        )

    async def _create_issue(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        if not body.get("title"):
            raise _validation_failed(resource="Issue", field="title", code="missing_field")
        number = self._next_number(state)
        issue = self._new_issue(
            state,
            number,
            body["title"],
            body.get("body"),
            self._actor(request),
            body.get("labels") or (),
        )
        state["issues"][number] = issue
        return web.json_response(issue, status=201)

    async def _get_issue(self, request: web.Request) -> web.Response:
        return web.json_response(self._issue(self._state(request), _number(request)))

    async def _update_issue(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        issue = self._issue(state, _number(request))
        for key in ("title", "body", "state_reason"):
            if key in body:
                issue[key] = body[key]
        if "labels" in body:
            issue["labels"] = [self._label(state, n) for n in body["labels"]]
        if "state" in body:
            pr = state["pulls"].get(issue["number"])
            if pr is not None:
                self._set_pull_state(state, pr, body["state"])
            else:
                issue["state"] = body["state"]
                issue["closed_at"] = None if body["state"] == "open" else self._now()
        issue["updated_at"] = self._now()
        return web.json_response(issue)

    async def _list_comments(self, request: web.Request) -> web.Response:
        state = self._state(request)
        issue = self._issue(state, _number(request))
        comments = [c for c in state["comments"].values() if c["issue_url"] == issue["url"]]
        return self._page(request, comments)

    async def _create_comment(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        if not body.get("body"):
            raise _validation_failed(resource="IssueComment", field="body", code="missing_field")
        issue = self._issue(state, _number(request))
        comment = self._new_comment(state, issue, body["body"], self._actor(request))
        return web.json_response(comment, status=201)

    async def _get_comment(self, request: web.Request) -> web.Response:
        comment = self._state(request)["comments"].get(int(request.match_info["id"]))
        if comment is None:
            raise _Answer(404)
        return web.json_response(comment)

    async def _edit_comment(self, request: web.Request) -> web.Response:
        comment = self._state(request)["comments"].get(int(request.match_info["id"]))
        if comment is None:
            raise _Answer(404)
        if not request[JSON_BODY].get("body"):
            raise _validation_failed(resource="IssueComment", field="body", code="missing_field")
        comment.update(body=request[JSON_BODY]["body"], updated_at=self._now())
        return web.json_response(comment)

    def _reaction_subject(self, request: web.Request) -> str:
        state, path = self._state(request), request.path
        if "number" in request.match_info:
            return f"issue:{self._issue(state, _number(request))['number']}"
        item_id = int(request.match_info["id"])
        kind = "review_comment" if "/pulls/comments/" in path else "comment"
        if item_id not in state["review_comments" if kind == "review_comment" else "comments"]:
            raise _Answer(404)
        return f"{kind}:{item_id}"

    async def _list_reactions(self, request: web.Request) -> web.Response:
        subject = self._reaction_subject(request)
        reactions = [r for r in self._state(request)["reactions"] if r["subject"] == subject]
        return self._page(request, reactions)

    async def _react(self, request: web.Request) -> web.Response:
        state, subject = self._state(request), self._reaction_subject(request)
        content = request[JSON_BODY].get("content")
        if content not in REACTIONS:
            raise _validation_failed(resource="Reaction", field="content", code="invalid")
        actor = self._actor(request)
        for reaction in state["reactions"]:
            same = reaction["subject"] == subject and reaction["content"] == content
            if same and reaction["user"]["login"] == actor["login"]:
                return web.json_response(reaction, status=200)
        reaction_id = next(self._ids)
        reaction = {
            "id": reaction_id,
            "node_id": f"REA_{reaction_id}",
            "user": actor,
            "content": content,
            "created_at": self._now(),
            "subject": subject,
        }
        state["reactions"].append(reaction)
        return web.json_response(reaction, status=201)

    async def _add_issue_labels(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        issue = self._issue(state, _number(request))
        names = body.get("labels", []) if isinstance(body, dict) else body
        have = {label["name"].lower() for label in issue["labels"]}
        for name in names:
            if name.lower() not in have:
                issue["labels"].append(self._label(state, name))
                have.add(name.lower())
        return web.json_response(issue["labels"])

    async def _remove_label(self, request: web.Request) -> web.Response:
        state = self._state(request)
        issue = self._issue(state, _number(request))
        name = request.match_info["name"].lower()
        if name not in {label["name"].lower() for label in issue["labels"]}:
            raise _Answer(404, "Label does not exist")
        issue["labels"] = [label for label in issue["labels"] if label["name"].lower() != name]
        return web.json_response(issue["labels"])

    async def _list_labels(self, request: web.Request) -> web.Response:
        return self._page(request, list(self._state(request)["labels"].values()))

    async def _create_label(self, request: web.Request) -> web.Response:
        state, body = self._state(request), request[JSON_BODY]
        name = body.get("name")
        if not name:
            raise _validation_failed(resource="Label", field="name", code="missing_field")
        if name.lower() in state["labels"]:
            raise _validation_failed(resource="Label", field="name", code="already_exists")
        label = self._new_label(
            state, name, str(body.get("color") or "ededed").lstrip("#"), body.get("description")
        )
        return web.json_response(label, status=201)

    async def _get_label(self, request: web.Request) -> web.Response:
        label = self._state(request)["labels"].get(request.match_info["name"].lower())
        if label is None:
            raise _Answer(404)
        return web.json_response(label)
