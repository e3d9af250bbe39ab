"""A fleet asked for from Slack over real HTTP with FakeSlack and FakeGitHub: `/honk fleet`
opens the form at once, a submitted form is checked, then planned and started in a thread of
its own; the summary's buttons steer it for the requester only; Merge all green as the person."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetState
from app.handlers.slack import fleet_buttons
from app.handlers.slack.fleet import (
    CANARY_BLOCK,
    INPUT,
    OWNER_BLOCK,
    REPOS_BLOCK,
    REQUEST_BLOCK,
    owners_named,
    slack_markdown,
)
from app.store import Store
from app.web import SERVICES, create_app
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import BOT_USER_ID, CHANNEL_ID, FakeSlack, PostedMessage
from tests.golive_world import HONK_URL, connect_user
from tests.helpers import ClientFactory, eventually
from tests.run_page_world import SESSION_KEY

INSTALLATION = 8800
ORG = "octo-org"
API, WEB, FORK = f"{ORG}/api", f"{ORG}/web", f"{ORG}/fork"


def test_owners_named_and_the_plan_in_slacks_words() -> None:
    selection = "- octo-org/api  # the API\nOcto-Org/*\ntopic:python\nother/web\n"
    assert owners_named(selection) == ["octo-org", "other"]
    assert owners_named("topic:python\nlanguage:go") == []
    assert slack_markdown("**2 repositories** chosen:\n\n- `a/b`\n- [x](https://e.com) & <y>") == (
        "*2 repositories* chosen:\n\n• `a/b`\n• <https://e.com|x> &amp; &lt;y&gt;"
    )


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> TestClient:
    """octo-org: api, web and a fork; alice (U0ALICE) writes to each, bob (U0BOB) reads;
    both are org members whose public e-mail is their Slack e-mail."""
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[API, WEB, FORK])
    for repo in (API, WEB, FORK):
        fake_github.add_repo(repo)
    fake_github.repo(FORK)["data"]["fork"] = True
    for login, role in (("alice", "write"), ("bob", "read")):
        fake_github.add_user(login, name=login.title(), email=f"{login}@example.com")
        fake_github.add_org_member(ORG, login)
        for repo in (API, WEB, FORK):
            fake_github.set_permission(repo, login, role)
    settings = fake_slack.settings(base_settings).with_overrides(
        github_api_url=fake_github.url,
        github_url=fake_github.url,
        github_client_id=fake_github.oauth_client_id,
        github_client_secret=fake_github.oauth_client_secret,
        session_key=SESSION_KEY,
        honk_url=HONK_URL,
    )
    return await aiohttp_client(create_app(settings, workers=0))


def store_of(client: TestClient) -> Store:
    return client.app[SERVICES].store


async def the_fleet(client: TestClient) -> Fleet:
    async def found() -> Fleet | None:
        fleets = await store_of(client).fleets.find(installation_id=INSTALLATION)
        return fleets[0] if fleets else None

    return await eventually(found)


async def fleet_now(client: TestClient, fleet_id: int) -> Fleet:
    fleet = await store_of(client).fleets.get(fleet_id)
    assert fleet is not None
    return fleet


def form(request: str, repositories: str, owner: str = "", canary: str = "") -> dict[str, Any]:
    values = {REQUEST_BLOCK: request, REPOS_BLOCK: repositories, OWNER_BLOCK: owner}
    values[CANARY_BLOCK] = canary
    return {block: {INPUT: text} for block, text in values.items()}


async def open_form(
    client: TestClient, fake_slack: FakeSlack, text: str = "fleet"
) -> dict[str, Any]:
    seen = len(fake_slack.views)
    response = await fake_slack.command(client, text)
    assert response.status == 200
    assert await response.text() == ""  # no message: the form is the answer
    assert len(fake_slack.views) == seen + 1
    return fake_slack.views[-1]


def said(fake_slack: FakeSlack, text: str) -> list[dict[str, Any]]:
    return [r for r in fake_slack.responses if text in json.dumps(r)]


async def test_the_form_opens_at_once_and_its_mistakes_are_shown_beside_them(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    view = await open_form(client, fake_slack, "fleet Bump requests to 2.32")
    assert view["callback_id"] == "honk_fleet_modal"
    request = next(b for b in view["blocks"] if b["block_id"] == REQUEST_BLOCK)
    assert request["element"]["initial_value"] == "Bump requests to 2.32"

    response = await fake_slack.submit(client, view, form(" ", "octo-org/api\nnot a line", "", "0"))
    assert response.status == 200
    answer = await response.json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {REQUEST_BLOCK, REPOS_BLOCK, CANARY_BLOCK}
    assert "line 2" in answer["errors"][REPOS_BLOCK]
    # No owner named anywhere, or two: the account is asked for.
    for lines, hint in (("topic:python", "no line above"), ("octo-org/api\nother/web", "other")):
        response = await fake_slack.submit(client, view, form("Bump", lines))
        assert hint in (await response.json())["errors"][OWNER_BLOCK]
    assert await store_of(client).fleets.find() == []


async def test_a_submitted_form_plans_and_starts_the_fleet_in_a_thread_of_its_own(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    # The conductor is woken once the plan is in the thread: Slack's messages at each wake.
    wakes: list[int] = []
    client.app[SERVICES].slack_front.wake_fleets = lambda: wakes.append(len(fake_slack.posted))
    view = await open_form(client, fake_slack)
    response = await fake_slack.submit(client, view, form("Bump requests to 2.32", "octo-org/*"))
    assert response.status == 200 and await response.text() == ""
    fleet = await the_fleet(client)
    assert fleet.origin is FleetOrigin.SLACK and fleet.requested_by == "alice"
    assert fleet.request == "Bump requests to 2.32" and fleet.selection == "octo-org/*"
    assert fleet.canary_size == 1 and fleet.issue is None
    repos = {r.repo: r for r in await store_of(client).fleets.repos(fleet.id)}
    assert repos[FORK].state is FleetRepoState.SKIPPED and repos[FORK].reason == "a fork"
    assert {repos[API].state, repos[WEB].state} == {FleetRepoState.PLANNED}

    # A message in the channel is the thread's root; the plan is its first reply.
    root = next(m for m in fake_slack.messages(CHANNEL_ID) if m.thread_ts is None)
    assert root.author == BOT_USER_ID and "asked for a fleet change in 2 repositories" in root.text
    assert "&gt; Bump requests to 2.32" in root.text
    assert fleet.slack_thread is not None
    assert (fleet.slack_thread.channel, fleet.slack_thread.ts) == (root.channel, root.ts)
    plan = await eventually(lambda: fake_slack.messages(thread_ts=root.ts))
    assert f"*Fleet {fleet.id}*: the plan." in plan[0].text
    assert "a fork (1): `octo-org/fork`" in plan[0].text and "*Continue*" in plan[0].text
    assert f"<{HONK_URL}/fleets/{fleet.id}|fleet {fleet.id}>" in plan[0].text
    assert await eventually(lambda: wakes) == [2]  # the root and the plan


async def test_a_selection_that_leaves_everything_out_starts_nothing(
    client: TestClient, fake_slack: FakeSlack
) -> None:
    view = await open_form(client, fake_slack)
    await fake_slack.submit(client, view, form("Bump", "octo-org/fork"), user="U0ALICE")
    answer = await eventually(lambda: said(fake_slack, "Honk did not start the fleet"))
    assert "a fork" in answer[0]["text"]
    assert await store_of(client).fleets.find() == []
    assert fake_slack.messages(CHANNEL_ID) == []


def summary(fleet: Fleet, fake_slack: FakeSlack) -> PostedMessage:
    """The fleet's summary with its buttons, as the conductor posts it in the thread."""
    assert fleet.slack_thread is not None
    elements = [
        {"type": "button", "action_id": action, "value": str(fleet.id), "text": action}
        for action in sorted(fleet_buttons.ACTIONS)
    ]
    message = PostedMessage(
        fleet.slack_thread.channel,
        "1700009999.000001",
        f"Fleet {fleet.id}",
        [{"type": "actions", "elements": elements}],
        thread_ts=fleet.slack_thread.ts,
    )
    fake_slack.posted.append(message)
    return message


async def test_the_summarys_buttons_steer_the_fleet_for_its_requester(
    client: TestClient, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    view = await open_form(client, fake_slack)
    await fake_slack.submit(client, view, form("Bump", "octo-org/api\nocto-org/web", canary="2"))
    fleet = await the_fleet(client)
    assert fleet.canary_size == 2
    message = summary(fleet, fake_slack)

    await fake_slack.click(client, message, "fleet_pause")
    await eventually(lambda: said(fake_slack, f"Fleet {fleet.id} is paused"))
    assert (await fleet_now(client, fleet.id)).state is FleetState.PAUSED
    # The fleet's refusal, in its words, to the one who clicked.
    await fake_slack.click(client, message, "fleet_continue")
    await eventually(lambda: said(fake_slack, "Continue is for a fleet waiting"))

    # bob is not the requester, and a Slack fleet has no issue whose writers could steer it.
    await fake_slack.click(client, message, "fleet_stop", user="U0BOB")
    refusal = await eventually(lambda: said(fake_slack, "is steered by `alice`"))
    assert "you are `bob`" in refusal[0]["text"]
    assert (await fleet_now(client, fleet.id)).state is FleetState.PAUSED

    await fake_slack.click(client, message, "fleet_stop")
    await eventually(lambda: said(fake_slack, f"Fleet {fleet.id} is stopped"))
    assert (await fleet_now(client, fleet.id)).state is FleetState.STOPPED


async def test_merge_all_green_needs_the_persons_own_github(
    client: TestClient, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    view = await open_form(client, fake_slack)
    await fake_slack.submit(client, view, form("Bump", "octo-org/api"))
    fleet = await the_fleet(client)
    message = summary(fleet, fake_slack)
    await fake_slack.click(client, message, "fleet_merge_green", user="U0BOB")
    offer = await eventually(lambda: said(fake_slack, "To merge as yourself"))
    assert "Connect GitHub" in json.dumps(offer[0]) or "connect" in offer[0]["text"]
    await connect_user(client, fake_slack, fake_github, "U0ALICE")
    await fake_slack.click(client, message, "fleet_merge_green")
    await eventually(lambda: said(fake_slack, f"Fleet {fleet.id} has no green pull request"))
    assert not fake_github.calls_to("PUT", r"/merge$")
