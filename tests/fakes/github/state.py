"""The fake's state: its records, seeding, reading state, and helpers the handlers share."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DOCS_URL = "https://docs.github.com/rest"
APP_SLUG = "honk-test"
# The App's OAuth client (sign-in with GitHub); GET /app names it as GitHub does.
OAUTH_CLIENT_ID = "Iv1.fakeclient0001"
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
    at: float = 0.0  # the fake's clock when it arrived


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


class VirtualClock(ManualClock):
    """A clock whose time passes only for those who sleep on it (`sleep`): give it to the
    fake and, as the clock and sleep of GitHub's side, to Honk, and a wait of minutes takes
    none. `auto`: every `tick` of real time, time moves on to the next sleeper's wake-up;
    real work in between (requests, git, the sandbox) takes no time. Not `auto`: time
    moves only when the test calls `advance`."""

    def __init__(self, start: float | None = None, *, auto: bool = True, tick: float = 0.01):
        super().__init__(start)
        self.auto = auto
        self.tick = tick
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many are asleep on this clock."""
        return sum(1 for _, _, woken in self._sleepers if not woken.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        if self.auto and (self._driver is None or self._driver.done()):
            self._driver = asyncio.create_task(self._drive())
        await woken

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._wake()

    async def _drive(self) -> None:
        while self.waiting:
            await asyncio.sleep(self.tick)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
                heapq.heappop(self._sleepers)
            if self._sleepers:
                self.now = max(self.now, self._sleepers[0][0])
                self._wake()

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)


class _Answer(Exception):
    """Raised by handlers to answer with GitHub's JSON error shape."""

    def __init__(self, status: int, message: str | None = None, errors: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message or HTTPStatus(status).phrase
        self.errors = errors


def _validation_failed(**error: Any) -> _Answer:
    return _Answer(422, "Validation Failed", [error])


class GitHubState:
    """What the fake knows (installations, tokens, repositories and all in them), how
    tests seed and read it, and the helpers every group of handlers shares."""

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
            "client_id": OAUTH_CLIENT_ID,
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
        self._held: list[tuple[str, re.Pattern[str], asyncio.Event]] = []
        self._ids = itertools.count(10_001)
        self._access: dict[Any, str | None] = {}  # route -> None (token), "jwt", "public"

    # --- seeding -------------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str] | None = None,
        private: bool = False,
        topics: Sequence[str] = (),
        language: str | None = None,
        archived: bool = False,
        fork: bool = False,
        git: bool = True,
    ) -> dict[str, Any]:
        """A repository backed by a real bare git repo; `files` make its first commit.

        files=None commits a README; files={} leaves the repository empty. `topics`,
        `language`, `archived`, `fork`: what GitHub's repository object says of them.
        git=False: no bare repository, only the REST object (listings, permissions, code
        search over `files`, kept in memory), so a test can hold hundreds cheaply.
        """
        owner, _, name = full_name.partition("/")
        if full_name.lower() in self._repos:
            raise ValueError(f"{full_name} already exists")
        if git:
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
            "fork": fork,
            "archived": archived,
            "disabled": False,
            "html_url": f"{self.url}/{full_name}",
            "url": api,
            "clone_url": f"{self.url}/{full_name}.git",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "labels_url": f"{api}/labels{{/name}}",
            "default_branch": default_branch,
            "topics": list(topics),
            "language": language,
            # The merge methods the repository allows (Settings -> General -> Pull Requests).
            "allow_squash_merge": True,
            "allow_merge_commit": True,
            "allow_rebase_merge": True,
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
            "reviews": {},  # pull number -> [review], oldest first
            "protection": {},  # branch -> {"required_approving_review_count": n}
            "deployments": {},  # id -> deployment
            "deployment_statuses": {},  # deployment id -> [status], newest first
            # path -> text of a repository without git (git=False), for code search.
            "code": None if git else dict(files or {}),
        }
        if git and files != {}:
            self.commit_files(
                full_name, files or {"README.md": f"# {name}\n"}, message="Initial commit"
            )
        return data

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
                    # An empty work tree: update-index refuses a bare repository without one.
                    removing = env | {"GIT_WORK_TREE": tmp}
                    _git_sync("update-index", "--force-remove", "--", path, env=removing)
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

    # --- shared by the handlers ----------------------------------------------------

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

    def _authorize_user(self, request: web.Request, access: str | None) -> bool:
        """Whether a user token authorizes the request (the OAuth section says)."""
        return False

    def _state(self, request: web.Request) -> dict[str, Any]:
        return self.repo(f"{request.match_info['owner']}/{request.match_info['repo']}")

    def _actor(self, request: web.Request) -> dict[str, Any]:
        """Whoever the request acts as: the App's bot for installation tokens."""
        return self._bot_user()

    def _now(self, at: float | None = None) -> str:
        moment = self.clock() if at is None else at
        return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

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

    def _set_pull_state(self, state: dict[str, Any], pr: dict[str, Any], value: str) -> None:
        closed = None if value == "open" else self._now()
        for item in (pr, state["issues"][pr["number"]]):
            item.update(state=value, closed_at=closed, updated_at=self._now())

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
