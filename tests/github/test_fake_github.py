"""The fake GitHub itself: it refuses what GitHub refuses, and serves real git over HTTP."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from app.config import Settings
from app.github import GitHubApp
from tests.fakes.github import FakeGitHub, ManualClock

REPO = "octo/widgets"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def app(
    fake_github: FakeGitHub, base_settings: Settings, session: aiohttp.ClientSession
) -> GitHubApp:
    fake_github.add_installation(1, "octo")
    fake_github.add_repo(REPO, files={"README.md": "hello\n"})
    fake_github.add_repo("octo/private", private=True)
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    return GitHubApp(settings.github, session)


async def test_tokens_look_like_github_s_and_are_recorded(
    app: GitHubApp, fake_github: FakeGitHub
) -> None:
    token = await app.installation_token(1, repositories=[REPO], permissions={"issues": "write"})
    assert token.token.startswith("ghs_") and len(token.token) > 40
    issued = fake_github.tokens[token.token]
    assert issued.installation_id == 1
    assert issued.repositories == (REPO,)
    assert issued.permissions == {"issues": "write"}


async def test_requests_need_a_valid_token(
    app: GitHubApp, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    url = f"{fake_github.url}/repos/{REPO}"
    async with session.get(url) as response:
        assert response.status == 401
        assert (await response.json())["message"] == "Requires authentication"
    async with session.get(url, headers={"Authorization": "token ghs_forged"}) as response:
        assert response.status == 401
        assert (await response.json())["message"] == "Bad credentials"
    async with session.get(url, headers={"Authorization": f"Bearer {app.jwt()}"}) as response:
        assert response.status == 401  # the App's JWT only opens /app endpoints
    token = await app.installation_token(1)
    async with session.get(url, headers={"Authorization": f"Bearer {token.token}"}) as response:
        assert response.status == 200
        assert (await response.json())["full_name"] == REPO


async def test_tokens_expire_and_die_with_their_installation(
    app: GitHubApp, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    clock = ManualClock()
    fake_github.clock = clock
    fake_github.token_ttl = 60
    url = f"{fake_github.url}/repos/{REPO}"
    token = (await app.installation_token(1)).token
    clock.advance(61)
    async with session.get(url, headers={"Authorization": f"token {token}"}) as response:
        assert response.status == 401
    fake_github.token_ttl = 3600
    app.forget(1)
    token = (await app.installation_token(1)).token
    fake_github.remove_installation(1)
    async with session.get(url, headers={"Authorization": f"token {token}"}) as response:
        assert response.status == 401


async def test_app_endpoints_check_the_jwt(
    app: GitHubApp, fake_github: FakeGitHub, base_settings: Settings, session: aiohttp.ClientSession
) -> None:
    now = int(time.time())
    assert base_settings.github.private_key is not None

    def signed(**claims: int | str) -> str:
        base: dict[str, int | str] = {"iat": now - 60, "exp": now + 540, "iss": "4242"}
        return jwt.encode(base | claims, base_settings.github.private_key, algorithm="RS256")

    refused = {
        "expired": signed(iat=now - 700, exp=now - 100),
        "too long": signed(exp=now + 3600),
        "issued later": signed(iat=now + 120, exp=now + 500),
        "another app": signed(iss="1"),
        "garbage": "not-a-jwt",
    }
    for why, token in refused.items():
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{fake_github.url}/app", headers=headers) as response:
            assert response.status == 401, why
    headers = {"Authorization": f"Bearer {signed()}"}
    async with session.get(f"{fake_github.url}/app", headers=headers) as response:
        assert response.status == 200


async def test_unknown_routes_answer_github_s_404(
    app: GitHubApp, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    token = (await app.installation_token(1)).token
    headers = {"Authorization": f"token {token}"}
    async with session.get(f"{fake_github.url}/nope/nope", headers=headers) as response:
        assert response.status == 404
        body = await response.json()
        assert body["message"] == "Not Found" and "documentation_url" in body
    async with session.get(f"{fake_github.url}/repos/octo/absent", headers=headers) as response:
        assert response.status == 404


async def test_calls_are_recorded(app: GitHubApp, fake_github: FakeGitHub) -> None:
    gh = await app.installation_client(1)
    await gh.create_issue(REPO, "Title", "Body", ["bug"])
    await gh.find_pull(REPO, "octo", "honk/1")
    (create,) = fake_github.calls_to("POST", rf"^/repos/{REPO}/issues$")
    assert create.json == {"title": "Title", "body": "Body", "labels": ["bug"]}
    (pulls,) = fake_github.calls_to("GET", r"/pulls$")
    assert pulls.query["head"] == "octo:honk/1" and pulls.query["state"] == "all"
    assert fake_github.repo(REPO)["issues"][1]["labels"][0]["name"] == "bug"


async def test_rate_limits_are_github_s(
    app: GitHubApp, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    """Primary: X-RateLimit-* on every installation answer, a 403 at zero until the reset.
    Secondary: past 80 writes a minute (or 500 an hour), a 403 with Retry-After; refused
    requests spend nothing."""
    clock = ManualClock()
    fake_github.clock = clock
    token = (await app.installation_token(1)).token
    headers = {"Authorization": f"token {token}"}
    issue = f"{fake_github.url}/repos/{REPO}/issues/1"
    fake_github.add_issue(REPO, 1, title="Limits")
    async with session.get(issue, headers=headers) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Limit"] == "5000"
        assert response.headers["X-RateLimit-Remaining"] == "4999"
        assert response.headers["X-RateLimit-Resource"] == "core"
        reset = int(response.headers["X-RateLimit-Reset"])
        assert reset == int(clock()) + 3600

    comments = f"{issue}/comments"
    for n in range(80):
        async with session.post(comments, json={"body": f"{n}"}, headers=headers) as response:
            assert response.status == 201
    async with session.post(comments, json={"body": "81st"}, headers=headers) as response:
        assert response.status == 403
        assert response.headers["Retry-After"] == "60"
        assert "secondary rate limit" in (await response.json())["message"]
    assert len(fake_github.rate_limited) == 1
    assert fake_github.busiest_window(1, 60) == 80
    clock.advance(60)  # the first minute's writes are behind it
    async with session.post(comments, json={"body": "later"}, headers=headers) as response:
        assert response.status == 201
    assert fake_github.primary_remaining(1) == 5000 - 82  # the refused one spent nothing

    fake_github.set_primary_used(1, 5000)
    async with session.get(issue, headers=headers) as response:
        assert response.status == 403
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert "API rate limit exceeded" in (await response.json())["message"]
    clock.advance(reset - clock())
    async with session.get(issue, headers=headers) as response:
        assert response.status == 200
        assert response.headers["X-RateLimit-Remaining"] == "4999"


async def test_a_pr_needs_commits_and_an_existing_branch(
    app: GitHubApp, fake_github: FakeGitHub
) -> None:
    gh = await app.installation_client(1)
    with pytest.raises(Exception, match="Validation Failed") as missing:
        await gh.open_pull(REPO, head="honk/none", base="main", title="T", body="")
    assert "head" in str(missing.value)
    sha = fake_github.branch_sha(REPO, "main")
    fake_github.git(REPO, "update-ref", "refs/heads/honk/same", str(sha))
    with pytest.raises(Exception, match="No commits between"):
        await gh.open_pull(REPO, head="honk/same", base="main", title="T", body="")


async def _git(*args: str, cwd: Path | None = None, token: str | None = None) -> int:
    """Run git against the fake, the token in a header (never on the command line)."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Honk",
        "GIT_AUTHOR_EMAIL": "honk@example.com",
        "GIT_COMMITTER_NAME": "Honk",
        "GIT_COMMITTER_EMAIL": "honk@example.com",
    }
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


async def test_git_over_http_with_installation_tokens(
    app: GitHubApp, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    clone_url = f"{fake_github.url}/{REPO}.git"
    work = tmp_path / "work"
    assert await _git("clone", "-q", clone_url, str(work)) != 0  # no token
    scoped = await app.installation_token(1, repositories=["octo/private"])
    assert await _git("clone", "-q", clone_url, str(work), token=scoped.token) != 0
    token = (await app.installation_token(1, repositories=[REPO])).token
    assert await _git("clone", "-q", clone_url, str(work), token=token) == 0
    assert (work / "README.md").read_text() == "hello\n"

    (work / "fix.txt").write_text("fixed\n")
    assert await _git("add", "fix.txt", cwd=work) == 0
    assert await _git("commit", "-q", "-m", "Fix", cwd=work) == 0
    assert await _git("push", "-q", "origin", "HEAD:refs/heads/honk/1", cwd=work) != 0
    assert await _git("push", "-q", "origin", "HEAD:refs/heads/honk/1", cwd=work, token=token) == 0
    assert fake_github.file_at(REPO, "honk/1", "fix.txt") == "fixed\n"
    assert not (work / ".git" / "config").read_text().count(token)

    gh = await app.installation_client(1, repositories=[REPO])
    pr, created = await gh.open_pull(REPO, head="honk/1", base="main", title="Fix", body="")
    assert created and pr["head"]["sha"] == fake_github.branch_sha(REPO, "honk/1")


async def test_merging_honours_the_methods_allowed_a_moved_head_and_rebases_for_real(
    app: GitHubApp, fake_github: FakeGitHub, session: aiohttp.ClientSession
) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    head = fake_github.commit_files(
        REPO, {"a.txt": "one\n"}, branch="feature", from_ref="main", message="Add a"
    )
    fake_github.commit_files(REPO, {"b.txt": "two\n"}, branch="feature", message="Add b")
    pr = fake_github.add_pull(REPO, head="feature", title="Two files")
    token = fake_github.user_token_for("alice")
    url = f"{fake_github.url}/repos/{REPO}/pulls/{pr['number']}/merge"
    headers = {"Authorization": f"Bearer {token}"}
    fake_github.allow_merge_methods(REPO, squash=False)

    async def merge(body: dict[str, str]) -> tuple[int, dict[str, object]]:
        async with session.put(url, json=body, headers=headers) as response:
            return response.status, await response.json()

    status, answer = await merge({"merge_method": "squash"})
    assert (status, answer["message"]) == (405, "Squash merges are not allowed on this repository.")
    status, answer = await merge({"merge_method": "rebase", "sha": head})  # not the head now
    assert status == 409 and "Head branch was modified" in str(answer["message"])
    status, answer = await merge({"merge_method": "rebase"})
    assert status == 200 and answer["merged"] is True
    log = fake_github.git(REPO, "log", "--format=%s", "main").split("\n")
    assert log[:2] == ["Add b", "Add a"]  # the commits, rebased onto main
    assert fake_github.branch_sha(REPO, "main") == answer["sha"] != head
    assert fake_github.file_at(REPO, "main", "b.txt") == "two\n"
    status, answer = await merge({"merge_method": "merge"})
    assert status == 405  # merged already
