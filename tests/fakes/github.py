"""Fake GitHub on loopback: the REST endpoints Honk uses and git over HTTP, seeded by tests."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import re
import secrets
import string
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pytest_aiohttp import AiohttpServer

from app.config import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DOCS_URL = "https://docs.github.com/rest"
APP_SLUG = "honk-test"
TOKEN_ALPHABET = string.ascii_letters + string.digits
LEVELS = {"read": 1, "write": 2, "admin": 3}
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
DEFAULT_INSTALLATION_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "members": "read",
    "metadata": "read",
    "pull_requests": "write",
    "statuses": "read",
}
ACTIONS_APP = {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}
SHA_RE = re.compile(r"[0-9a-f]{40}")
GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": os.devnull,
    "LANG": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.com",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.com",
}
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class IssuedToken:
    token: str = field(repr=False)
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: tuple[str, ...] | None  # full names; None: the installation's repositories
    revoked: bool = False


JSON_BODY = web.RequestKey("json_body", Any)  # the request's JSON ({} if none)
TOKEN = web.RequestKey("token", IssuedToken)  # the installation token it came with


@dataclass
class ScriptedAnswer:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    times: int


class ManualClock:
    """A clock tests move by hand; pass it to the code under test and to the fake."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Answer(Exception):
    """Raised by handlers to answer with GitHub's JSON error shape."""

    def __init__(self, status: int, message: str | None = None, errors: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.errors = errors


def _validation_failed(**error: Any) -> _Answer:
    return _Answer(422, "Validation Failed", [error])


class FakeGitHub:
    """GitHub's REST API and git smart HTTP for the tests, on one aiohttp app (`.app`)."""

    def __init__(
        self,
        *,
        app_id: int,
        public_key_pem: str,
        repos_root: Path,
        private_key_pem: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.private_key_pem = private_key_pem
        self.repos_root = repos_root
        self.clock = clock
        self.url = ""  # set once the server listens; no trailing slash
        self.token_ttl = 3600.0
        self.token_prefix = "ghs_"
        self.calls: list[Call] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.installations: dict[int, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.org_members: dict[str, list[str]] = {}
        self.manifest_conversions: dict[str, dict[str, Any]] = {}
        self.app_info: dict[str, Any] = {
            "id": app_id,
            "slug": APP_SLUG,
            "name": "Honk Test",
            "node_id": "A_honk",
            "description": "",
            "owner": None,
            "permissions": dict(DEFAULT_INSTALLATION_PERMISSIONS),
            "events": ["issues", "issue_comment", "pull_request", "check_run"],
        }
        self.bot_user_id = 900_000 + app_id
        self._repos: dict[str, dict[str, Any]] = {}
        self._installation_repos: dict[int, list[str] | None] = {}
        self._job_logs: dict[int, str] = {}
        self._scripted: list[ScriptedAnswer] = []
        self._ids = itertools.count(10_001)
        self._access: dict[Any, str | None] = {}  # route -> None (token), "anonymous", "public"
        self.app = web.Application(middlewares=[self._middleware])
        self._add_routes()

    # --- seeding -------------------------------------------------------------------

    def add_installation(
        self,
        installation_id: int,
        account: str = "octo",
        repos: Iterable[str] | None = None,
        *,
        permissions: Mapping[str, str] | None = None,
        account_type: str = "Organization",
    ) -> dict[str, Any]:
        """An installation on `account`: on the `repos` listed, or on all of them (None)."""
        owner = self._user(account, kind=account_type)
        selected = None if repos is None else [r if "/" in r else f"{account}/{r}" for r in repos]
        self._installation_repos[installation_id] = selected
        self.installations[installation_id] = {
            "id": installation_id,
            "account": owner,
            "repository_selection": "all" if selected is None else "selected",
            "access_tokens_url": f"{self.url}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{installation_id}",
            "app_id": self.app_id,
            "app_slug": self.app_info["slug"],
            "target_id": owner["id"],
            "target_type": account_type,
            "permissions": dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
            "events": list(self.app_info["events"]),
            "created_at": self._now(),
            "updated_at": self._now(),
            "single_file_name": None,
            "suspended_at": None,
            "suspended_by": None,
        }
        return self.installations[installation_id]

    def add_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        private: bool = False,
    ) -> dict[str, Any]:
        """A repository backed by a real bare git repo; `files` make its first commit.

        files=None commits a README; files={} leaves the repository empty.
        """
        owner, _, name = full_name.partition("/")
        if full_name.lower() in self._repos:
            raise ValueError(f"{full_name} already exists")
        bare = self.bare_path(full_name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git_sync("init", "--bare", "-q", f"--initial-branch={default_branch}", str(bare))
        _git_sync("--git-dir", str(bare), "config", "http.receivepack", "true")
        (bare / "git-daemon-export-ok").touch()
        api = f"{self.url}/repos/{full_name}"
        data = {
            "id": next(self._ids),
            "node_id": f"R_{name}",
            "name": name,
            "full_name": full_name,
            "owner": self._user(owner, kind="Organization"),
            "private": private,
            "visibility": "private" if private else "public",
            "fork": False,
            "archived": False,
            "disabled": False,
            "html_url": f"{self.url}/{full_name}",
            "url": api,
            "clone_url": f"{self.url}/{full_name}.git",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "labels_url": f"{api}/labels{{/name}}",
            "default_branch": default_branch,
            "created_at": self._now(),
            "updated_at": self._now(),
            "pushed_at": self._now(),
        }
        self._repos[full_name.lower()] = {
            "data": data,
            "issues": {},  # number -> issue (pull requests too, as GitHub does)
            "comments": {},  # id -> issue comment
            "reactions": [],  # each with "subject": "issue:<n>" | "comment:<id>" | ...
            "labels": {},  # lower name -> label
            "pulls": {},  # number -> pull request
            "review_comments": {},  # id -> review comment
            "check_runs": {},  # id -> check run
            "suite_status": {},  # (sha, app id) -> status that overrides the derived one
            "statuses": {},  # sha -> [status], newest first
            "workflow_runs": {},  # id -> run
            "jobs": {},  # id -> job
            "artifacts": {},  # run id -> [artifact]
            "collaborators": {},  # lower login -> role
        }
        if files != {}:
            self.commit_files(
                full_name, files or {"README.md": f"# {name}\n"}, message="Initial commit"
            )
        return data

    def remove_installation(self, installation_id: int) -> None:
        """Uninstall: the installation and every token it was given stop working."""
        self.installations.pop(installation_id, None)
        self._installation_repos.pop(installation_id, None)
        for issued in self.tokens.values():
            if issued.installation_id == installation_id:
                issued.revoked = True

    def add_user(
        self, login: str, *, name: str | None = None, email: str | None = None, kind: str = "User"
    ) -> dict[str, Any]:
        user = self._user(login, kind=kind)
        user.update({"name": name, "email": email})
        return user

    def add_org_member(self, org: str, login: str) -> None:
        self._user(login)
        self.org_members.setdefault(org.lower(), []).append(login)

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
        self, repo: str, number: int, body: str, user: str = "octocat"
    ) -> dict[str, Any]:
        state = self.repo(repo)
        return self._new_comment(state, self._issue(state, number), body, self._user(user))

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

    def add_check_run(
        self,
        repo: str,
        head_sha: str,
        name: str,
        *,
        status: str = "completed",
        conclusion: str | None = "success",
        app: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A check run made by another App (GitHub Actions unless `app` says otherwise)."""
        fields.update(name=name, head_sha=head_sha, status=status, conclusion=conclusion)
        return self._new_check_run(self.repo(repo), fields, dict(app or ACTIONS_APP))

    def set_check_suite(
        self, repo: str, sha: str, status: str, *, app: Mapping[str, Any] | None = None
    ) -> None:
        """Force the status of an App's check suite on `sha` (by default derived from its
        runs): "in_progress" models a workflow whose later jobs have not started yet."""
        app = dict(app or ACTIONS_APP)
        self.repo(repo)["suite_status"][(sha, app["id"])] = (status, app)

    def set_status(
        self,
        repo: str,
        sha: str,
        state: str,
        context: str = "ci",
        *,
        description: str = "",
        target_url: str | None = None,
    ) -> dict[str, Any]:
        """A commit status (pending, success, failure, error); replaces the context's last."""
        statuses = self.repo(repo)["statuses"].setdefault(sha, [])
        status = {
            "id": next(self._ids),
            "state": state,
            "context": context,
            "description": description,
            "target_url": target_url,
            "created_at": self._now(),
            "updated_at": self._now(),
        }
        statuses[:] = [status, *(s for s in statuses if s["context"] != context)]
        return status

    def add_workflow_run(
        self,
        repo: str,
        *,
        head_sha: str,
        head_branch: str = "main",
        name: str = "CI",
        conclusion: str | None = "failure",
        jobs: Iterable[Mapping[str, Any]] = (),
        artifacts: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """An Actions run. Each job ({"name", "conclusion", "log", "steps"?}) also appears
        as a GitHub Actions check run with the job's id, as on GitHub."""
        state = self.repo(repo)
        run_id = next(self._ids)
        api = f"{state['data']['url']}/actions/runs/{run_id}"
        html = f"{state['data']['html_url']}/actions/runs/{run_id}"
        status = "completed" if conclusion else "in_progress"
        run = {
            "id": run_id,
            "name": name,
            "node_id": f"WFR_{run_id}",
            "head_branch": head_branch,
            "head_sha": head_sha,
            "run_number": len(state["workflow_runs"]) + 1,
            "run_attempt": 1,
            "event": "pull_request",
            "status": status,
            "conclusion": conclusion,
            "html_url": html,
            "url": api,
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "artifacts_url": f"{api}/artifacts",
            "check_suite_id": next(self._ids),
            "pull_requests": [],
            "created_at": self._now(),
            "updated_at": self._now(),
            "run_started_at": self._now(),
        }
        state["workflow_runs"][run_id] = run
        for spec in jobs:
            job_conclusion = spec.get("conclusion", conclusion)
            job_status = "completed" if job_conclusion else "in_progress"
            check = self._new_check_run(
                state,
                {
                    "name": spec["name"],
                    "head_sha": head_sha,
                    "status": job_status,
                    "conclusion": job_conclusion,
                },
                dict(ACTIONS_APP),
            )
            job_html = f"{html}/job/{check['id']}"
            check.update(details_url=job_html, html_url=job_html)
            state["jobs"][check["id"]] = {
                "id": check["id"],
                "run_id": run_id,
                "run_url": api,
                "node_id": f"CR_{check['id']}",
                "head_sha": head_sha,
                "head_branch": head_branch,
                "name": spec["name"],
                "workflow_name": name,
                "status": job_status,
                "conclusion": job_conclusion,
                "url": f"{state['data']['url']}/actions/jobs/{check['id']}",
                "html_url": job_html,
                "check_run_url": check["url"],
                "steps": list(spec.get("steps", [])),
                "labels": ["ubuntu-latest"],
                "started_at": self._now(),
                "completed_at": self._now() if job_conclusion else None,
            }
            self._job_logs[check["id"]] = spec.get("log", "")
        state["artifacts"][run_id] = [
            {
                "id": (artifact_id := next(self._ids)),
                "node_id": f"MDg6QXJ0aWZhY3Q{artifact_id}",
                "name": spec["name"],
                "size_in_bytes": spec.get("size_in_bytes", 0),
                "url": f"{state['data']['url']}/actions/artifacts/{artifact_id}",
                "archive_download_url": f"{state['data']['url']}/actions/artifacts/"
                f"{artifact_id}/zip",
                "expired": False,
                "workflow_run": {"id": run_id, "head_branch": head_branch, "head_sha": head_sha},
                "created_at": self._now(),
                "expires_at": self._now(),
            }
            for spec in artifacts
        ]
        return run

    def add_manifest_code(self, code: str, **overrides: Any) -> dict[str, Any]:
        """What POST /app-manifests/<code>/conversions answers (once)."""
        slug = overrides.get("slug", "honk-new")
        conversion = {
            "id": 777_001,
            "slug": slug,
            "node_id": "A_new",
            "name": "Honk New",
            "description": "",
            "owner": self._user("octo", kind="Organization"),
            "external_url": "https://honk.example.com",
            "html_url": f"{self.url}/apps/{slug}",
            "created_at": self._now(),
            "updated_at": self._now(),
            "permissions": dict(DEFAULT_INSTALLATION_PERMISSIONS),
            "events": list(self.app_info["events"]),
            "client_id": "Iv1.0123456789abcdef",
            "client_secret": "client-secret-" + secrets.token_hex(16),
            "webhook_secret": "webhook-secret-" + secrets.token_hex(16),
            "pem": self.private_key_pem or "",
        } | overrides
        self.manifest_conversions[code] = conversion
        return conversion

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching (method or "*"; `re.search` on the path,
        so anchor with ^ and $) with `status`, before any auth. Any status works: a 200
        scripts a reply too."""
        if body is None:
            body = {"message": HTTPStatus(status).phrase, "documentation_url": DOCS_URL}
        self._scripted.append(
            ScriptedAnswer(
                method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times
            )
        )

    def clear_failures(self) -> None:
        """Forget every scripted answer not yet given."""
        self._scripted.clear()

    def commit_files(
        self,
        repo: str,
        files: Mapping[str, str | None],
        *,
        branch: str | None = None,
        from_ref: str | None = None,
        message: str = "Update files",
    ) -> str:
        """Commit `files` (None deletes) onto `branch` (default branch if None; a new branch
        starts from `from_ref` or the default branch). Returns the commit sha."""
        default = self.repo(repo)["data"]["default_branch"]
        branch = branch or default
        git_dir = str(self.bare_path(repo))
        parent = self.branch_sha(repo, branch) or (
            self.branch_sha(repo, from_ref or default) if branch != default else None
        )
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_DIR": git_dir, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                _git_sync("read-tree", parent, env=env)
            for path, content in files.items():
                if content is None:
                    _git_sync("update-index", "--force-remove", "--", path, env=env)
                    continue
                blob = _git_sync("hash-object", "-w", "--stdin", env=env, input=content).strip()
                _git_sync("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = _git_sync("write-tree", env=env).strip()
            parents = ["-p", parent] if parent else []
            commit = _git_sync("commit-tree", tree, *parents, "-m", message, env=env).strip()
            _git_sync("update-ref", f"refs/heads/{branch}", commit, env=env)
        return commit

    # --- reading state -------------------------------------------------------------

    def repo(self, full_name: str) -> dict[str, Any]:
        """The repository's state: data (the REST object), issues, comments, reactions, labels,
        pulls, review_comments, check_runs, statuses, workflow_runs, jobs, artifacts."""
        return self._repos[full_name.lower()]

    def bare_path(self, full_name: str) -> Path:
        return self.repos_root / f"{full_name}.git"

    def branch_sha(self, repo: str, branch: str) -> str | None:
        out = _git_sync(
            "--git-dir",
            str(self.bare_path(repo)),
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/heads/{branch}^{{commit}}",
            check=False,
        )
        return out.strip() or None

    def file_at(self, repo: str, ref: str, path: str) -> str | None:
        """A file's text at `ref` in the bare repo, or None."""
        result = subprocess.run(
            ["git", "--git-dir", str(self.bare_path(repo)), "show", f"{ref}:{path}"],
            env=GIT_ENV,
            capture_output=True,
            check=False,
        )
        return result.stdout.decode() if result.returncode == 0 else None

    def git(self, repo: str, *args: str) -> str:
        """Run git in the repo's bare directory (for assertions): stdout."""
        return _git_sync("--git-dir", str(self.bare_path(repo)), *args)

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method (or "*") whose path `re.search`es the regex."""
        pattern = re.compile(path_regex)
        return [
            c
            for c in self.calls
            if method in ("*", c.method) and pattern.search(c.path) is not None
        ]

    def reactions_on(self, repo: str, subject: str) -> list[str]:
        """Contents of reactions on "issue:<n>", "comment:<id>" or "review_comment:<id>"."""
        return [r["content"] for r in self.repo(repo)["reactions"] if r["subject"] == subject]

    def bot_login(self) -> str:
        return f"{self.app_info['slug']}[bot]"

    # --- plumbing ------------------------------------------------------------------

    def _add_routes(self) -> None:
        repo = "/repos/{owner}/{repo}"
        number = r"{number:\d+}"
        table: list[tuple[str, str, Handler, str | None]] = [
            ("POST", "/app/installations/{id:\\d+}/access_tokens", self._create_token, None),
            ("GET", "/app", self._get_app, None),
            ("GET", "/app/installations", self._list_installations, None),
            ("GET", "/app/installations/{id:\\d+}", self._get_installation, None),
            ("POST", "/app-manifests/{code}/conversions", self._convert_manifest, "public"),
            ("DELETE", "/installation/token", self._revoke_token, None),
            ("GET", "/installation/repositories", self._installation_repositories, None),
            ("GET", "/users/{login}", self._get_user, "anonymous"),
            ("GET", "/orgs/{org}/members", self._org_members, None),
            ("GET", "/orgs/{org}/members/{login}", self._org_member, None),
            ("GET", repo, self._get_repo, None),
            ("GET", repo + "/installation", self._repo_installation, "jwt"),
            ("GET", repo + "/collaborators/{user}/permission", self._permission, None),
            ("POST", repo + "/issues", self._create_issue, None),
            ("GET", f"{repo}/issues/{number}", self._get_issue, None),
            ("PATCH", f"{repo}/issues/{number}", self._update_issue, None),
            ("GET", f"{repo}/issues/{number}/comments", self._list_comments, None),
            ("POST", f"{repo}/issues/{number}/comments", self._create_comment, None),
            ("GET", repo + "/issues/comments/{id:\\d+}", self._get_comment, None),
            ("PATCH", repo + "/issues/comments/{id:\\d+}", self._edit_comment, None),
            ("GET", f"{repo}/issues/{number}/reactions", self._list_reactions, None),
            ("POST", f"{repo}/issues/{number}/reactions", self._react, None),
            ("GET", repo + "/issues/comments/{id:\\d+}/reactions", self._list_reactions, None),
            ("POST", repo + "/issues/comments/{id:\\d+}/reactions", self._react, None),
            ("POST", repo + "/pulls/comments/{id:\\d+}/reactions", self._react, None),
            ("POST", f"{repo}/issues/{number}/labels", self._add_issue_labels, None),
            ("DELETE", f"{repo}/issues/{number}/labels/{{name}}", self._remove_label, None),
            ("GET", repo + "/labels", self._list_labels, None),
            ("POST", repo + "/labels", self._create_label, None),
            ("GET", repo + "/labels/{name}", self._get_label, None),
            ("GET", repo + "/pulls", self._list_pulls, None),
            ("POST", repo + "/pulls", self._create_pull, None),
            ("GET", f"{repo}/pulls/{number}", self._get_pull, None),
            ("PATCH", f"{repo}/pulls/{number}", self._update_pull, None),
            ("GET", f"{repo}/pulls/{number}/comments", self._list_review_comments, None),
            ("GET", repo + "/contents/{path:.*}", self._contents, None),
            ("POST", repo + "/check-runs", self._create_check_run, None),
            ("GET", repo + "/check-runs/{id:\\d+}", self._get_check_run, None),
            ("PATCH", repo + "/check-runs/{id:\\d+}", self._update_check_run, None),
            ("GET", repo + "/commits/{ref:.+}/check-runs", self._list_check_runs, None),
            ("GET", repo + "/commits/{ref:.+}/check-suites", self._list_check_suites, None),
            ("GET", repo + "/commits/{ref:.+}/status", self._combined_status, None),
            ("POST", repo + "/statuses/{sha}", self._create_status, None),
            ("GET", repo + "/actions/runs/{id:\\d+}", self._get_workflow_run, None),
            ("GET", repo + "/actions/runs/{id:\\d+}/jobs", self._list_jobs, None),
            ("GET", repo + "/actions/jobs/{id:\\d+}/logs", self._job_logs_redirect, None),
            ("GET", repo + "/actions/runs/{id:\\d+}/artifacts", self._list_artifacts, None),
            ("GET", "/_blobs/job-logs/{id:\\d+}", self._job_log_blob, "public"),
        ]
        for method, path, handler, access in table:
            route = self.app.router.add_route(method, path, handler)
            self._access[route] = access
        # git http-backend bridge, written separately; until it exists git answers 501.
        try:
            from tests.fakes.git_http import make_git_handler

            git_handler: Handler = make_git_handler(self.repos_root, self._git_auth)
        except ImportError:  # pragma: no cover - only while the bridge is being written
            git_handler = self._git_unavailable
        route = self.app.router.add_route("*", "/{owner}/{name}.git/{tail:.*}", git_handler)
        self._access[route] = "public"

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = None
        if request.content_type == "application/json" and request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return _error(400, "Problems parsing JSON")
        self.calls.append(
            Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        request[JSON_BODY] = body if body is not None else {}
        scripted = self._take_scripted(request)
        if scripted is not None:
            return scripted
        if request.match_info.http_exception is not None:
            return _error(404)  # GitHub answers unknown routes and methods alike
        try:
            self._authorize(request)
            return await handler(request)
        except _Answer as answer:
            return _error(answer.status, answer.message, answer.errors)

    def _take_scripted(self, request: web.Request) -> web.Response | None:
        for scripted in self._scripted:
            if scripted.method in ("*", request.method) and scripted.pattern.search(request.path):
                scripted.times -= 1
                if scripted.times <= 0:
                    self._scripted.remove(scripted)
                return web.json_response(
                    scripted.body, status=scripted.status, headers=scripted.headers
                )
        return None

    def _authorize(self, request: web.Request) -> None:
        access = self._access.get(request.match_info.route)
        if access == "public":
            return
        if access == "jwt" or request.path == "/app" or request.path.startswith("/app/"):
            self._check_jwt(request.headers.get("Authorization", ""))
            return
        header = request.headers.get("Authorization")
        if header is None and access == "anonymous":
            return
        issued = self._check_token(header or "")
        request[TOKEN] = issued
        owner, name = request.match_info.get("owner"), request.match_info.get("repo")
        if owner and name:
            state = self._repos.get(f"{owner}/{name}".lower())
            if state is None:
                raise _Answer(404)
            if not self._may_access(issued, state["data"]["full_name"]):
                raise _Answer(403, "Resource not accessible by integration")

    def _check_jwt(self, header: str) -> None:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise _Answer(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                credential,
                self.public_key_pem,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iat", "exp", "iss"],
                },
            )
        except jwt.PyJWTError:
            raise _Answer(401, "A JSON web token could not be decoded") from None
        now = self.clock()
        if str(claims["iss"]) != str(self.app_id):
            raise _Answer(401, "Integration not found")
        if claims["iat"] > now:
            raise _Answer(401, "'Issued at' claim ('iat') must be an Integer in the past")
        if claims["exp"] <= now:
            raise _Answer(401, "'Expiration time' claim ('exp') must be in the future")
        if claims["exp"] - claims["iat"] > 600 or claims["exp"] > now + 600:
            raise _Answer(401, "'Expiration time' claim ('exp') is too far in the future")

    def _check_token(self, header: str) -> IssuedToken:
        scheme, _, credential = header.partition(" ")
        issued = self.tokens.get(credential) if scheme.lower() in ("token", "bearer") else None
        if issued is None or issued.revoked or issued.expires_at <= self.clock():
            raise _Answer(401, "Bad credentials")
        return issued

    def _may_access(self, issued: IssuedToken, full_name: str) -> bool:
        allowed = (
            issued.repositories
            if issued.repositories is not None
            else self._installation_repo_names(issued.installation_id)
        )
        return full_name.lower() in {r.lower() for r in allowed}

    def _installation_repo_names(self, installation_id: int) -> list[str]:
        selected = self._installation_repos.get(installation_id)
        if selected is not None:
            return selected
        account = self.installations[installation_id]["account"]["login"].lower()
        return [
            s["data"]["full_name"]
            for s in self._repos.values()
            if s["data"]["owner"]["login"].lower() == account
        ]

    def _git_auth(self, authorization: str | None, repo: str) -> bool:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:
            return False
        issued = self.tokens.get(password)
        return (
            user == "x-access-token"
            and issued is not None
            and not issued.revoked
            and issued.expires_at > self.clock()
            and repo.lower() in self._repos
            and self._may_access(issued, repo)
        )

    async def _git_unavailable(self, request: web.Request) -> web.Response:  # pragma: no cover
        return web.Response(status=501, text="git http bridge not available yet\n")

    def _state(self, request: web.Request) -> dict[str, Any]:
        return self.repo(f"{request.match_info['owner']}/{request.match_info['repo']}")

    def _actor(self, request: web.Request) -> dict[str, Any]:
        """Whoever the request acts as: the App's bot for installation tokens."""
        return self._bot_user()

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _user(self, login: str, *, kind: str = "User") -> dict[str, Any]:
        if login.lower() not in self.users:
            user_id = next(self._ids)
            self.users[login.lower()] = {
                "login": login,
                "id": user_id,
                "node_id": f"U_{user_id}",
                "avatar_url": f"{self.url}/avatars/u/{user_id}",
                "url": f"{self.url}/users/{login}",
                "html_url": f"{self.url}/{login}",
                "type": kind,
                "site_admin": False,
            }
        return self.users[login.lower()]

    def _bot_user(self) -> dict[str, Any]:
        login = self.bot_login()
        return {
            "login": login,
            "id": self.bot_user_id,
            "node_id": f"BOT_{self.bot_user_id}",
            "avatar_url": f"{self.url}/avatars/in/{self.app_id}",
            "url": f"{self.url}/users/{login}",
            "html_url": f"{self.url}/apps/{self.app_info['slug']}",
            "type": "Bot",
            "site_admin": False,
        }

    def _next_number(self, state: dict[str, Any]) -> int:
        return max(state["issues"], default=0) + 1

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
            "node_id": f"PR_{number}",
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

    def _set_pull_state(self, state: dict[str, Any], pr: dict[str, Any], value: str) -> None:
        closed = None if value == "open" else self._now()
        for item in (pr, state["issues"][pr["number"]]):
            item.update(state=value, closed_at=closed, updated_at=self._now())

    def _new_check_run(
        self, state: dict[str, Any], fields: Mapping[str, Any], app: dict[str, Any]
    ) -> dict[str, Any]:
        if not fields.get("name") or not fields.get("head_sha"):
            raise _validation_failed(resource="CheckRun", field="name", code="missing_field")
        run_id = next(self._ids)
        api = f"{state['data']['url']}/check-runs/{run_id}"
        run: dict[str, Any] = {
            "id": run_id,
            "node_id": f"CR_{run_id}",
            "head_sha": fields["head_sha"],
            "external_id": "",
            "url": api,
            "html_url": f"{state['data']['html_url']}/runs/{run_id}",
            "details_url": None,
            "status": "queued",
            "conclusion": None,
            "started_at": self._now(),
            "completed_at": None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{api}/annotations",
            },
            "name": fields["name"],
            "check_suite": {"id": abs(hash((state["data"]["full_name"], fields["head_sha"])))},
            "app": app,
            "pull_requests": [],
        }
        self._apply_check_fields(run, fields)
        state["check_runs"][run_id] = run
        return run

    def _apply_check_fields(self, run: dict[str, Any], fields: Mapping[str, Any]) -> None:
        for key, value in fields.items():
            if key == "output" and isinstance(value, Mapping):
                run["output"].update(value)
            elif key != "actions":
                run[key] = value
        if fields.get("conclusion") is not None:
            run["status"] = "completed"
        if run["status"] == "completed" and not run.get("completed_at"):
            run["completed_at"] = self._now()

    async def _resolve(self, state: dict[str, Any], ref: str) -> str:
        """A branch, tag or sha to a commit sha (422 if there is none, like GitHub)."""
        if SHA_RE.fullmatch(ref):
            return ref
        code, out = await _git(
            "--git-dir",
            str(self.bare_path(state["data"]["full_name"])),
            "rev-parse",
            "--verify",
            "--quiet",
            f"{ref}^{{commit}}",
        )
        if code != 0:
            raise _Answer(422, f"No commit found for SHA: {ref}")
        return out.decode().strip()

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

    # --- handlers: the App ---------------------------------------------------------

    async def _create_token(self, request: web.Request) -> web.Response:
        installation_id = int(request.match_info["id"])
        installation = self.installations.get(installation_id)
        if installation is None:
            raise _Answer(404)
        body = request[JSON_BODY]
        available = self._installation_repo_names(installation_id)
        repositories: tuple[str, ...] | None = None
        if body.get("repositories") is not None:
            by_name = {r.rpartition("/")[2].lower(): r for r in available}
            wanted = [str(n).rpartition("/")[2].lower() for n in body["repositories"]]
            if any(n not in by_name or by_name[n].lower() not in self._repos for n in wanted):
                raise _Answer(
                    422,
                    "There is at least one repository that does not exist or is not "
                    "accessible to the parent installation.",
                )
            repositories = tuple(by_name[n] for n in wanted)
        granted = installation["permissions"]
        permissions = dict(granted)
        if body.get("permissions") is not None:
            permissions = dict(body["permissions"])
            for name, level in permissions.items():
                if LEVELS.get(level, 99) > LEVELS.get(granted.get(name, ""), 0):
                    raise _Answer(
                        422, "The permissions requested are not granted to this installation."
                    )
        token = self.token_prefix + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(76))
        expires = self.clock() + self.token_ttl
        self.tokens[token] = IssuedToken(token, installation_id, expires, permissions, repositories)
        answer: dict[str, Any] = {
            "token": token,
            "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": permissions,
            "repository_selection": "all" if repositories is None else "selected",
        }
        if repositories is not None:
            answer["repositories"] = [self.repo(r)["data"] for r in repositories]
        return web.json_response(answer, status=201)

    async def _get_app(self, request: web.Request) -> web.Response:
        owner = self.app_info.get("owner") or self._user("octo", kind="Organization")
        return web.json_response(
            self.app_info | {"owner": owner, "html_url": f"{self.url}/apps/{self.app_info['slug']}"}
        )

    async def _list_installations(self, request: web.Request) -> web.Response:
        return self._page(request, list(self.installations.values()))

    async def _get_installation(self, request: web.Request) -> web.Response:
        installation = self.installations.get(int(request.match_info["id"]))
        if installation is None:
            raise _Answer(404)
        return web.json_response(installation)

    async def _repo_installation(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/installation (App JWT): which installation serves it."""
        full = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        for installation_id, installation in self.installations.items():
            names = [n.lower() for n in self._installation_repo_names(installation_id)]
            if full in names:
                return web.json_response(installation)
        raise _Answer(404)

    async def _convert_manifest(self, request: web.Request) -> web.Response:
        conversion = self.manifest_conversions.pop(request.match_info["code"], None)
        if conversion is None:
            raise _Answer(404)
        return web.json_response(conversion, status=201)

    async def _revoke_token(self, request: web.Request) -> web.Response:
        request[TOKEN].revoked = True
        return web.Response(status=204)

    async def _installation_repositories(self, request: web.Request) -> web.Response:
        issued: IssuedToken = request[TOKEN]
        names = issued.repositories or self._installation_repo_names(issued.installation_id)
        repos = [self.repo(n)["data"] for n in names if n.lower() in self._repos]
        selection = self.installations[issued.installation_id]["repository_selection"]
        return self._page(request, repos, "repositories", {"repository_selection": selection})

    async def _get_user(self, request: web.Request) -> web.Response:
        login = request.match_info["login"]
        if login.lower() == self.bot_login().lower():
            return web.json_response(self._bot_user())
        user = self.users.get(login.lower())
        if user is None:
            raise _Answer(404)
        return web.json_response(user)

    async def _org_members(self, request: web.Request) -> web.Response:
        logins = self.org_members.get(request.match_info["org"].lower(), [])
        return self._page(request, [self._user(login) for login in logins])

    async def _org_member(self, request: web.Request) -> web.Response:
        logins = self.org_members.get(request.match_info["org"].lower(), [])
        if request.match_info["login"].lower() not in {m.lower() for m in logins}:
            raise _Answer(404)
        return web.Response(status=204)

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

    # --- handlers: contents, checks, statuses, actions -----------------------------

    async def _contents(self, request: web.Request) -> web.Response:
        state = self._state(request)
        full = state["data"]["full_name"]
        path = unquote(request.match_info["path"]).strip("/")
        ref = request.query.get("ref") or state["data"]["default_branch"]
        git_dir = str(self.bare_path(full))
        code, out = await _git(
            "--git-dir", git_dir, "rev-parse", "--verify", "--quiet", f"{ref}:{path}"
        )
        if code != 0:
            raise _Answer(404)
        sha = out.decode().strip()
        _, kind = await _git("--git-dir", git_dir, "cat-file", "-t", sha)
        api = f"{state['data']['url']}/contents/{path}"
        if kind.strip() == b"tree":
            _, listing = await _git("--git-dir", git_dir, "ls-tree", "-l", sha)
            entries = []
            for line in listing.decode().splitlines():
                meta, _, name = line.partition("\t")
                _, entry_type, entry_sha, size = meta.split()
                entry_path = f"{path}/{name}" if path else name
                entries.append(
                    {
                        "type": "dir" if entry_type == "tree" else "file",
                        "name": name,
                        "path": entry_path,
                        "sha": entry_sha,
                        "size": 0 if size == "-" else int(size),
                        "url": f"{state['data']['url']}/contents/{entry_path}?ref={ref}",
                    }
                )
            return web.json_response(entries)
        _, content = await _git("--git-dir", git_dir, "cat-file", "blob", sha)
        if "application/vnd.github.raw" in request.headers.get("Accept", ""):
            return web.Response(body=content, content_type="application/vnd.github.raw")
        too_big = len(content) > 1_000_000  # GitHub leaves these out of the JSON
        return web.json_response(
            {
                "type": "file",
                "encoding": "none" if too_big else "base64",
                "size": len(content),
                "name": path.rpartition("/")[2],
                "path": path,
                "content": "" if too_big else base64.encodebytes(content).decode(),
                "sha": sha,
                "url": f"{api}?ref={ref}",
                "git_url": f"{state['data']['url']}/git/blobs/{sha}",
                "html_url": f"{state['data']['html_url']}/blob/{ref}/{path}",
                "download_url": f"{self.url}/raw/{full}/{ref}/{path}",
            }
        )

    async def _create_check_run(self, request: web.Request) -> web.Response:
        app = {"id": self.app_id, "slug": self.app_info["slug"], "name": self.app_info["name"]}
        run = self._new_check_run(self._state(request), request[JSON_BODY], app)
        return web.json_response(run, status=201)

    async def _get_check_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["check_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        return web.json_response(run)

    async def _update_check_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["check_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        fields = {k: v for k, v in request[JSON_BODY].items() if k != "head_sha"}
        self._apply_check_fields(run, fields)
        return web.json_response(run)

    async def _list_check_suites(self, request: web.Request) -> web.Response:
        """One suite per App on the commit, as GitHub groups check runs (an App may have a
        suite and no runs at all: one that never ran)."""
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        runs_by_app: dict[Any, list[dict[str, Any]]] = {}
        apps: dict[Any, dict[str, Any]] = {}
        for (suite_sha, app_id), (_forced, app) in state["suite_status"].items():
            if suite_sha == sha:
                runs_by_app.setdefault(app_id, [])
                apps[app_id] = app
        for run in state["check_runs"].values():
            if run["head_sha"] == sha:
                runs_by_app.setdefault(run["app"]["id"], []).append(run)
                apps[run["app"]["id"]] = run["app"]
        suites = []
        for app_id, runs in sorted(runs_by_app.items(), key=lambda item: str(item[0])):
            forced = state["suite_status"].get((sha, app_id))
            done = all(r["status"] == "completed" for r in runs)
            status = forced[0] if forced else ("completed" if done else "in_progress")
            conclusion = "failure" if any(r["conclusion"] == "failure" for r in runs) else "success"
            suites.append({
                "id": abs(hash((state["data"]["full_name"], sha, app_id))),
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "app": apps[app_id],
                "latest_check_runs_count": len(runs),
            })  # fmt: skip
        return web.json_response({"total_count": len(suites), "check_suites": suites})

    async def _list_check_runs(self, request: web.Request) -> web.Response:
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        query = request.query
        runs = [
            r
            for r in sorted(state["check_runs"].values(), key=lambda r: -r["id"])
            if r["head_sha"] == sha
            and query.get("check_name", r["name"]) == r["name"]
            and query.get("status", r["status"]) == r["status"]
        ]
        return self._page(request, runs, "check_runs")

    async def _combined_status(self, request: web.Request) -> web.Response:
        state = self._state(request)
        sha = await self._resolve(state, unquote(request.match_info["ref"]))
        statuses = state["statuses"].get(sha, [])
        states = {s["state"] for s in statuses}
        if states & {"failure", "error"}:
            combined = "failure"
        elif not statuses or "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        return web.json_response(
            {
                "state": combined,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(statuses),
                "repository": state["data"],
                "commit_url": f"{state['data']['url']}/commits/{sha}",
                "url": f"{state['data']['url']}/commits/{sha}/status",
            }
        )

    async def _create_status(self, request: web.Request) -> web.Response:
        body = request[JSON_BODY]
        if body.get("state") not in ("pending", "success", "failure", "error"):
            raise _validation_failed(resource="Status", field="state", code="invalid")
        status = self.set_status(
            self._state(request)["data"]["full_name"],
            request.match_info["sha"],
            body["state"],
            body.get("context", "default"),
            description=body.get("description") or "",
            target_url=body.get("target_url"),
        )
        return web.json_response(status, status=201)

    async def _get_workflow_run(self, request: web.Request) -> web.Response:
        run = self._state(request)["workflow_runs"].get(int(request.match_info["id"]))
        if run is None:
            raise _Answer(404)
        return web.json_response(run)

    async def _list_jobs(self, request: web.Request) -> web.Response:
        state, run_id = self._state(request), int(request.match_info["id"])
        if run_id not in state["workflow_runs"]:
            raise _Answer(404)
        jobs = [j for j in state["jobs"].values() if j["run_id"] == run_id]
        return self._page(request, jobs, "jobs")

    async def _job_logs_redirect(self, request: web.Request) -> web.Response:
        job_id = int(request.match_info["id"])
        if job_id not in self._state(request)["jobs"]:
            raise _Answer(404)
        # GitHub answers with a short-lived link to its log storage.
        raise web.HTTPFound(f"{self.url}/_blobs/job-logs/{job_id}")

    async def _job_log_blob(self, request: web.Request) -> web.Response:
        log = self._job_logs.get(int(request.match_info["id"]))
        if log is None:
            raise _Answer(404)
        return web.Response(text=log, content_type="text/plain")

    async def _list_artifacts(self, request: web.Request) -> web.Response:
        state, run_id = self._state(request), int(request.match_info["id"])
        if run_id not in state["workflow_runs"]:
            raise _Answer(404)
        return self._page(request, state["artifacts"].get(run_id, []), "artifacts")

    def _page(
        self,
        request: web.Request,
        items: list[Any],
        key: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> web.Response:
        """One page of `items` (per_page, page) with GitHub's Link header."""
        try:
            per_page = min(max(int(request.query.get("per_page", 30)), 1), 100)
            page = max(int(request.query.get("page", 1)), 1)
        except ValueError:
            raise _Answer(422, "Invalid pagination parameters") from None
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, math.ceil(len(items) / per_page))
        headers = {}
        if page < last:
            next_url = request.url.update_query(page=page + 1)
            last_url = request.url.update_query(page=last)
            headers["Link"] = f'<{next_url}>; rel="next", <{last_url}>; rel="last"'
        payload: Any = chunk
        if key is not None:
            payload = {"total_count": len(items), key: chunk, **(extra or {})}
        return web.json_response(payload, headers=headers)


def _number(request: web.Request) -> int:
    return int(request.match_info["number"])


def _error(status: int, message: str | None = None, errors: Any = None) -> web.Response:
    body: dict[str, Any] = {
        "message": message or HTTPStatus(status).phrase,
        "documentation_url": DOCS_URL,
        "status": str(status),
    }
    if errors is not None:
        body["errors"] = errors
    return web.json_response(body, status=status)


def _git_sync(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
) -> str:
    """git for seeding and assertions (outside request handling, so blocking is fine)."""
    result = subprocess.run(
        ["git", *args],
        env=GIT_ENV | dict(env or {}),
        input=input.encode() if input is not None else None,
        capture_output=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


async def _git(*args: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        env=GIT_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out


def public_key_of(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
async def fake_github(
    aiohttp_server: AiohttpServer, base_settings: Settings, tmp_path: Path
) -> FakeGitHub:
    """A running FakeGitHub for base_settings' App. Point Honk at it with
    base_settings.with_overrides(github_api_url=fake_github.url, github_url=fake_github.url)."""
    assert base_settings.app_id is not None and base_settings.private_key
    fake = FakeGitHub(
        app_id=base_settings.app_id,
        public_key_pem=public_key_of(base_settings.private_key),
        private_key_pem=base_settings.private_key,
        repos_root=tmp_path / "fake-github",
    )
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake
