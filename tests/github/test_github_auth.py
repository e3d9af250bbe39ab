"""GitHub App auth against the fake GitHub: JWT claims, installation tokens, caching, identity."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import gidgethub
import jwt
import pytest

from app.config import Settings
from app.github import GitHubApp
from app.log import ContextFilter
from tests.fakes.github import FakeGitHub, ManualClock, public_key_of

REPO = "octo/widgets"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def settings(base_settings: Settings, fake_github: FakeGitHub) -> Settings:
    fake_github.add_installation(1, "octo")
    fake_github.add_repo(REPO)
    fake_github.add_repo("octo/gadgets")
    return base_settings.with_overrides(github_api_url=fake_github.url, github_url=fake_github.url)


@pytest.fixture
def clock(fake_github: FakeGitHub) -> ManualClock:
    clock = ManualClock()
    fake_github.clock = clock
    return clock


@pytest.fixture
def app(settings: Settings, session: aiohttp.ClientSession, clock: ManualClock) -> GitHubApp:
    return GitHubApp(settings.github, session, clock=clock)


def test_jwt_claims_are_backdated_short_lived_and_signed(
    app: GitHubApp, settings: Settings, clock: ManualClock
) -> None:
    token = app.jwt()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert settings.github.private_key is not None
    claims = jwt.decode(
        token,
        public_key_of(settings.github.private_key),
        algorithms=["RS256"],
        options={"verify_iat": False},
    )
    assert claims["iss"] == "4242"
    assert claims["iat"] == int(clock()) - 60
    assert 0 < claims["exp"] - claims["iat"] <= 600


def test_jwt_is_reused_until_a_minute_is_left(app: GitHubApp, clock: ManualClock) -> None:
    first = app.jwt()
    clock.advance(470)  # 70 s of life left
    assert app.jwt() == first
    clock.advance(20)  # 50 s left: too little for a request and its retries
    assert app.jwt() != first


async def test_app_endpoints_accept_the_jwt(app: GitHubApp, fake_github: FakeGitHub) -> None:
    info = await app.app_info()
    assert (info["id"], info["slug"]) == (4242, "honk-test")
    await app.app_info()
    assert len(fake_github.calls_to("GET", "^/app$")) == 1
    authorization = fake_github.calls_to("GET", "^/app$")[0].headers["Authorization"]
    assert authorization == f"Bearer {app.jwt()}"


async def test_token_is_fetched_once_then_cached(app: GitHubApp, fake_github: FakeGitHub) -> None:
    first = await app.installation_token(1)
    second = await app.installation_token(1)
    assert first is second
    assert len(fake_github.calls_to("POST", "^/app/installations/1/access_tokens$")) == 1
    assert first.token in fake_github.tokens


async def test_token_is_renewed_when_ten_minutes_are_left(
    app: GitHubApp, fake_github: FakeGitHub, clock: ManualClock
) -> None:
    first = await app.installation_token(1)
    clock.advance(49 * 60)  # 11 minutes left: still good
    assert (await app.installation_token(1)).token == first.token
    clock.advance(2 * 60)  # 9 minutes left: renew
    renewed = await app.installation_token(1)
    assert renewed.token != first.token
    assert renewed.expires_at > first.expires_at
    assert len(fake_github.calls_to("POST", "^/app/installations/1/access_tokens$")) == 2


async def test_scoped_token_asks_for_one_repository_and_the_run_permissions(
    app: GitHubApp, fake_github: FakeGitHub
) -> None:
    permissions = {"contents": "write", "issues": "write", "metadata": "read"}
    token = await app.installation_token(1, repositories=[REPO], permissions=permissions)
    (call,) = fake_github.calls_to("POST", "^/app/installations/1/access_tokens$")
    assert call.json == {"repositories": ["widgets"], "permissions": permissions}
    assert token.repositories == (REPO,)
    assert token.permissions == permissions
    # A different scope is a different token.
    unscoped = await app.installation_token(1)
    assert unscoped.token != token.token and unscoped.repositories is None

    gh = await app.installation_client(1, repositories=[REPO], permissions=permissions)
    assert (await gh.getitem(f"/repos/{REPO}"))["full_name"] == REPO
    with pytest.raises(gidgethub.BadRequest) as denied:
        await gh.getitem("/repos/octo/gadgets")
    assert denied.value.status_code == 403
    assert token.token not in str(denied.value)


async def test_long_tokens_are_accepted_and_redacted(
    app: GitHubApp, fake_github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    # An old-style prefix that no token pattern knows: only the registration redacts it.
    fake_github.token_prefix = "v1."
    token = await app.installation_token(1)
    assert len(token.token) > 40
    assert token.token not in repr(token)
    gh = await app.installation_client(1)
    assert (await gh.issue_comments(REPO, fake_github.add_issue(REPO)["number"])) == []

    logger = logging.getLogger("test.redaction")
    logger.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("cloning with %s", token.token)
    assert token.token not in caplog.text
    assert "[REDACTED]" in caplog.text


async def test_installation_client_sends_the_token(app: GitHubApp, fake_github: FakeGitHub) -> None:
    gh = await app.installation_client(1)
    token = await app.installation_token(1)
    await gh.getitem(f"/repos/{REPO}")
    (call,) = fake_github.calls_to("GET", f"^/repos/{REPO}$")
    assert call.headers["Authorization"] == f"token {token.token}"


async def test_installation_client_renews_its_token_as_it_lives_on(
    app: GitHubApp, fake_github: FakeGitHub, clock: ManualClock
) -> None:
    gh = await app.installation_client(1)
    clock.advance(3060)  # the first token has under 10 minutes left
    await gh.getitem(f"/repos/{REPO}")
    clock.advance(1200)  # the first token has expired; the client's is fresh
    await gh.getitem(f"/repos/{REPO}")
    used = {c.headers["Authorization"] for c in fake_github.calls_to("GET", f"^/repos/{REPO}$")}
    assert len(used) == 1
    assert len(fake_github.calls_to("POST", "^/app/installations/1/access_tokens$")) == 2


async def test_forget_drops_cached_tokens(app: GitHubApp, fake_github: FakeGitHub) -> None:
    first = await app.installation_token(1)
    app.forget(1)
    assert (await app.installation_token(1)).token != first.token


async def test_unknown_installation_is_a_404(app: GitHubApp) -> None:
    with pytest.raises(gidgethub.BadRequest) as missing:
        await app.installation_token(999)
    assert missing.value.status_code == 404


@pytest.mark.parametrize(
    ("github_url", "host"),
    [
        (None, "127.0.0.1"),
        ("https://github.com", "github.com"),
        ("https://ghe.example.com", "ghe.example.com"),
    ],
)
async def test_bot_identity_uses_the_bot_user_and_noreply_host(
    settings: Settings,
    session: aiohttp.ClientSession,
    fake_github: FakeGitHub,
    github_url: str | None,
    host: str,
) -> None:
    if github_url is not None:
        settings = settings.with_overrides(github_url=github_url)
    app = GitHubApp(settings.github, session)
    login, email = await app.bot_identity(1)
    assert login == "honk-test[bot]"
    assert email == f"{fake_github.bot_user_id}+honk-test[bot]@users.noreply.{host}"
    assert await app.bot_identity(1) == (login, email)
    assert len(fake_github.calls_to("GET", r"^/users/honk-test\[bot\]$")) == 1


async def test_bot_identity_is_read_with_the_installation_token(
    app: GitHubApp, fake_github: FakeGitHub
) -> None:
    await app.bot_identity(1)
    (call,) = fake_github.calls_to("GET", r"^/users/honk-test\[bot\]$")
    assert call.headers["Authorization"].startswith("token ghs_")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/honk-test[bot]"),
        ("GET", "/users/octocat"),
        ("GET", f"/repos/{REPO}"),
        ("GET", "/app"),
        ("POST", "/app/installations/1/access_tokens"),
        ("GET", f"/repos/{REPO}/issues/1"),
    ],
)
async def test_anonymous_rest_requests_are_refused_as_ghes_private_mode_does(
    settings: Settings, session: aiohttp.ClientSession, method: str, path: str
) -> None:
    fake_github_url = settings.github.api_url
    async with session.request(method, fake_github_url + path) as response:
        body = await response.json()
    assert response.status == 401
    assert body["message"] == "Requires authentication"
    assert body["documentation_url"].startswith("https://docs.github.com/")


async def test_a_wrong_key_is_refused(
    settings: Settings, session: aiohttp.ClientSession, fake_github: FakeGitHub
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    app = GitHubApp(settings.with_overrides(private_key=pem).github, session)
    with pytest.raises(gidgethub.BadRequest) as refused:
        await app.installation_token(1)
    assert refused.value.status_code == 401
    assert fake_github.tokens == {}
