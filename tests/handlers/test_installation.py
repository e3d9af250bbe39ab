"""Installation events through the real HTTP entry: labels once, Slack hello, stop on uninstall."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.handlers import installation
from app.installations import installation_active, repository_active
from app.models import RunState
from app.services import GitHubTime
from app.store import NewRun, Store
from app.web import SERVICES, create_app
from tests.conftest import load_payload
from tests.fakes.github import SECONDARY_RATE_LIMIT, FakeGitHub, VirtualClock
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

ORG = "octo-org"
INSTALLATION = 9001
WIDGETS, GADGETS, GIZMOS = f"{ORG}/widgets", f"{ORG}/gadgets", f"{ORG}/gizmos"


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> TestClient:
    for repo in (WIDGETS, GADGETS, GIZMOS):
        fake_github.add_repo(repo)
    settings = fake_slack.settings(base_settings.with_overrides(github_api_url=fake_github.url))
    app_client = await aiohttp_client(create_app(settings, workers=0))
    app_client.app[SERVICES].store.inbox.retry_delay = 0.05
    return app_client


def store_of(client: TestClient) -> Store:
    return client.app[SERVICES].store


def account(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload["installation"]["account"], "login": ORG, "type": "Organization"}


def created(repos: list[str] | None, installation_id: int = INSTALLATION) -> dict[str, Any]:
    """installation.created as GitHub sends it, moved to our org; repos=None: all repos."""
    payload = load_payload("installation.created.1")
    payload["installation"] = {
        **payload["installation"],
        "id": installation_id,
        "account": account(payload),
        "repository_selection": "all" if repos is None else "selected",
    }
    template = payload["repositories"][0]
    payload["repositories"] = [
        {**template, "name": r.split("/")[1], "full_name": r} for r in (repos or [])
    ]
    return payload


def installation_event(name: str, installation_id: int = INSTALLATION, **changes: Any) -> dict:
    payload = load_payload(name)
    payload["installation"] = {
        **payload["installation"],
        "id": installation_id,
        "account": account(payload),
    }
    payload.update(changes)
    return payload


def repos_event(name: str, key: str, repos: list[str]) -> dict[str, Any]:
    payload = installation_event(name)
    template = load_payload(name)[key][0]
    payload[key] = [{**template, "name": r.split("/")[1], "full_name": r} for r in repos]
    return payload


async def dispatched(client: TestClient) -> bool:
    return await store_of(client).inbox.count(pending=True) == 0


def label_posts(fake_github: FakeGitHub, repo: str, name: str = "honk") -> list[Any]:
    """The label creations in `repo` for the label `name` (Honk's own, by default)."""
    posts = fake_github.calls_to("POST", rf"^/repos/{repo}/labels$")
    return [call for call in posts if (call.json or {}).get("name") == name]


async def test_created_labels_each_repository_once_and_says_hello(
    client: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS, GADGETS])
    existing = fake_github._new_label(fake_github.repo(GADGETS), "honk", "000000", "ours")
    response = await post_webhook(client, "installation", created([WIDGETS, GADGETS]))
    assert response.status == 202

    label = await eventually(lambda: fake_github.repo(WIDGETS)["labels"].get("honk"))
    assert label["color"] == installation.LABEL_COLOR
    assert label["description"] == installation.LABEL_DESCRIPTION
    await eventually(lambda: dispatched(client))
    assert fake_github.repo(GADGETS)["labels"]["honk"] == existing  # left alone
    assert len(label_posts(fake_github, WIDGETS)) == 1
    assert label_posts(fake_github, GADGETS) == []
    assert "honk" not in fake_github.repo(GIZMOS)["labels"]  # not installed there
    # The fleet label beside it, in every repository, where issues ask for fleets.
    for repo in (WIDGETS, GADGETS):
        fleet = fake_github.repo(repo)["labels"]["honk-fleet"]
        assert fleet["color"] == installation.FLEET.color
        assert len(label_posts(fake_github, repo, "honk-fleet")) == 1
    assert "honk-fleet" not in fake_github.repo(GIZMOS)["labels"]

    messages = fake_slack.messages("#honk")
    assert len(messages) == 1
    assert "octo-org" in messages[0].text and "2 repositories" in messages[0].text
    assert "`honk` label" in messages[0].blocks[0]["text"]["text"]

    record = await store_of(client).kv.get("installation", str(INSTALLATION))
    assert record["state"] == "active" and record["account"] == ORG
    assert record["history"][-1]["action"] == "installation.created"
    assert await installation_active(store_of(client), INSTALLATION)


async def test_all_repositories_are_listed_through_the_api(
    client: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=None)
    fake_github.repo(GIZMOS)["data"]["archived"] = True  # GitHub refuses writes there
    await post_webhook(client, "installation", created(None))
    await eventually(lambda: dispatched(client))
    assert fake_github.calls_to("GET", r"^/installation/repositories$")
    assert "honk" in fake_github.repo(WIDGETS)["labels"]
    assert "honk" in fake_github.repo(GADGETS)["labels"]
    assert label_posts(fake_github, GIZMOS) == []
    assert "all repositories" in fake_slack.messages()[0].text


async def test_secondary_rate_limit_is_waited_out(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS])
    fake_github.fail_next(
        "POST",
        rf"^/repos/{WIDGETS}/labels$",
        403,
        headers={"Retry-After": "1"},
        body={"message": SECONDARY_RATE_LIMIT},
    )
    started = time.monotonic()
    await post_webhook(client, "installation", created([WIDGETS]))
    await eventually(lambda: fake_github.repo(WIDGETS)["labels"].get("honk"))
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(label_posts(fake_github, WIDGETS)) == 2


@pytest.mark.slow
async def test_lasting_rate_limit_resumes_where_it_stopped(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
) -> None:
    """GitHub asks for longer than the client waits: the delivery is retried once GitHub's
    wait is over (nothing is sent to the installation before) and carries on after the
    repositories already done, without a second Slack hello."""
    clock = VirtualClock()  # GitHub's side: a bulk write's pause takes no real time
    fake_github.clock = clock
    for repo in (WIDGETS, GADGETS):
        fake_github.add_repo(repo)
    settings = fake_slack.settings(base_settings.with_overrides(github_api_url=fake_github.url))
    client = await aiohttp_client(
        create_app(settings, workers=0, github_time=GitHubTime(clock=clock, sleep=clock.sleep))
    )
    client.app[SERVICES].store.inbox.retry_delay = 0.2
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS, GADGETS])
    fake_github.fail_next(
        "POST",
        rf"^/repos/{GADGETS}/labels$",
        403,
        headers={"Retry-After": "3600"},
        body={"message": SECONDARY_RATE_LIMIT},
    )
    await post_webhook(client, "installation", created([WIDGETS, GADGETS]), delivery_id="inst-1")
    await eventually(lambda: fake_github.rate_limited or label_posts(fake_github, GADGETS))
    await asyncio.sleep(1)  # the delivery is tried again meanwhile
    assert len(label_posts(fake_github, GADGETS)) == 1  # the refused one; none while held
    clock.advance(3600)
    await eventually(lambda: fake_github.repo(GADGETS)["labels"].get("honk"))
    await eventually(lambda: dispatched(client))
    assert len(fake_github.calls_to("GET", rf"^/repos/{WIDGETS}/labels/honk$")) == 1
    assert len(label_posts(fake_github, WIDGETS)) == 1
    assert len(label_posts(fake_github, GADGETS)) == 2
    assert len(fake_slack.messages()) == 1


async def test_repository_that_refuses_is_skipped(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS, GADGETS])
    fake_github.fail_next(
        "POST",
        rf"^/repos/{WIDGETS}/labels$",
        403,
        body={"message": "Repository was archived so is read-only."},
    )
    await post_webhook(client, "installation", created([WIDGETS, GADGETS]))
    await eventually(lambda: dispatched(client))
    assert "honk" in fake_github.repo(GADGETS)["labels"]
    record = await store_of(client).kv.get("installation", f"{INSTALLATION}/repo/{WIDGETS}")
    assert record["label"] == "failed" and "archived" in record["detail"]


async def test_repositories_added_get_the_label(
    client: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS, GIZMOS])
    payload = repos_event("installation_repositories.added.1", "repositories_added", [GIZMOS])
    await post_webhook(client, "installation_repositories", payload)
    await eventually(lambda: dispatched(client))
    assert "honk" in fake_github.repo(GIZMOS)["labels"]
    assert "honk" not in fake_github.repo(WIDGETS)["labels"]
    assert "1 repository" in fake_slack.messages()[0].text


async def queued_and_running(store: Store, repo: str, other: str | None = None) -> list[int]:
    """A running run on `repo` and a queued one (on `other` if given)."""
    first = await store.runs.enqueue(
        NewRun(repo=repo, installation_id=INSTALLATION, issue_number=1)
    )
    second = await store.runs.enqueue(
        NewRun(repo=other or repo, installation_id=INSTALLATION, issue_number=2)
    )
    assert first and second
    claimed = await store.runs.claim("test-worker", 60)
    assert claimed is not None and claimed.id == first.id
    return [first.id, second.id]


async def test_deleted_cancels_runs_forgets_tokens_and_keeps_records(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS])
    store, github = store_of(client), client.app[SERVICES].github
    await post_webhook(client, "installation", created([WIDGETS]))
    await eventually(lambda: dispatched(client))
    running, queued = await queued_and_running(store, WIDGETS)
    await github.installation_token(INSTALLATION)
    minted = len(fake_github.calls_to("POST", r"/access_tokens$"))

    await post_webhook(client, "installation", installation_event("installation.deleted.1"))
    await eventually(lambda: dispatched(client))
    assert not await installation_active(store, INSTALLATION)
    assert not await repository_active(store, INSTALLATION, WIDGETS)
    assert (await store.runs.get(queued)).state == RunState.CANCELLED
    assert (await store.runs.get(running)).cancel_requested
    record = await store.kv.get("installation", str(INSTALLATION))
    assert record["state"] == "deleted"
    assert [h["action"] for h in record["history"]] == [
        "installation.created",
        "installation.deleted",
    ]
    # The label progress is kept for the history too.
    assert (await store.kv.get("installation", f"{INSTALLATION}/repo/{WIDGETS}"))["label"]
    await github.installation_token(INSTALLATION)
    assert len(fake_github.calls_to("POST", r"/access_tokens$")) == minted + 1


async def test_suspend_and_unsuspend(client: TestClient, fake_github: FakeGitHub) -> None:
    store = store_of(client)
    running, queued = await queued_and_running(store, WIDGETS)
    await post_webhook(client, "installation", installation_event("installation.suspend.1"))
    await eventually(lambda: dispatched(client))
    assert not await installation_active(store, INSTALLATION)
    assert (await store.runs.get(queued)).state == RunState.CANCELLED
    assert (await store.runs.get(running)).cancel_requested

    unsuspend = installation_event("installation.suspend.1", action="unsuspend")
    unsuspend["installation"] = {**unsuspend["installation"], "suspended_at": None}
    await post_webhook(client, "installation", unsuspend)
    await eventually(lambda: dispatched(client))
    assert await installation_active(store, INSTALLATION)
    record = await store.kv.get("installation", str(INSTALLATION))
    assert [h["state"] for h in record["history"]] == ["suspended", "active"]


async def test_removed_repositories_stop_only_there(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[WIDGETS, GADGETS])
    store = store_of(client)
    running, other = await queued_and_running(store, WIDGETS, other=GADGETS)
    payload = repos_event("installation_repositories.removed.1", "repositories_removed", [WIDGETS])
    await post_webhook(client, "installation_repositories", payload)
    await eventually(lambda: dispatched(client))
    assert (await store.runs.get(running)).cancel_requested
    assert (await store.runs.get(other)).state == RunState.QUEUED
    assert not await repository_active(store, INSTALLATION, WIDGETS)
    assert await repository_active(store, INSTALLATION, GADGETS)
    assert await installation_active(store, INSTALLATION)

    # Added back: active again, and the label is checked afresh.
    added = repos_event("installation_repositories.added.1", "repositories_added", [WIDGETS])
    await post_webhook(client, "installation_repositories", added)
    await eventually(lambda: dispatched(client))
    assert await repository_active(store, INSTALLATION, WIDGETS)
    assert "honk" in fake_github.repo(WIDGETS)["labels"]


async def test_unknown_installation_counts_as_active(client: TestClient) -> None:
    assert await installation_active(store_of(client), 123)
    assert await repository_active(store_of(client), 123, WIDGETS)
