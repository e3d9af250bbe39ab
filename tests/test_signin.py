"""Signing in and out on the web, against the fake GitHub's OAuth endpoints over loopback:
where `next` may send a browser after sign-in, and what signing out ends (a copied cookie too).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from app.config import Settings
from app.web import create_app
from tests.helpers import ClientFactory
from tests.run_page_world import page_settings, seed_people

HONK_URL = "http://honk.example.test"  # http: the test client has no TLS for a Secure cookie
HONK_HOST = urlsplit(HONK_URL).netloc
COOKIE = "honk_session"


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: Any,
    fake_anthropic: Any,
    fake_slack: Any,
) -> TestClient:
    seed_people(fake_github)
    settings = page_settings(
        base_settings, fake_github, fake_anthropic, fake_slack, honk_url=HONK_URL, workers=0
    )
    return await aiohttp_client(create_app(settings, workers=0))


async def round_trip(client: TestClient, fake_github: Any, raw_next: str) -> str:
    """The whole sign-in as a browser makes it, `next` sent exactly as written (its percent
    escapes untouched): /signin, GitHub's authorize page, the callback. The final Location."""
    fake_github.sign_in_as("alice")
    base = str(client.make_url("/")).rstrip("/")
    start = await client.session.get(
        URL(f"{base}/signin?next={raw_next}", encoded=True), allow_redirects=False
    )
    assert start.status == 302, await start.text()
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{fake_github.url}/login/oauth/authorize?")
    async with (
        aiohttp.ClientSession() as github,
        github.get(authorize, allow_redirects=False) as back,
    ):
        assert back.status == 302
        callback = urlsplit(back.headers["Location"])
    done = await client.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert done.status == 302, await done.text()
    return done.headers["Location"]


def where_a_browser_goes(location: str) -> str:
    """The URL a browser follows for this Location (WHATWG's parser, the parts that matter
    here): tabs and line breaks are dropped anywhere, leading C0 controls and spaces too,
    and a backslash is a slash in an http(s) URL."""
    cleaned = re.sub(r"[\t\n\r]", "", location).lstrip("".join(map(chr, range(0x21))))
    return urljoin(HONK_URL + "/runs/1", cleaned.replace("\\", "/"))


@pytest.mark.parametrize(
    "raw_next",
    [
        "/%09/evil.example/landed",  # the issue's: tab
        "/%0A/evil.example/landed",  # line feed
        "/%0D/evil.example/landed",  # carriage return
        "/%0D%0A/evil.example/landed",
        "%09//evil.example/landed",  # a tab before it all
        "/%09%09/evil.example/landed",
        "%2F%09%2Fevil.example%2Flanded",  # every character encoded
        "/%5Cevil.example/landed",  # /\evil
        "/%5C%5Cevil.example/landed",
        "%5C%5Cevil.example/landed",
        "//evil.example/landed",
        "%2F%2Fevil.example/landed",
        "///evil.example/landed",
        "/%20/evil.example/landed",  # whitespace is not part of a path Honk makes
        "/%E3%80%80/evil.example/landed",  # an ideographic space
        "/%E2%80%8B/evil.example/landed",  # a zero-width space
        "/%00/evil.example/landed",
        "/%7F/evil.example/landed",
        "https://evil.example/landed",
        "https:evil.example/landed",
        "javascript:alert(1)",
        "evil.example/landed",
        "",
    ],
)
async def test_next_that_leaves_honk_comes_back_to_the_runs_list(
    client: TestClient, fake_github: Any, raw_next: str
) -> None:
    location = await round_trip(client, fake_github, raw_next)
    assert location == "/runs"
    assert urlsplit(where_a_browser_goes(location)).netloc == HONK_HOST


@pytest.mark.parametrize(
    ("raw_next", "location"),
    [
        ("/runs/7", "/runs/7"),
        (
            "/runs%3Frepo%3Docto-org%252Fcalc%26state%3Dactive",
            "/runs?repo=octo-org/calc&state=active",
        ),
        ("/runs/7%23diff", "/runs/7#diff"),
        ("/", "/"),
        # Encoded twice: a path on Honk with %2F in it, never a second host.
        ("/%252F%252Fevil.example/landed", "/%2F%2Fevil.example/landed"),
        ("/%2509/evil.example/landed", "/%09/evil.example/landed"),
    ],
)
async def test_a_path_on_honk_is_where_sign_in_ends(
    client: TestClient, fake_github: Any, raw_next: str, location: str
) -> None:
    assert await round_trip(client, fake_github, raw_next) == location
    assert urlsplit(where_a_browser_goes(location)).netloc == HONK_HOST
