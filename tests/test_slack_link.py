"""`/honk link` cannot be borrowed: the confirming comment must be fresh and never edited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.handlers.slack.identity import SlackUser
from app.web import SERVICES, create_app
from tests.calc_world import REPO, calc_settings, seed_calc
from tests.fakes.slack import TEAM_ID, FakeSlack
from tests.helpers import eventually

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def world(
    base_settings: Settings, fake_github: Any, fake_anthropic: Any, fake_slack: FakeSlack
) -> Settings:
    """carol (the victim) may write to octo-org/calc; mallory (the attacker) may too, and so
    may edit carol's comments there, as GitHub lets any writer do."""
    seed_calc(fake_github, issue=False)
    fake_slack.add_user("U0MALLORY", "mallory", "mallory@evil.example")
    for login in ("carol", "mallory"):
        fake_github.set_permission(REPO, login, "write")
    fake_github.add_issue(REPO, 1, title="Linking accounts")
    return calc_settings(base_settings, fake_github, fake_anthropic, fake_slack, workers=0)


def told(fake_slack: FakeSlack) -> str:
    return "\n".join(str(r.get("text")) for r in fake_slack.responses)


async def start_link(client: TestClient, fake_slack: FakeSlack, login: str, user: str) -> str:
    await fake_slack.command(client, f"link {login}", user=user)
    howto = await eventually(lambda: "honk-link-" in told(fake_slack) and told(fake_slack))
    return next(word.strip("`") for word in howto.split() if word.startswith("`honk-link-"))


async def linked_as(client: TestClient, user: str) -> str | None:
    return await client.app[SERVICES].slack_front.identity.linked(SlackUser(TEAM_ID, user))


async def test_an_old_comment_edited_to_hold_the_code_links_no_one(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: Any
) -> None:
    old = fake_github.add_comment(REPO, 1, "Looks good to me.", user="carol", age=3 * 86400)
    client = await aiohttp_client(create_app(world))

    code = await start_link(client, fake_slack, "carol", "U0MALLORY")
    fake_github.edit_comment(REPO, old["id"], f"Looks good to me. {code}")  # mallory's edit
    await fake_slack.command(client, f"link confirm {old['html_url']}", user="U0MALLORY")

    await eventually(lambda: "Not linked" in told(fake_slack))
    assert "edited" in told(fake_slack)
    assert await linked_as(client, "U0MALLORY") is None
    # And mallory's requests are not carol's.
    await fake_slack.command(client, f"{REPO} fix add", user="U0MALLORY")
    assert not await client.app[SERVICES].store.find_runs(repo=REPO)


async def test_a_comment_older_than_the_window_links_no_one(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: Any
) -> None:
    client = await aiohttp_client(create_app(world))
    code = await start_link(client, fake_slack, "carol", "U0MALLORY")
    # Unedited, with the code, but written 11 minutes ago (the window is 10).
    stale = fake_github.add_comment(REPO, 1, code, user="carol", age=11 * 60)
    await fake_slack.command(client, f"link confirm {stale['html_url']}", user="U0MALLORY")
    await eventually(lambda: "older than 10 minutes" in told(fake_slack))
    assert await linked_as(client, "U0MALLORY") is None

    fresh = fake_github.add_comment(REPO, 1, f"It is me: {code}", user="carol")
    await fake_slack.command(client, f"link confirm {fresh['html_url']}", user="U0MALLORY")
    await eventually(lambda: "Honk knows you as `carol`" in told(fake_slack))
    assert await linked_as(client, "U0MALLORY") == "carol"


async def test_the_fake_moves_updated_at_on_an_edit_through_the_api(
    aiohttp_client: ClientFactory, world: Settings, fake_github: Any
) -> None:
    comment = fake_github.add_comment(REPO, 1, "first", user="carol", age=120)
    client = await aiohttp_client(create_app(world))
    app = client.app[SERVICES].github
    gh = await app.installation_client(5150)
    edited = await gh.edit_comment(REPO, comment["id"], "second")
    assert edited["created_at"] == comment["created_at"]
    assert edited["updated_at"] > edited["created_at"]
