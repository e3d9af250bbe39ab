"""What the run page tests share: a private calc repository, three people, signing in."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from yarl import URL

from app.config import Settings
from tests.calc_world import REPO, calc_settings, seed_calc
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory

SESSION_KEY = Fernet.generate_key().decode()
HONK_URL = "http://honk.example.test"  # http: the test client has no TLS for a Secure cookie


def seed_people(fake_github: FakeGitHub) -> None:
    """octo-org/calc, private: alice may write, carol may read, bob may not see it."""
    seed_calc(fake_github)
    fake_github.repo(REPO)["data"].update(private=True, visibility="private")
    fake_github.set_permission(REPO, "carol", "read")
    fake_github.add_user("carol")
    fake_github.add_user("bob")


def page_settings(
    base: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    **overrides: Any,
) -> Settings:
    """The calc world's settings with sign-in configured (the fake's OAuth client)."""
    values: dict[str, Any] = {
        "github_client_id": fake_github.oauth_client_id,
        "github_client_secret": fake_github.oauth_client_secret,
        "session_key": SESSION_KEY,
    }
    return calc_settings(base, fake_github, fake_anthropic, fake_slack, **(values | overrides))


async def sign_in(
    client: TestClient, fake_github: FakeGitHub, login: str, next_path: str = "/runs"
) -> str:
    """Sign `login` in as a browser does: /signin with `next` sent exactly as written (its
    percent escapes untouched), the fake's authorize page, the callback. The path Honk sends
    them back to."""
    fake_github.sign_in_as(login)
    base = str(client.make_url("/")).rstrip("/")
    response = await client.session.get(
        URL(f"{base}/signin?next={next_path}", encoded=True), allow_redirects=False
    )
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


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def page_honk(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fakes: tuple[Any, Any, Any],
    *,
    workers: int,
) -> TestClient:
    """Honk's web app with sign-in, over the calc world and its three people."""
    # Imported here: this module is a plugin of every test session (tests/conftest.py), and
    # app.web brings all of Honk (seconds) into runs that never start it.
    from app.web import create_app

    fake_github, fake_anthropic, fake_slack = fakes
    seed_people(fake_github)
    settings = page_settings(
        base_settings, fake_github, fake_anthropic, fake_slack, honk_url=HONK_URL, workers=workers
    )
    return await aiohttp_client(create_app(settings, workers=workers))


@pytest.fixture
async def page_client(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> TestClient:
    """`page_honk` with no workers: the tests store runs and their events themselves."""
    fakes = (fake_github, fake_anthropic, fake_slack)
    return await page_honk(aiohttp_client, base_settings, fakes, workers=0)
