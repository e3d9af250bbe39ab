"""Fake GitHub on loopback: the REST endpoints Honk uses and git over HTTP, seeded by tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from app.config import Settings
from tests.fakes.github.app_installations import AppMixin
from tests.fakes.github.auth import AuthMixin, public_key_of
from tests.fakes.github.checks import ACTIONS_APP, ChecksMixin
from tests.fakes.github.contents import ContentsMixin
from tests.fakes.github.deployments import DeploymentsMixin
from tests.fakes.github.issues import IssuesMixin
from tests.fakes.github.merging import MergingMixin
from tests.fakes.github.oauth import OAuthMixin, UserGrant
from tests.fakes.github.search import SearchMixin
from tests.fakes.github.state import (
    APP_SLUG,
    DOCS_URL,
    SECONDARY_RATE_LIMIT,
    Call,
    Handler,
    IssuedToken,
    ManualClock,
    ScriptedAnswer,
    VirtualClock,
)

__all__ = [
    "ACTIONS_APP",
    "APP_SLUG",
    "DOCS_URL",
    "SECONDARY_RATE_LIMIT",
    "Call",
    "FakeGitHub",
    "IssuedToken",
    "ManualClock",
    "ScriptedAnswer",
    "UserGrant",
    "VirtualClock",
    "fake_github",
    "public_key_of",
]


class FakeGitHub(
    AuthMixin,
    AppMixin,
    MergingMixin,
    IssuesMixin,
    ContentsMixin,
    ChecksMixin,
    DeploymentsMixin,
    OAuthMixin,
    SearchMixin,
):
    """GitHub's REST API and git smart HTTP for the tests, on one aiohttp app (`.app`).

    state.GitHubState holds what it knows; each other module adds one group of handlers
    (and the seeding for it), and the route table below ties paths to them."""

    def __init__(
        self,
        *,
        app_id: int,
        public_key_pem: str,
        repos_root: Path,
        private_key_pem: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            app_id=app_id,
            public_key_pem=public_key_pem,
            repos_root=repos_root,
            private_key_pem=private_key_pem,
            clock=clock,
        )
        self._oauth_init()
        self.app = web.Application(middlewares=[self._middleware])
        self._add_routes()

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
            ("GET", "/users/{login}", self._get_user, None),
            ("GET", "/search/code", self._search_code, None),
            ("GET", "/user", self._authenticated_user, "user"),
            ("GET", "/login/oauth/authorize", self._oauth_authorize, "public"),
            ("POST", "/login/oauth/access_token", self._oauth_access_token, "public"),
            # Basic auth with the OAuth client's id and secret, checked by the handler.
            ("DELETE", "/applications/{client_id}/token", self._delete_app_token, "public"),
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
            ("GET", f"{repo}/pulls/{number}/files", self._list_pull_files, None),
            ("GET", f"{repo}/pulls/{number}/reviews", self._list_reviews, None),
            ("POST", f"{repo}/pulls/{number}/reviews", self._create_review, None),
            ("PUT", f"{repo}/pulls/{number}/merge", self._merge_pull, None),
            ("POST", "/graphql", self._graphql, None),
            ("GET", repo + "/deployments", self._list_deployments, None),
            ("GET", repo + "/deployments/{id:\\d+}/statuses", self._list_deployment_statuses, None),
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


@pytest.fixture
async def fake_github(
    aiohttp_server: AiohttpServer, base_settings: Settings, tmp_path: Path
) -> FakeGitHub:
    """A running FakeGitHub for base_settings' App. Point Honk at it with
    base_settings.with_overrides(github_api_url=fake_github.url, github_url=fake_github.url)."""
    assert base_settings.github.app_id is not None and base_settings.github.private_key
    fake = FakeGitHub(
        app_id=base_settings.github.app_id,
        public_key_pem=public_key_of(base_settings.github.private_key),
        private_key_pem=base_settings.github.private_key,
        repos_root=tmp_path / "fake-github",
    )
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake
