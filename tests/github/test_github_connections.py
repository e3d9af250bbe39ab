"""People's GitHub tokens kept for Slack: encrypted at rest, refreshed, forgotten on revoke."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app.config import Settings
from app.github.connections import GitHubConnections
from app.github.oauth import GitHubOAuth, UserToken
from app.store import Store
from app.store.tables import github_connections
from app.web import SERVICES, create_app
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub, ManualClock
from tests.fakes.slack import FakeSlack
from tests.golive_world import _connect_button, golive_settings
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.web.test_oauth import code_for

ALICE = "T0HONKTEAM:U0ALICE"
KEY = "dGhpcy1pcy1hLWZlcm5ldC1rZXktZm9yLXRlc3RzISE="  # 32 bytes, url-safe base64


@pytest.fixture
def settings(base_settings: Settings, fake_github: FakeGitHub) -> Settings:
    fake_github.add_user("alice")
    return base_settings.with_overrides(
        github_url=fake_github.url,
        github_api_url=fake_github.url,
        github_client_id=fake_github.oauth_client_id,
        github_client_secret=fake_github.oauth_client_secret,
        token_key=KEY,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def opened(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[GitHubConnections, Store, aiohttp.ClientSession]]:
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.store.database_url)
    async with aiohttp.ClientSession() as session:
        oauth = GitHubOAuth(settings.github, session, clock=clock)
        yield GitHubConnections(settings.web, store, oauth, clock=clock), store, session
    await store.close()


async def signed_in(
    session: aiohttp.ClientSession, settings: Settings, fake: FakeGitHub, login: str
) -> UserToken:
    code = await code_for(session, fake, login)
    oauth = GitHubOAuth(settings.github, session)
    return await oauth.exchange(code, redirect_uri="http://honk.test/signin/callback")


async def test_tokens_are_encrypted_at_rest_and_refreshed_when_expired(
    opened: tuple[GitHubConnections, Store, aiohttp.ClientSession],
    settings: Settings,
    fake_github: FakeGitHub,
    clock: ManualClock,
) -> None:
    connections, store, session = opened
    token = await signed_in(session, settings, fake_github, "alice")
    assert token.refresh_token
    connection = await connections.connect(ALICE, token)
    assert connection.login == "alice"

    async with store.engine.connect() as conn:
        secret = await conn.scalar(select(github_connections.c.secret))
    assert secret and token.access_token.encode() not in secret
    assert token.refresh_token.encode() not in secret
    files = [Path(str(store.engine.url.database))]
    files.append(files[0].with_name(files[0].name + "-wal"))
    stored = b"".join(f.read_bytes() for f in files if f.exists())
    assert b"ghu_" not in stored and b"ghr_" not in stored  # not in the database at all

    # Still fresh: the same token, no refresh.
    same = await connections.connection(ALICE)
    assert same is not None and same.token.access_token == token.access_token

    clock.advance(8 * 3600 + 60)  # user tokens last 8 hours
    fake_github.expire_user_tokens()
    found, renewed = await asyncio.gather(connections.client(ALICE), connections.client(ALICE))
    assert found is not None and renewed is not None
    assert found[0].token.access_token != token.access_token
    assert found[0].token.access_token == renewed[0].token.access_token  # one refresh, not two
    assert token.refresh_token not in fake_github.refresh_tokens  # the old one is spent
    user = await found[1].getitem("/user")
    assert user["login"] == "alice"
    again = await connections.connection(ALICE)
    assert again is not None and again.token.access_token == found[0].token.access_token


async def test_a_refresh_github_refuses_forgets_the_connection(
    opened: tuple[GitHubConnections, Store, aiohttp.ClientSession],
    settings: Settings,
    fake_github: FakeGitHub,
    clock: ManualClock,
) -> None:
    connections, store, session = opened
    await connections.connect(ALICE, await signed_in(session, settings, fake_github, "alice"))
    fake_github.revoke_user_tokens("alice")
    clock.advance(8 * 3600 + 60)
    assert await connections.connection(ALICE) is None
    assert await store.connections.get(ALICE) is None


async def test_a_connection_made_under_another_key_is_not_used(
    opened: tuple[GitHubConnections, Store, aiohttp.ClientSession],
    settings: Settings,
    fake_github: FakeGitHub,
) -> None:
    connections, store, session = opened
    await connections.connect(ALICE, await signed_in(session, settings, fake_github, "alice"))
    rotated = GitHubConnections(
        settings.with_overrides(token_key="b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE=").web,
        store,
        connections.oauth,
    )
    assert await rotated.connection(ALICE) is None  # undecryptable: forgotten, not guessed at


async def test_revoking_the_app_on_github_forgets_every_connection_of_that_person(
    aiohttp_client: ClientFactory, settings: Settings, fake_github: FakeGitHub
) -> None:
    client = await aiohttp_client(create_app(settings))
    services = client.app[SERVICES]
    async with aiohttp.ClientSession() as session:
        for slack_user in (ALICE, "T0HONKTEAM:U0ALICE2"):
            token = await signed_in(session, settings, fake_github, "alice")
            await services.connections.connect(slack_user, token)
    fake_github.add_user("bob")
    async with aiohttp.ClientSession() as session:
        bob = await signed_in(session, settings, fake_github, "bob")
    await services.connections.connect("T0HONKTEAM:U0BOB", bob)

    alice = fake_github.users["alice"]
    # GitHub's payload for this event: the action and who revoked, nothing more.
    payload: dict[str, Any] = {
        "action": "revoked",
        "sender": {k: alice[k] for k in ("login", "id", "node_id", "type", "site_admin")},
    }
    response = await post_webhook(client, "github_app_authorization", payload)
    assert response.status == 202
    store = services.store

    async def gone() -> bool:
        return (
            await store.connections.get(ALICE) is None
            and await store.connections.get("T0HONKTEAM:U0ALICE2") is None
        )

    await eventually(gone)
    assert await store.connections.get("T0HONKTEAM:U0BOB") is not None


# -- Connect GitHub from Slack, in browsers: a connection finishes only as it was begun --------

BOB = "T0HONKTEAM:U0BOB"


@pytest.fixture
async def honk(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> TestClient:
    settings = golive_settings(base_settings, fake_github, fake_anthropic, fake_slack, workers=0)
    return await aiohttp_client(create_app(settings, workers=0))


async def link_made_by_bob(honk: TestClient, fake_slack: FakeSlack) -> str:
    """bob, in Slack, makes a Connect GitHub link for his own Slack account: its path."""
    seen = len(fake_slack.responses)
    await fake_slack.command(honk, "link", user="U0BOB")
    return urlsplit(await _connect_button(fake_slack, seen)).path


async def press_continue(browser: Any, path: str) -> str:
    """Open the link and press Continue: GitHub's authorize URL the browser is sent to."""
    page = await browser.get(path)
    assert page.status == 200, await page.text()
    start = await browser.post(path, data={"csrf": _csrf(await page.text())}, allow_redirects=False)
    assert start.status == 302, await start.text()
    return str(start.headers["Location"])


async def at_github(fake_github: FakeGitHub, authorize: str, login: str) -> str:
    """`login` approves at GitHub's authorize page: the callback's path and query."""
    fake_github.sign_in_as(login)
    async with (
        aiohttp.ClientSession() as github,
        github.get(authorize, allow_redirects=False) as back,
    ):
        assert back.status == 302
        callback = urlsplit(back.headers["Location"])
    return f"{callback.path}?{callback.query}"


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def told_connected(fake_slack: FakeSlack) -> list[str]:
    messages = [*fake_slack.ephemeral, *fake_slack.messages()]
    return [m.text for m in messages if "connected GitHub" in m.text]


async def test_an_unfinished_connect_link_does_not_hijack_the_next_sign_in(
    honk: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    """The issue's attack: alice opens bob's link and presses Continue but stops at GitHub;
    her next ordinary sign-in must sign her in, and connect nobody to bob's Slack."""
    path = await link_made_by_bob(honk, fake_slack)
    await press_continue(honk, path)  # alice's browser; she closes GitHub's tab
    start = await honk.get("/signin?next=/runs", allow_redirects=False)
    callback = await at_github(fake_github, start.headers["Location"], "alice")
    done = await honk.get(callback, allow_redirects=False)
    store = honk.app[SERVICES].store
    assert await store.connections.get(BOB) is None  # bob's Slack does not act as alice
    assert done.status == 302 and done.headers["Location"] == "/runs"
    assert (await honk.get("/runs", allow_redirects=False)).status == 200  # signed in as alice
    assert told_connected(fake_slack) == []
    # The link's own state, should its GitHub tab come back now, finds no flow to finish.
    assert await store.connections.get(BOB) is None


async def test_a_plain_sign_in_forgets_a_connection_waiting_for_its_confirm(
    honk: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    path = await link_made_by_bob(honk, fake_slack)
    authorize = await press_continue(honk, path)
    asked = await honk.get(await at_github(fake_github, authorize, "alice"))
    assert "Connect the GitHub account <strong>alice</strong>" in await asked.text()
    start = await honk.get("/signin?next=/runs", allow_redirects=False)  # alice walks away
    done = await honk.get(await at_github(fake_github, start.headers["Location"], "alice"))
    assert done.status == 200  # the runs list, signed in
    confirm = await honk.post(f"{path}/confirm", data={"csrf": _csrf(await done.text())})
    assert confirm.status == 404
    assert await honk.app[SERVICES].store.connections.get(BOB) is None
    assert told_connected(fake_slack) == []


async def test_a_connection_finishes_only_with_the_state_made_for_it(
    honk: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    path = await link_made_by_bob(honk, fake_slack)
    authorize = await press_continue(honk, path)
    await honk.get("/signin?next=/runs", allow_redirects=False)  # a sign-in begun since
    late = await honk.get(await at_github(fake_github, authorize, "alice"), allow_redirects=False)
    assert late.status == 400  # the link's callback, after the flow was replaced
    assert await honk.app[SERVICES].store.connections.get(BOB) is None
    assert told_connected(fake_slack) == []


async def test_the_link_maker_cannot_confirm_for_the_person_who_signed_in(
    honk: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    """alice goes through bob's link to GitHub and back; the last page names both accounts.
    bob, knowing the link, cannot confirm it from his browser; alice cancels: nothing is
    connected and her token for it is revoked at GitHub."""
    path = await link_made_by_bob(honk, fake_slack)
    authorize = await press_continue(honk, path)
    asked = await honk.get(await at_github(fake_github, authorize, "alice"))
    page = await asked.text()
    assert asked.status == 200
    assert "Connect the GitHub account <strong>alice</strong> to the Slack user" in page
    assert "<strong>Bob (@bob)</strong>" in page  # the Slack user: name and handle
    store = honk.app[SERVICES].store
    assert await store.connections.get(BOB) is None  # nothing before the click
    waiting = [t for t, g in fake_github.user_tokens.items() if g.login == "alice"]

    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as bobs_browser:
        own = await bobs_browser.get(honk.make_url(path))
        forged = await bobs_browser.post(
            honk.make_url(f"{path}/confirm"), data={"csrf": _csrf(await own.text())}
        )
        assert forged.status == 404
    assert await store.connections.get(BOB) is None

    cancel = await honk.post(f"{path}/cancel", data={"csrf": _csrf(page)})
    assert cancel.status == 200 and "Nothing was connected" in await cancel.text()
    assert await store.connections.get(BOB) is None
    assert [fake_github.user_tokens[t].revoked for t in waiting] == [True]
    assert fake_github.calls_to("DELETE", r"^/applications/[^/]+/token$")
    again = await honk.post(f"{path}/confirm", data={"csrf": _csrf(page)})
    assert again.status == 404  # used up
    assert told_connected(fake_slack) == []


async def test_connecting_names_both_accounts_and_tells_the_slack_user_the_github_login(
    honk: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    path = await link_made_by_bob(honk, fake_slack)
    authorize = await press_continue(honk, path)
    asked = await (await honk.get(await at_github(fake_github, authorize, "bob"))).text()
    assert "Connect the GitHub account <strong>bob</strong> to the Slack user" in asked
    done = await honk.post(f"{path}/confirm", data={"csrf": _csrf(asked)})
    assert done.status == 200 and "<strong>bob</strong> on GitHub" in await done.text()
    connection = await honk.app[SERVICES].store.connections.get(BOB)
    assert connection is not None and connection.github_login == "bob"
    (note,) = await eventually(lambda: [m for m in fake_slack.ephemeral if m.user == "U0BOB"])
    assert "<@U0BOB> connected GitHub as `bob`." in note.text
