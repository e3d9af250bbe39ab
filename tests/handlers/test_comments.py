"""`/honk retry|cancel|help` comments through the real HTTP entry: who may, what runs, replies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.handlers.comments import Command, parse_command
from app.models import RunKind, RunState
from app.store import NewRun, Store
from app.web import SERVICES, create_app
from tests.conftest import load_payload
from tests.fakes.anthropic import FakeAnthropic, tool_use_bash
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

REPO = "octo-org/calc"
INSTALLATION = 5150
ISSUE = 12
BRANCH = "honk/12-add-returns-the-wrong-sum"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/honk retry", Command("retry", "")),
        (
            "  /honk RETRY use ints\nand keep it short",
            Command("retry", "use ints\nand keep it short"),
        ),
        ("/honk cancel", Command("cancel", "")),
        ("/honk", Command("help", "")),
        ("/honk frobnicate now", Command("frobnicate", "now")),
        ("Please /honk retry", None),
        ("/honky retry", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_command(body: str | None, expected: Command | None) -> None:
    assert parse_command(body) == expected


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, base_settings: Settings, fake_github: FakeGitHub
) -> TestClient:
    """No workers: runs stay queued where the tests can look at them."""
    fake_github.add_installation(INSTALLATION, account="octo-org", repos=[REPO])
    fake_github.add_repo(REPO, files={"calc.py": "def add(a, b):\n    return a - b\n"})
    fake_github.add_issue(REPO, ISSUE, title="add() returns the wrong sum", user="alice")
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.set_permission(REPO, "bob", "read")
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    return await aiohttp_client(create_app(settings, workers=0))


async def honk_pull(client: TestClient, fake_github: FakeGitHub) -> tuple[dict[str, Any], int]:
    """A PR as a finished Honk run left it: (the PR, the run's id)."""
    fake_github.commit_files(REPO, {"calc.py": "def add(a, b):\n    return a + b\n"}, branch=BRANCH)
    pr = fake_github.add_pull(REPO, head=BRANCH, title="add() returns the wrong sum")
    store: Store = client.app[SERVICES].store
    run = await store.runs.enqueue(
        NewRun(REPO, INSTALLATION, RunKind.ISSUE, issue_number=ISSUE, requested_by="alice")
    )
    assert run is not None
    await store.runs.update(
        run.id, pr_number=pr["number"], pr_url=pr["html_url"], branch=BRANCH, base_branch="main"
    )
    await store.runs.finish(run.id, RunState.SUCCEEDED)
    return pr, run.id


def issue_comment(
    fake_github: FakeGitHub, number: int, body: str, user: str = "alice", action: str = "created"
) -> dict[str, Any]:
    comment = fake_github.add_comment(REPO, number, body, user)
    payload = load_payload(f"issue_comment.{action}.1")
    payload.update(
        issue=fake_github.repo(REPO)["issues"][number],
        comment=comment,
        sender=fake_github.users[user.lower()],
        installation={"id": INSTALLATION},
        repository={**payload["repository"], "full_name": REPO, "name": "calc"},
    )
    return payload


def review_comment(
    fake_github: FakeGitHub, number: int, body: str, user: str = "alice"
) -> dict[str, Any]:
    comment = fake_github.add_review_comment(REPO, number, body, user, path="calc.py", line=2)
    payload = load_payload("pull_request_review_comment.created.1")
    payload.update(
        pull_request=fake_github.repo(REPO)["pulls"][number],
        comment=comment,
        sender=fake_github.users[user.lower()],
        installation={"id": INSTALLATION},
        repository={**payload["repository"], "full_name": REPO, "name": "calc"},
    )
    return payload


async def send(client: TestClient, event: str, payload: dict[str, Any]) -> None:
    response = await post_webhook(client, event, payload)
    assert response.status == 202
    store: Store = client.app[SERVICES].store
    await eventually(lambda: _dispatched(store))


async def _dispatched(store: Store) -> bool:
    return await store.inbox.count(pending=True) == 0


def replies(fake_github: FakeGitHub, number: int) -> list[str]:
    calls = fake_github.calls_to("POST", rf"^/repos/{REPO}/issues/{number}/comments$")
    return [c.json["body"] for c in calls]


async def test_writer_retry_queues_one_run_on_the_branch_with_a_rocket(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, origin_id = await honk_pull(client, fake_github)
    payload = issue_comment(fake_github, pr["number"], "/honk retry\nuse integers only")
    await send(client, "issue_comment", payload)
    # The same comment delivered again: under GitHub's id it is a duplicate; under a new id
    # its body, stored already, makes it one too. Either way it is carried out once.
    again = await post_webhook(client, "issue_comment", payload)
    assert again.status == 200 and (await again.json())["status"] == "duplicate"
    await send(client, "issue_comment", {**payload, "zen": "a body of its own"})
    store: Store = client.app[SERVICES].store
    runs = await store.runs.find(repo=REPO, pr_number=pr["number"])
    assert [r.kind for r in runs] == [RunKind.RETRY, RunKind.ISSUE]
    retry = runs[0]
    assert retry.state == RunState.QUEUED and retry.requested_by == "alice"
    assert retry.instructions == "use integers only" and retry.round == 0
    assert retry.branch == BRANCH and retry.issue_number == ISSUE
    assert fake_github.reactions_on(REPO, f"comment:{payload['comment']['id']}") == ["rocket"]
    origin = await store.runs.get(origin_id)
    assert origin is not None
    assert any(s.name == "retry" and f"run {retry.id}" in s.detail for s in origin.steps)


async def test_a_retry_while_a_run_is_active_waits_behind_it(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, _ = await honk_pull(client, fake_github)
    await send(client, "issue_comment", issue_comment(fake_github, pr["number"], "/honk retry a"))
    await send(client, "issue_comment", issue_comment(fake_github, pr["number"], "/honk retry b"))
    store: Store = client.app[SERVICES].store
    second, first = (await store.runs.find(repo=REPO, pr_number=pr["number"]))[:2]
    assert (first.instructions, second.instructions) == ("a", "b")
    assert (
        f"Queued as run {second.id}; it starts when run {first.id} is done"
        in (replies(fake_github, pr["number"])[-1])
    )
    # One at a time on that PR: the second is not claimable while the first runs.
    claimed = await store.runs.claim("w1", 30)
    assert claimed is not None and claimed.id == first.id
    assert await store.runs.claim("w2", 30) is None
    await store.runs.finish(first.id, RunState.SUCCEEDED)
    claimed = await store.runs.claim("w2", 30)
    assert claimed is not None and claimed.id == second.id


async def test_review_comment_first_line_retries_with_its_place(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, _ = await honk_pull(client, fake_github)
    payload = review_comment(fake_github, pr["number"], "/honk retry rename `a` to `left`")
    await send(client, "pull_request_review_comment", payload)
    store: Store = client.app[SERVICES].store
    retry = (await store.runs.find(repo=REPO, pr_number=pr["number"]))[0]
    assert retry.kind == RunKind.RETRY
    assert retry.instructions.startswith("rename `a` to `left`")
    assert "review comment on `calc.py`, line 2" in retry.instructions
    reactions = fake_github.reactions_on(REPO, f"review_comment:{payload['comment']['id']}")
    assert reactions == ["rocket"]


async def test_retry_by_a_reader_or_on_a_foreign_pr_is_refused_with_a_reply(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, _ = await honk_pull(client, fake_github)
    by_reader = issue_comment(fake_github, pr["number"], "/honk retry do it", user="bob")
    await send(client, "issue_comment", by_reader)
    fake_github.commit_files(REPO, {"x.py": "x = 1\n"}, branch="feature")
    foreign = fake_github.add_pull(REPO, head="feature", title="A person's PR", user="bob")
    await send(
        client, "issue_comment", issue_comment(fake_github, foreign["number"], "/honk retry")
    )

    store: Store = client.app[SERVICES].store
    assert len(await store.runs.find(repo=REPO)) == 1  # only the original run
    (refusal,) = replies(fake_github, pr["number"])
    assert refusal.startswith("@bob ") and "needs write access" in refusal and "`read`" in refusal
    (foreign_reply,) = replies(fake_github, foreign["number"])
    assert "Honk did not open this pull request" in foreign_reply
    assert fake_github.reactions_on(REPO, f"comment:{by_reader['comment']['id']}") == []


async def test_bots_edits_and_plain_comments_never_trigger(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, _ = await honk_pull(client, fake_github)
    fake_github.add_user("ci-helper[bot]", kind="Bot")
    fake_github.set_permission(REPO, "ci-helper[bot]", "write")
    number = pr["number"]
    await send(
        client, "issue_comment", issue_comment(fake_github, number, "/honk retry", "ci-helper[bot]")
    )
    await send(
        client, "issue_comment", issue_comment(fake_github, number, "/honk retry", action="edited")
    )
    await send(client, "issue_comment", issue_comment(fake_github, number, "Looks good, thanks"))
    store: Store = client.app[SERVICES].store
    assert len(await store.runs.find(repo=REPO)) == 1
    assert replies(fake_github, number) == []
    assert fake_github.calls_to("POST", r"/reactions$") == []


async def test_help_lists_the_commands_and_unknown_ones_get_help(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    await send(client, "issue_comment", issue_comment(fake_github, ISSUE, "/honk help", "bob"))
    await send(client, "issue_comment", issue_comment(fake_github, ISSUE, "/honk frobnicate"))
    help_text, unknown = replies(fake_github, ISSUE)
    for command in ("/honk retry [instructions]", "/honk cancel", "/honk help"):
        assert command in help_text and command in unknown
    assert unknown.startswith("@alice Honk has no `/honk frobnicate` command.")


async def test_cancel_ends_a_queued_run_at_once_and_says_so(
    client: TestClient, fake_github: FakeGitHub
) -> None:
    pr, _ = await honk_pull(client, fake_github)
    number = pr["number"]
    await send(client, "issue_comment", issue_comment(fake_github, number, "/honk retry x"))
    by_reader = issue_comment(fake_github, number, "/honk cancel", "bob")
    await send(client, "issue_comment", by_reader)
    store: Store = client.app[SERVICES].store
    queued = (await store.runs.find(repo=REPO, pr_number=number))[0]
    assert queued.state == RunState.QUEUED  # a reader cannot cancel

    cancel = issue_comment(fake_github, number, "/honk cancel")
    await send(client, "issue_comment", cancel)
    run = await store.runs.get(queued.id)
    assert run is not None and run.state == RunState.CANCELLED
    assert any(s.name == "cancel" and s.detail == "asked for by @alice" for s in run.steps)
    assert fake_github.reactions_on(REPO, f"comment:{cancel['comment']['id']}") == ["+1"]
    assert f"Cancelling run {run.id} (was queued)" in replies(fake_github, number)[-1]

    await send(client, "issue_comment", issue_comment(fake_github, number, "/honk cancel"))
    assert "Nothing to cancel" in replies(fake_github, number)[-1]


@pytest.mark.e2e
async def test_cancel_during_a_run_stops_it_and_the_tracking_comment_says_so(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_github.add_installation(INSTALLATION, account="octo-org", repos=[REPO])
    fake_github.add_repo(REPO, files={"calc.py": "def add(a, b):\n    return a - b\n"})
    fake_github.add_issue(
        REPO, ISSUE, title="add() returns the wrong sum", user="alice", labels=["honk"]
    )
    fake_github.set_permission(REPO, "alice", "write")
    working = asyncio.Event()

    def long_command(request: dict[str, Any]) -> Any:
        working.set()
        return tool_use_bash("sleep 30")

    fake_anthropic.script(long_command)
    settings = fake_slack.settings(base_settings).with_overrides(
        github_api_url=fake_github.url,
        anthropic_base_url=fake_anthropic.url,
        workers=1,
        lease_seconds=0.5,
    )
    client = await aiohttp_client(create_app(settings))
    labeled = load_payload("issues.labeled.1")
    labeled.update(
        label={**labeled["label"], "name": "honk"},
        issue=fake_github.repo(REPO)["issues"][ISSUE],
        sender=fake_github.users["alice"],
        installation={"id": INSTALLATION},
        repository={**labeled["repository"], "full_name": REPO, "name": "calc"},
    )
    await post_webhook(client, "issues", labeled)
    await asyncio.wait_for(working.wait(), 30)
    await asyncio.sleep(0.2)  # the command is running in the sandbox now
    started = time.monotonic()
    await post_webhook(client, "issue_comment", issue_comment(fake_github, ISSUE, "/honk cancel"))

    store: Store = client.app[SERVICES].store

    async def ended() -> Any:
        (run,) = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return run if not run.state.active else None

    run = await eventually(ended, within=15)
    assert run.state == RunState.CANCELLED
    assert time.monotonic() - started < 10  # not the 30 s the command would have taken
    tracking = fake_github.repo(REPO)["comments"][run.tracking_comment_id]
    assert "Cancelled on request." in tracking["body"]
    assert any("stops shortly" in body for body in replies(fake_github, ISSUE))
    assert fake_github.repo(REPO)["pulls"] == {}
    assert [s.name for s in run.steps if s.name in ("cancel", "cancelled")] == [
        "cancel",
        "cancelled",
    ]
    thread = fake_slack.messages(thread_ts=fake_slack.messages()[0].ts)
    assert any("Cancelled" in m.text for m in thread)
