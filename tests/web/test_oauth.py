"""Sign-in with GitHub against the fake's web side: code exchange, refresh, user-token reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import gidgethub
import pytest

from app.config import Settings
from app.github.oauth import GitHubOAuth, OAuthError, UserToken, parse_token_answer
from tests.fakes.github import FakeGitHub

REPO = "octo-org/secret"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def oauth_settings(base_settings: Settings, fake_github: FakeGitHub) -> Settings:
    fake_github.add_installation(1, account="octo-org")
    fake_github.add_repo(REPO, private=True)
    fake_github.set_permission(REPO, "alice", "read")
    fake_github.add_user("bob")
    return base_settings.with_overrides(
        github_url=fake_github.url,
        github_api_url=fake_github.url,
        github_client_id=fake_github.oauth_client_id,
        github_client_secret=fake_github.oauth_client_secret,
    )


async def code_for(session: aiohttp.ClientSession, fake: FakeGitHub, login: str) -> str:
    """Walk the authorize step as a browser would: GitHub redirects back with a code."""
    fake.sign_in_as(login)
    oauth_url = GitHubOAuth(
        Settings()
        .with_overrides(github_url=fake.url, github_client_id=fake.oauth_client_id)
        .github,
        session,
    ).authorize_url(redirect_uri="http://honk.test/signin/callback", state="s-1")
    async with session.get(oauth_url, allow_redirects=False) as response:
        assert response.status == 302
        back = urlsplit(response.headers["Location"])
    assert back.netloc == "honk.test" and back.path == "/signin/callback"
    query = parse_qs(back.query)
    assert query["state"] == ["s-1"]
    return query["code"][0]


async def test_github_answers_form_encoded_unless_asked_for_json_and_200_for_a_bad_code(
    session: aiohttp.ClientSession, oauth_settings: Settings, fake_github: FakeGitHub
) -> None:
    code = await code_for(session, fake_github, "alice")
    form = {
        "client_id": fake_github.oauth_client_id,
        "client_secret": fake_github.oauth_client_secret,
        "code": code,
    }
    url = f"{fake_github.url}/login/oauth/access_token"
    async with session.post(url, data=form) as response:
        assert response.status == 200
        assert response.content_type == "application/x-www-form-urlencoded"
        answer = parse_token_answer(await response.text(), response.content_type)
    assert answer["access_token"].startswith("ghu_") and answer["token_type"] == "bearer"
    assert answer["expires_in"] == "28800" and answer["refresh_token"].startswith("ghr_")
    # The code was used: the same request now fails, with HTTP 200 and JSON when asked.
    async with session.post(url, data=form, headers={"Accept": "application/json"}) as response:
        assert response.status == 200 and response.content_type == "application/json"
        assert (await response.json())["error"] == "bad_verification_code"


async def test_exchange_and_the_token_reads_what_its_user_may_read(
    session: aiohttp.ClientSession, oauth_settings: Settings, fake_github: FakeGitHub
) -> None:
    oauth = GitHubOAuth(oauth_settings.github, session)
    alice = await oauth.exchange(
        await code_for(session, fake_github, "alice"),
        redirect_uri="http://honk.test/signin/callback",
    )
    assert alice.expires_at and alice.refresh_token and "ghu_" not in repr(alice)
    assert (await oauth.user(alice))["login"] == "alice"
    assert (await oauth.client(alice).getitem(f"/repos/{REPO}"))["full_name"] == REPO
    bob = await oauth.exchange(
        await code_for(session, fake_github, "bob"), redirect_uri="http://honk.test/signin/callback"
    )
    with pytest.raises(gidgethub.BadRequest) as refused:
        await oauth.client(bob).getitem(f"/repos/{REPO}")
    assert refused.value.status_code == 404  # as GitHub: a private repository is not there
    with pytest.raises(OAuthError) as bad:
        await oauth.exchange("not-a-code", redirect_uri="http://honk.test/signin/callback")
    assert bad.value.code == "bad_verification_code"


async def test_a_wrong_client_secret_is_refused(
    session: aiohttp.ClientSession, oauth_settings: Settings, fake_github: FakeGitHub
) -> None:
    wrong = GitHubOAuth(oauth_settings.with_overrides(github_client_secret="nope").github, session)
    with pytest.raises(OAuthError) as refused:
        await wrong.exchange(
            await code_for(session, fake_github, "alice"),
            redirect_uri="http://honk.test/signin/callback",
        )
    assert refused.value.code == "incorrect_client_credentials"


async def test_an_expired_user_token_is_refreshed_once_and_its_refresh_token_is_spent(
    session: aiohttp.ClientSession, oauth_settings: Settings, fake_github: FakeGitHub
) -> None:
    oauth = GitHubOAuth(oauth_settings.github, session)
    token = await oauth.exchange(
        await code_for(session, fake_github, "alice"),
        redirect_uri="http://honk.test/signin/callback",
    )
    fake_github.expire_user_tokens()
    with pytest.raises(gidgethub.BadRequest) as expired:
        await oauth.client(UserToken(token.access_token)).getitem("/user")  # no refresh token
    assert expired.value.status_code == 401
    stale = UserToken(token.access_token, 0.0, token.refresh_token, token.refresh_expires_at)
    refreshed: list[UserToken] = []

    async def keep(new: UserToken) -> None:
        refreshed.append(new)

    client = oauth.client(stale, on_refresh=keep)
    assert (await client.getitem("/user"))["login"] == "alice"
    assert (await client.getitem(f"/repos/{REPO}"))["private"] is True
    assert len(refreshed) == 1 and refreshed[0].access_token != token.access_token
    with pytest.raises(OAuthError) as spent:
        await oauth.refresh(stale)
    assert spent.value.code == "bad_refresh_token"


async def test_get_user_answers_user_tokens_only(
    session: aiohttp.ClientSession, fake_github: FakeGitHub, oauth_settings: Settings
) -> None:
    async def status_of(path: str, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(fake_github.url + path, headers=headers) as response:
            return response.status

    assert await status_of("/user", fake_github.user_token_for("bob")) == 200
    assert await status_of("/user", "ghu_unknown") == 401
    installation = fake_github.url + "/app/installations/1/access_tokens"
    app_jwt = {"Authorization": "Bearer " + _jwt(oauth_settings)}
    async with session.post(installation, headers=app_jwt, json={}) as response:
        installation_token = (await response.json())["token"]
    assert await status_of("/user", installation_token) == 403
    # A user token does not list an installation's repositories either.
    assert await status_of("/installation/repositories", fake_github.user_token_for("bob")) == 403


def _jwt(settings: Settings) -> str:
    from app.github.auth import GitHubApp

    return GitHubApp(settings.github, session=None).jwt()  # type: ignore[arg-type]


async def test_the_app_revokes_a_user_token_as_github_answers(
    session: aiohttp.ClientSession, oauth_settings: Settings, fake_github: FakeGitHub
) -> None:
    oauth = GitHubOAuth(oauth_settings.github, session)
    token = await oauth.exchange(
        await code_for(session, fake_github, "alice"),
        redirect_uri="http://honk.test/signin/callback",
    )
    url = f"{fake_github.url}/applications/{fake_github.oauth_client_id}/token"
    wrong = {"Authorization": aiohttp.encode_basic_auth(fake_github.oauth_client_id, "nope")}
    async with session.delete(url, headers=wrong, json={"access_token": token.access_token}) as r:
        assert r.status == 404
    right = {
        "Authorization": aiohttp.encode_basic_auth(
            fake_github.oauth_client_id, fake_github.oauth_client_secret
        )
    }
    async with session.delete(url, headers=right, json={}) as r:
        assert r.status == 422
    assert await oauth.revoke(token) is True
    with pytest.raises(gidgethub.BadRequest) as refused:
        await oauth.user(token)
    assert refused.value.status_code == 401  # the token no longer works
    # A second revocation (or an unknown token): GitHub's 404, which Honk takes as done.
    async with session.delete(url, headers=right, json={"access_token": token.access_token}) as r:
        assert r.status == 404
    assert await oauth.revoke(token) is False
    assert await oauth.revoke(UserToken("ghu_" + "x" * 36)) is False
