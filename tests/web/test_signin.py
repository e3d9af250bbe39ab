"""Signing in and out on the web, against the fake GitHub's OAuth endpoints over loopback:
where `next` may send a browser after sign-in, and what signing out ends (a copied cookie too).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from app.store import NewRun
from app.web import SERVICES
from tests.calc_world import INSTALLATION, ISSUE, REPO
from tests.fakes.github import FakeGitHub
from tests.run_page_world import HONK_URL, csrf_of, sign_in

HONK_HOST = urlsplit(HONK_URL).netloc
COOKIE = "honk_session"


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
    page_client: TestClient, fake_github: FakeGitHub, raw_next: str
) -> None:
    location = await sign_in(page_client, fake_github, "alice", raw_next)
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
    page_client: TestClient, fake_github: FakeGitHub, raw_next: str, location: str
) -> None:
    assert await sign_in(page_client, fake_github, "alice", raw_next) == location
    assert urlsplit(where_a_browser_goes(location)).netloc == HONK_HOST


# -- signing out ---------------------------------------------------------------------------------


def cookie_of(page_client: TestClient) -> str:
    return page_client.session.cookie_jar.filter_cookies(page_client.make_url("/"))[COOKIE].value


async def test_a_copied_cookie_is_signed_out_with_its_session(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    store = page_client.app[SERVICES].store
    run = await store.runs.enqueue(
        NewRun(repo=REPO, installation_id=INSTALLATION, issue_number=ISSUE, requested_by="alice")
    )
    assert run is not None
    # Inside Honk's refresh margin: every request with this session refreshes its token first,
    # so a copy that is still honoured would refresh on its next request.
    fake_github.user_token_ttl = 60.0
    assert await sign_in(page_client, fake_github, "alice") == "/runs"
    page = await page_client.get(f"/runs/{run.id}")
    assert page.status == 200
    csrf = csrf_of(await page.text())
    copied = cookie_of(page_client)  # the latest cookie: its refresh token is unspent
    live = [t for t, g in fake_github.user_tokens.items() if g.login == "alice" and not g.revoked]
    token = live[-1]

    signed_out = await page_client.post("/signout", data={"csrf": csrf})
    assert signed_out.status == 200 and "You are signed out" in await signed_out.text()
    refreshes = len(fake_github.calls_to("POST", r"^/login/oauth/access_token$"))

    # The copy, replayed from another browser: treated as signed out, nothing refreshed.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as thief:
        headers = {"Cookie": f"{COOKIE}={copied}"}
        seen = await thief.get(
            page_client.make_url(f"/runs/{run.id}"), headers=headers, allow_redirects=False
        )
        assert seen.status == 302, seen.status
        assert seen.headers["Location"].startswith("/signin?next=")
        api = await thief.get(page_client.make_url(f"/api/runs/{run.id}"), headers=headers)
        assert api.status == 401
        listed = await thief.get(
            page_client.make_url("/runs"), headers=headers, allow_redirects=False
        )
        assert listed.status == 302
    assert len(fake_github.calls_to("POST", r"^/login/oauth/access_token$")) == refreshes

    # GitHub was asked to revoke the session's token, with the App's page_client credentials.
    (revocation,) = fake_github.calls_to(
        "DELETE", rf"^/applications/{re.escape(fake_github.oauth_client_id)}/token$"
    )
    assert revocation.json == {"access_token": token}
    credentials = f"{fake_github.oauth_client_id}:{fake_github.oauth_client_secret}"
    assert revocation.headers["Authorization"] == (
        "Basic " + base64.b64encode(credentials.encode()).decode()
    )
    assert fake_github.user_tokens[token].revoked
