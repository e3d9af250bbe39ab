"""`issues.labeled` through the real HTTP entry: the permission gate, bots, one run per issue."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunKind, RunState
from app.web import SERVICES, create_app
from tests.conftest import load_payload, sign
from tests.fakes.github import FakeGitHub
from tests.helpers import ClientFactory, eventually, post_webhook

REPO = "octo-org/widgets"
INSTALLATION = 9001


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, base_settings: Settings, fake_github: FakeGitHub
) -> TestClient:
    fake_github.add_installation(INSTALLATION, account="octo-org", repos=[REPO])
    fake_github.add_repo(REPO, files={"README.md": "widgets\n"})
    fake_github.add_issue(
        REPO,
        7,
        title="Widgets crash on empty input",
        body="Steps...",
        user="alice",
        labels=["honk", "ask-claude"],  # as GitHub shows the issue once labelled
    )
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    return await aiohttp_client(create_app(settings, workers=0))


def labeled(
    sender: str = "alice", label: str = "honk", sender_type: str = "User", number: int = 7
) -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload["label"] = {**payload["label"], "name": label}
    payload["repository"] = {
        **payload["repository"],
        "full_name": REPO,
        "name": "widgets",
        "owner": {**payload["repository"]["owner"], "login": "octo-org"},
    }
    payload["issue"] = {**payload["issue"], "number": number}
    payload["sender"] = {**payload["sender"], "login": sender, "type": sender_type}
    payload["installation"] = {"id": INSTALLATION}
    return payload


async def runs_for(client: TestClient, number: int = 7) -> list[Any]:
    store = client.app[SERVICES].store
    return await store.runs.find(repo=REPO, issue_number=number)


async def dispatched(client: TestClient) -> bool:
    return await client.app[SERVICES].store.inbox.count(pending=True) == 0


@pytest.mark.parametrize("level", ["admin", "maintain", "write"])
async def test_writer_label_queues_a_run_with_eyes(
    client: TestClient, fake_github: FakeGitHub, level: str
) -> None:
    fake_github.set_permission(REPO, "alice", level)
    response = await post_webhook(client, "issues", labeled(), delivery_id=f"lab-{level}")
    assert response.status == 202
    runs = await eventually(lambda: runs_for(client))
    assert len(runs) == 1
    run = runs[0]
    assert run.state == RunState.QUEUED and run.kind == RunKind.ISSUE
    assert run.requested_by == "alice" and run.installation_id == INSTALLATION
    assert run.delivery_id == f"lab-{level}"
    reactions = fake_github.calls_to("POST", rf"/repos/{REPO}/issues/7/reactions$")
    assert [c.json["content"] for c in reactions] == ["eyes"]
    comments = fake_github.calls_to("POST", rf"/repos/{REPO}/issues/7/comments$")
    assert len(comments) == 1 and "Queued" in comments[0].json["body"]
    stored = await eventually(lambda: _tracking_id(client, run.id))
    assert stored is not None


async def _tracking_id(client: TestClient, run_id: int) -> int | None:
    run = await client.app[SERVICES].store.runs.get(run_id)
    return run.tracking_comment_id if run else None


@pytest.mark.parametrize("level", ["read", "triage", "none"])
async def test_others_get_a_comment_and_nothing_runs(
    client: TestClient, fake_github: FakeGitHub, level: str
) -> None:
    if level != "none":
        fake_github.set_permission(REPO, "mallory", level)
    await post_webhook(client, "issues", labeled(sender="mallory"))
    comments = await eventually(
        lambda: fake_github.calls_to("POST", rf"/repos/{REPO}/issues/7/comments$")
    )
    assert "write access" in comments[0].json["body"]
    assert "@mallory" in comments[0].json["body"]
    await eventually(lambda: dispatched(client))
    assert await runs_for(client) == []
    assert not fake_github.calls_to("POST", r"/reactions$")


async def test_bot_senders_never_trigger(client: TestClient, fake_github: FakeGitHub) -> None:
    fake_github.set_permission(REPO, "dependabot[bot]", "write")
    await post_webhook(client, "issues", labeled(sender="dependabot[bot]", sender_type="Bot"))
    await eventually(lambda: dispatched(client))
    assert await runs_for(client) == []
    assert not fake_github.calls_to("POST", r"/comments$")
    assert not fake_github.calls_to("GET", r"/permission$")


async def test_other_labels_are_ignored(client: TestClient, fake_github: FakeGitHub) -> None:
    fake_github.set_permission(REPO, "alice", "admin")
    await post_webhook(client, "issues", labeled(label="bug"))
    await eventually(lambda: dispatched(client))
    assert await runs_for(client) == []


async def test_one_active_run_per_issue(client: TestClient, fake_github: FakeGitHub) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.set_permission(REPO, "bob", "write")
    await post_webhook(client, "issues", labeled(), delivery_id="first")
    await eventually(lambda: runs_for(client))
    await post_webhook(client, "issues", labeled(sender="bob"), delivery_id="second")
    await eventually(lambda: dispatched(client))
    runs = await runs_for(client)
    assert len(runs) == 1 and runs[0].requested_by == "alice"
    assert len(fake_github.calls_to("POST", r"/issues/7/reactions$")) == 1


async def test_github_502_during_dispatch_is_retried(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.fail_next("GET", r"/collaborators/alice/permission$", 502, times=1)
    await post_webhook(client, "issues", labeled())
    runs = await eventually(lambda: runs_for(client))
    assert len(runs) == 1
    assert len(fake_github.calls_to("GET", r"/collaborators/alice/permission$")) >= 2


async def test_a_repository_may_name_its_own_label(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.commit_files(REPO, {".github/honk.yml": "label: ask-claude\n"})
    await post_webhook(client, "issues", labeled(label="Ask-Claude"))
    runs = await eventually(lambda: runs_for(client))
    assert len(runs) == 1
    await post_webhook(client, "issues", labeled(label="bug", number=8))
    await eventually(lambda: dispatched(client))
    assert await runs_for(client, 8) == []


async def test_a_captured_delivery_replayed_under_a_new_id_starts_no_run(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    """GitHub signs the body only: someone who captured a signed `issues.labeled` sends it
    again under a fresh X-GitHub-Delivery, after the run ended and the label came off."""
    fake_github.set_permission(REPO, "alice", "write")
    store = client.app[SERVICES].store
    body = json.dumps(labeled()).encode()
    signature = sign(body)
    first = await post_webhook(client, "issues", body, delivery_id="real", signature=signature)
    assert first.status == 202
    (run,) = await eventually(lambda: runs_for(client))
    await store.runs.finish(run.id, RunState.SUCCEEDED)
    fake_github.repo(REPO)["issues"][7]["labels"] = []  # someone removed the label

    replay = await post_webhook(client, "issues", body, delivery_id="replay", signature=signature)
    assert replay.status == 200 and (await replay.json())["status"] == "duplicate"
    # GitHub's "Redeliver" keeps the id: still the same delivery, answered as a duplicate.
    again = await post_webhook(client, "issues", body, delivery_id="real", signature=signature)
    assert again.status == 200

    # Past retention the stored body is gone: then GitHub is asked whether the label is on.
    asked = len(fake_github.calls_to("GET", rf"^/repos/{REPO}/issues/7$"))
    await eventually(lambda: dispatched(client))
    assert await store.inbox.prune(timedelta(0)) >= 1
    late = await post_webhook(client, "issues", body, delivery_id="replay-2", signature=signature)
    assert late.status == 202
    await eventually(lambda: dispatched(client))
    assert len(fake_github.calls_to("GET", rf"^/repos/{REPO}/issues/7$")) == asked + 1
    assert [r.id for r in await runs_for(client)] == [run.id]
    assert len(fake_github.calls_to("POST", r"/issues/7/reactions$")) == 1


async def test_a_label_still_on_the_issue_queues_as_before(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.set_permission(REPO, "alice", "write")
    await post_webhook(client, "issues", labeled())
    await eventually(lambda: runs_for(client))
    (asked,) = fake_github.calls_to("GET", rf"^/repos/{REPO}/issues/7$")
    assert asked.headers["Authorization"].startswith("token ")  # the installation's client
