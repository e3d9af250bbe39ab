"""What the run page tests share: a private calc repository, three people, signing in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from app.config import Settings
from tests.calc_world import REPO, calc_settings, seed_calc

SESSION_KEY = Fernet.generate_key().decode()


def seed_people(fake_github: Any) -> None:
    """octo-org/calc, private: alice may write, carol may read, bob may not see it."""
    seed_calc(fake_github)
    fake_github.repo(REPO)["data"].update(private=True, visibility="private")
    fake_github.set_permission(REPO, "carol", "read")
    fake_github.add_user("carol")
    fake_github.add_user("bob")


def page_settings(
    base: Settings, fake_github: Any, fake_anthropic: Any, fake_slack: Any, **overrides: Any
) -> Settings:
    """The calc world's settings with sign-in configured (the fake's OAuth client)."""
    values: dict[str, Any] = {
        "github_client_id": fake_github.oauth_client_id,
        "github_client_secret": fake_github.oauth_client_secret,
        "session_key": SESSION_KEY,
    }
    return calc_settings(base, fake_github, fake_anthropic, fake_slack, **(values | overrides))


async def sign_in(
    client: TestClient, fake_github: Any, login: str, next_path: str = "/runs"
) -> str:
    """Sign `login` in through the fake's authorize page; the path Honk sends them back to."""
    fake_github.sign_in_as(login)
    response = await client.get(f"/signin?next={next_path}", allow_redirects=False)
    assert response.status == 302, await response.text()
    authorize = response.headers["Location"]
    assert authorize.startswith(f"{fake_github.url}/login/oauth/authorize?")
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(authorize, allow_redirects=False) as back,
    ):
        assert back.status == 302
        callback = urlsplit(back.headers["Location"])
    response = await client.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert response.status == 302, await response.text()
    return response.headers["Location"]
