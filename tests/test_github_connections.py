"""People's GitHub tokens kept for Slack: encrypted at rest, refreshed, forgotten on revoke."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from app.config import Settings
from app.github.connections import GitHubConnections
from app.github.oauth import GitHubOAuth, UserToken
from app.store import Store
from app.store.tables import github_connections
from app.web import SERVICES, create_app
from tests.fakes.github import FakeGitHub, ManualClock
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.test_oauth import code_for

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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.database_url)
    async with aiohttp.ClientSession() as session:
        oauth = GitHubOAuth(settings, session, clock=clock)
        yield GitHubConnections(settings, store, oauth, clock=clock), store, session
    await store.close()


async def signed_in(
    session: aiohttp.ClientSession, settings: Settings, fake: FakeGitHub, login: str
) -> UserToken:
    code = await code_for(session, fake, login)
    oauth = GitHubOAuth(settings, session)
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
    assert await store.get_connection(ALICE) is None


async def test_a_connection_made_under_another_key_is_not_used(
    opened: tuple[GitHubConnections, Store, aiohttp.ClientSession],
    settings: Settings,
    fake_github: FakeGitHub,
) -> None:
    connections, store, session = opened
    await connections.connect(ALICE, await signed_in(session, settings, fake_github, "alice"))
    rotated = GitHubConnections(
        settings.with_overrides(token_key="b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE="),
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
            await store.get_connection(ALICE) is None
            and await store.get_connection("T0HONKTEAM:U0ALICE2") is None
        )

    await eventually(gone)
    assert await store.get_connection("T0HONKTEAM:U0BOB") is not None
