"""A fleet asked for on GitHub, through the real HTTP entry: the `honk-fleet` label on an
issue (the gate, the body, the plan comment kept as the summary) and `/honk fleet …` on it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetState
from app.handlers.fleet import FleetAsk, FleetAskError, parse_fleet_issue
from app.store import Store
from app.web import SERVICES, create_app
from tests.conftest import load_payload
from tests.fakes.github import FakeGitHub
from tests.helpers import ClientFactory, eventually, post_webhook

INSTALLATION = 7300
ORG = "octo-org"
HOME = f"{ORG}/platform"  # where the fleet issue is filed
API, WEB, OLD = f"{ORG}/api", f"{ORG}/web", f"{ORG}/old"
ISSUE = 4
BODY = """Replace the deprecated `fetch_all()` with `fetch(page_size=100)`.

Keep the behaviour the same.

repositories:
octo-org/*

canary: 2
"""


# -- the body ---------------------------------------------------------------------------------


def test_the_body_is_the_request_the_block_and_the_canary() -> None:
    ask = parse_fleet_issue(BODY)
    assert ask == FleetAsk(
        "Replace the deprecated `fetch_all()` with `fetch(page_size=100)`.\n\n"
        "Keep the behaviour the same.",
        "octo-org/*",
        2,
    )


def test_a_fenced_block_a_heading_and_comments_of_a_template() -> None:
    body = (
        "<!-- Say what to change, then which repositories. -->\n"
        "Bump requests to 2.32.\n\n"
        "## Repositories:\n\n"
        "```\n"
        "octo-org/api\n\n"
        "- topic:python  # the services\n"
        "```\n"
        "Thanks!\n"
    )
    ask = parse_fleet_issue(body)
    assert ask.repositories == "octo-org/api\n\n- topic:python  # the services"
    assert ask.request == "Bump requests to 2.32.\n\nThanks!"
    assert ask.canary is None
    inline = parse_fleet_issue("Do it.\n**repositories:** octo-org/api\nocto-org/web\n\nmore")
    assert inline == FleetAsk("Do it.\n\nmore", "octo-org/api\nocto-org/web")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("Bump it everywhere.", "no `repositories:` block"),
        ("Bump it.\nrepositories:\n\n", "no `repositories:` block"),
        ("repositories:\nocto-org/*\n", "no request"),
        ("Bump.\nrepositories:\nocto-org/*\n\ncanary: some", "`canary: some`"),
        ("Bump.\nrepositories:\nocto-org/*\n\ncanary: 0", "`canary: 0`"),
    ],
)
def test_a_body_that_asks_for_no_fleet_says_why(body: str, said: str) -> None:
    with pytest.raises(FleetAskError) as caught:
        parse_fleet_issue(body)
    assert said in str(caught.value)


# -- through the webhook ---------------------------------------------------------------------


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, base_settings: Settings, fake_github: FakeGitHub
) -> TestClient:
    """octo-org: platform (the fleet issue), api, web, and old (archived); alice writes to
    all of them, bob reads."""
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[HOME, API, WEB, OLD])
    for repo in (HOME, API, WEB, OLD):
        fake_github.add_repo(repo)
        fake_github.set_permission(repo, "alice", "write")
        fake_github.set_permission(repo, "bob", "read")
    fake_github.repo(OLD)["data"]["archived"] = True
    fake_github.add_issue(HOME, ISSUE, title="fetch_all is going", body=BODY, user="alice",
                          labels=["honk-fleet"])  # fmt: skip
    settings = base_settings.with_overrides(
        github_api_url=fake_github.url, honk_url="https://honk.example.com"
    )
    return await aiohttp_client(create_app(settings, workers=0))


def store_of(client: TestClient) -> Store:
    return client.app[SERVICES].store


async def fleet_now(client: TestClient, fleet_id: int) -> Fleet:
    fleet = await store_of(client).fleets.get(fleet_id)
    assert fleet is not None
    return fleet


def labeled(sender: str = "alice", label: str = "honk-fleet", kind: str = "User") -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload.update(
        label={**payload["label"], "name": label},
        repository={**payload["repository"], "full_name": HOME, "name": "platform"},
        issue={**payload["issue"], "number": ISSUE, "body": "(as the payload had it)"},
        sender={**payload["sender"], "login": sender, "type": kind},
        installation={"id": INSTALLATION},
    )
    return payload


def commented(fake_github: FakeGitHub, body: str, user: str = "alice") -> dict[str, Any]:
    comment = fake_github.add_comment(HOME, ISSUE, body, user)
    payload = load_payload("issue_comment.created.1")
    payload.update(
        issue=fake_github.repo(HOME)["issues"][ISSUE],
        comment=comment,
        sender=fake_github.users[user.lower()],
        installation={"id": INSTALLATION},
        repository={**payload["repository"], "full_name": HOME, "name": "platform"},
    )
    return payload


async def send(client: TestClient, event: str, payload: dict[str, Any], **kw: Any) -> None:
    response = await post_webhook(client, event, payload, **kw)
    assert response.status in (200, 202)  # 200: a delivery id the inbox already has
    store = store_of(client)
    await eventually(lambda: _dispatched(store))


async def _dispatched(store: Store) -> bool:
    return await store.inbox.count(pending=True) == 0


def replies(fake_github: FakeGitHub) -> list[dict[str, Any]]:
    calls = fake_github.calls_to("POST", rf"^/repos/{HOME}/issues/{ISSUE}/comments$")
    return [c.json for c in calls]


async def fleets(client: TestClient) -> list[Fleet]:
    return await store_of(client).fleets.find(issue_repo=HOME, issue_number=ISSUE)


async def test_a_writers_label_stores_the_fleet_and_comments_its_plan(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    # The conductor is woken once the plan's comment is posted (else it would write a
    # summary comment of its own): how many comments there were at each wake-up.
    wakes: list[int] = []
    client.app[SERVICES].dispatcher.services.wake_fleets = lambda: wakes.append(
        len(replies(fake_github))
    )
    await send(client, "issues", labeled(), delivery_id="fleet-1")
    assert wakes == [1]
    (fleet,) = await fleets(client)
    assert fleet.origin is FleetOrigin.ISSUE and fleet.requested_by == "alice"
    assert fleet.installation_id == INSTALLATION and fleet.canary_size == 2
    # The body as GitHub has it now, not the payload's snapshot.
    assert fleet.request.startswith("Replace the deprecated `fetch_all()`")
    assert fleet.selection == "octo-org/*"
    assert fleet.state is FleetState.PLANNED
    repos = {r.repo: r for r in await store_of(client).fleets.repos(fleet.id)}
    assert {r for r, one in repos.items() if one.state is FleetRepoState.PLANNED} == {
        HOME,
        API,
        WEB,
    }
    assert repos[OLD].state is FleetRepoState.SKIPPED and repos[OLD].reason == "archived"

    (comment,) = replies(fake_github)
    body = comment["body"]
    assert f"**Fleet {fleet.id}**, asked for by @alice" in body
    assert f"`{API}`" in body and "archived" in body
    assert "the first 2 (the canary:" in body and "/honk fleet continue" in body
    assert f"https://honk.example.com/fleets/{fleet.id}" in body
    # That comment is the fleet's summary, which the conductor edits in place.
    posted = fake_github.repo(HOME)["comments"]
    summary = (await fleet_now(client, fleet.id)).summary_comment_id
    assert summary is not None and posted[summary]["body"] == body

    # The same delivery again, or the label again: the one fleet, said once more at most.
    await send(client, "issues", labeled(), delivery_id="fleet-1")
    await send(client, "issues", labeled(), delivery_id="fleet-2")
    assert len(await fleets(client)) == 1
    assert all("already has fleet" in c["body"] for c in replies(fake_github)[1:])


async def test_a_non_writers_label_is_refused_and_bots_are_ignored(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    await send(client, "issues", labeled(sender="bob"))
    (refusal,) = replies(fake_github)
    assert "@bob Starting a fleet needs write access" in refusal["body"]
    assert "`read`" in refusal["body"] and "`honk-fleet` label" in refusal["body"]
    await send(client, "issues", labeled(sender="honk-bot[bot]", kind="Bot"))
    await send(client, "issues", labeled(label="honk"))  # Honk's own label: issues.py's
    assert await fleets(client) == []
    assert len(replies(fake_github)) == 1


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("Bump it.\n\nrepositories:\nnot a repository\n", "line 1:"),
        ("Bump it everywhere.", "no `repositories:` block"),
        ("Bump it.\n\nrepositories:\nocto-org/old\n", "Nothing to run"),
    ],
)
async def test_a_selection_that_chooses_nothing_is_answered(
    client: TestClient, fake_github: FakeGitHub, body: str, said: str
) -> None:
    fake_github.repo(HOME)["issues"][ISSUE]["body"] = body
    await send(client, "issues", labeled())
    (comment,) = replies(fake_github)
    assert comment["body"].startswith("@alice Honk did not start this fleet: ")
    assert said.lower() in comment["body"].lower()
    assert await fleets(client) == []
    if "old" in body:  # what was left out, and why
        assert "archived (1): `octo-org/old`" in comment["body"]


async def test_honk_fleet_commands_on_the_fleet_issue(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    await send(client, "issues", labeled())
    (fleet,) = await fleets(client)
    wakes: list[str] = []
    client.app[SERVICES].dispatcher.services.wake_fleets = lambda: wakes.append("woken")

    payload = commented(fake_github, "/honk fleet pause")
    await send(client, "issue_comment", payload, delivery_id="pause-1")
    assert wakes == ["woken"]
    assert (await fleet_now(client, fleet.id)).state is FleetState.PAUSED
    assert replies(fake_github)[-1]["body"] == (
        f"@alice Fleet {fleet.id} is paused: nothing more is queued; what runs now finishes."
    )
    # The same comment delivered again is carried out once.
    await send(client, "issue_comment", payload, delivery_id="pause-2")
    assert len(replies(fake_github)) == 2

    # A refusal of the fleet's state, in its words.
    await send(client, "issue_comment", commented(fake_github, "/honk fleet pause"))
    assert replies(fake_github)[-1]["body"] == (
        f"@alice Fleet {fleet.id} is paused: only a fleet that is running can be paused."
    )
    # Someone who only reads the issue's repository, and is not the requester.
    await send(client, "issue_comment", commented(fake_github, "/honk fleet stop", "bob"))
    assert "@bob Fleet" in replies(fake_github)[-1]["body"]
    assert "steered by @alice" in replies(fake_github)[-1]["body"]
    assert (await fleet_now(client, fleet.id)).state is FleetState.PAUSED

    await send(client, "issue_comment", commented(fake_github, "/honk fleet resume"))
    assert replies(fake_github)[-1]["body"] == f"@alice Fleet {fleet.id} resumes."
    await send(client, "issue_comment", commented(fake_github, "/honk fleet frobnicate"))
    assert "`/honk fleet frobnicate` is not a fleet command" in replies(fake_github)[-1]["body"]
    await send(client, "issue_comment", commented(fake_github, "/honk fleet merge"))
    assert "your own GitHub token" in replies(fake_github)[-1]["body"]
    await send(client, "issue_comment", commented(fake_github, "/honk fleet stop"))
    assert replies(fake_github)[-1]["body"].startswith(f"@alice Fleet {fleet.id} is stopped")
    assert (await fleet_now(client, fleet.id)).state is FleetState.STOPPED
    # comments.py leaves `/honk fleet` alone: one reply per command, never "no such command".
    assert not any("has no `/honk fleet`" in r["body"] for r in replies(fake_github))


async def test_honk_fleet_on_an_issue_without_a_fleet(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    await send(client, "issue_comment", commented(fake_github, "/honk fleet continue"))
    (reply,) = replies(fake_github)
    assert reply["body"] == "@alice This issue has no fleet: label it `honk-fleet` to ask for one."
