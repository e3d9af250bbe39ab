"""Slack as the front door, end to end over real HTTP: signed requests, issues, runs, buttons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.handlers.slack.buttons import RETRY_BLOCK, RETRY_INPUT
from app.handlers.slack.channels import channel_repo
from app.models import Run, RunKind, RunState
from app.slack import blocks
from app.web import SERVICES, create_app
from tests.calc_world import (
    INSTALLATION,
    REPO,
    calc_settings,
    fixing_script,
    seed_calc,
    without_outcome_checks,
)
from tests.conftest import load_payload
from tests.fakes.anthropic import FakeAnthropic, text
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import CHANNEL_ID, FakeSlack
from tests.golive_world import HONK_URL, _connect_button, connect
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.run_page_world import SESSION_KEY


@pytest.fixture
def world(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    """octo-org/calc with Honk installed; Slack's alice may write there, bob may only read."""
    seed_calc(fake_github, issue=False)
    for login, role in (("alice", "write"), ("bob", "read")):
        fake_github.add_user(login, name=login.title(), email=f"{login}@example.com")
        fake_github.add_org_member("octo-org", login)
        fake_github.set_permission(REPO, login, role)
    # About Slack: the review's outcome checks are left to tests/e2e/test_review_e2e.py.
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack, workers=0)
    return without_outcome_checks(fake_github, settings)


async def runs_of(client: TestClient) -> list[Run]:
    return await client.app[SERVICES].store.runs.find(repo=REPO)


def issues_of(fake_github: FakeGitHub) -> list[dict[str, Any]]:
    issues = fake_github.repo(REPO)["issues"].values()
    return [i for i in issues if "pull_request" not in i]


async def finished(client: TestClient, count: int = 1) -> list[Run]:
    async def probe() -> list[Run] | None:
        runs = await runs_of(client)
        done = len(runs) >= count and not any(r.state.active for r in runs)
        return runs if done else None

    return await eventually(probe, within=60)


def texts(fake_slack: FakeSlack) -> str:
    return "\n".join(str(r.get("text")) for r in fake_slack.responses)


def bot_posts(fake_slack: FakeSlack) -> list[Any]:
    return [m for m in fake_slack.posted if m.author == "U0HONKBOT"]


def has_button(message: Any, action_id: str) -> bool:
    return action_id in json.dumps(message.blocks)


# -- the door itself ------------------------------------------------------------------------


async def test_unsigned_forged_or_stale_requests_are_refused(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    client = await aiohttp_client(create_app(world))
    body = b"command=%2Fhonk&text=octo-org%2Fcalc+fix+it&trigger_id=1"
    for path in ("/slack/commands", "/slack/events", "/slack/interactions"):
        unsigned = await client.post(path, data=body)
        assert unsigned.status == 401, path
    forged = await fake_slack.command(client, f"{REPO} fix it", secret="not-the-secret")
    stale = await fake_slack.command(client, f"{REPO} fix it", timestamp=1_600_000_000)
    garbled = await fake_slack.command(
        client, f"{REPO} fix it", headers={"X-Slack-Request-Timestamp": "soon"}
    )
    assert (forged.status, stale.status, garbled.status) == (401, 401, 401)
    assert "stale" in (await stale.json())["error"]

    challenge = {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    check = await fake_slack.send(
        client, "/slack/events", json.dumps({**challenge, "type": "url_verification"}).encode(),
        "application/json",
    )  # fmt: skip
    assert check.status == 200
    assert (await check.json())["challenge"] == challenge["challenge"]
    assert issues_of(fake_github) == [] and await runs_of(client) == []
    assert fake_slack.calls == []


async def test_without_a_signing_secret_everything_is_refused(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack
) -> None:
    client = await aiohttp_client(create_app(world.with_overrides(slack_signing_secret=None)))
    response = await fake_slack.command(client, f"{REPO} fix it")
    assert response.status == 401


# -- asking -----------------------------------------------------------------------------------


async def test_slash_command_opens_one_issue_and_one_run_answered_in_its_thread(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_slack: FakeSlack,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(*fixing_script())
    client = await aiohttp_client(create_app(world.with_overrides(workers=1)))
    response = await fake_slack.command(client, f"{REPO} add() returns the wrong sum")
    assert response.status == 200
    assert "On it" in (await response.json())["text"]

    (issue,) = await eventually(lambda: issues_of(fake_github))
    # Honk's own label event (sender: its bot) is ignored; no second run for the issue.
    labeled = load_payload("issues.labeled.1")
    labeled.update(
        label={**labeled["label"], "name": "honk"},
        repository={**labeled["repository"], "full_name": REPO, "name": "calc"},
        issue={**labeled["issue"], "number": issue["number"]},
        sender={"login": fake_github.bot_login(), "type": "Bot", "id": 1},
        installation={"id": INSTALLATION},
    )
    assert (await post_webhook(client, "issues", labeled)).status == 202
    (run,) = await finished(client)
    store = client.app[SERVICES].store

    async def dispatched() -> bool:
        return await store.inbox.count(pending=True) == 0

    await eventually(dispatched)
    assert len(await runs_of(client)) == 1

    assert run.state == RunState.SUCCEEDED, run.error
    assert (run.kind, run.issue_number, run.requested_by) == (
        RunKind.ISSUE,
        issue["number"],
        "alice",
    )
    assert issue["title"] == "add() returns the wrong sum"
    assert [label["name"] for label in issue["labels"]] == ["honk"]
    root = bot_posts(fake_slack)[0]
    assert (run.slack_channel, run.slack_ts) == (
        root.channel,
        root.ts,
    ) and root.channel == CHANNEL_ID
    assert f"https://honk-test.slack.com/archives/{CHANNEL_ID}/p" in issue["body"]
    assert "@alice" in issue["body"]

    # Every message Honk posted about it is the root or a reply in the root's thread.
    assert [m for m in bot_posts(fake_slack) if m.thread_ts is None] == [root]
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    thread = fake_slack.messages(thread_ts=root.ts)
    assert any(pr["html_url"] in json.dumps(m.blocks) for m in thread)
    assert root.edits >= 2 and pr["html_url"] in json.dumps(root.blocks)  # status in place
    assert "PR opened" in root.text


async def test_mention_in_a_dm_runs_in_the_dm_thread(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    client = await aiohttp_client(create_app(world))
    # Honk's own messages and edits in the DM are not requests.
    own = {"type": "message", "channel_type": "im", "channel": "D0ALICE001", "ts": "1.2"}
    await fake_slack.event(client, {**own, "bot_id": "B0HONKBOT", "text": f"fix {REPO} x"})
    await fake_slack.event(
        client, {**own, "user": "U0ALICE", "subtype": "message_changed", "text": f"{REPO} y"}
    )
    message, response = await fake_slack.direct_message(
        client, f"please fix add(), it subtracts, in {REPO}"
    )
    assert response.status == 200
    (run,) = await eventually(lambda: runs_of(client))
    assert (run.slack_channel, run.slack_ts) == (message.channel, message.ts)
    (issue,) = issues_of(fake_github)
    assert issue["title"] == "please fix add(), it subtracts,"
    assert f"/archives/{message.channel}/p{message.ts.replace('.', '')}" in issue["body"]
    reply = await eventually(lambda: fake_slack.messages(message.channel, thread_ts=message.ts))
    assert issue["html_url"] in json.dumps(reply[0].blocks)
    assert has_button(reply[0], blocks.CANCEL_ACTION)


async def test_channel_mention_and_slack_retries_make_one_issue(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    client = await aiohttp_client(create_app(world))
    message = fake_slack.user_message(CHANNEL_ID, "U0ALICE", f"<@U0HONKBOT> fix add in {REPO}")
    event = {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": message.text,
        "ts": message.ts,
        "channel": CHANNEL_ID,
    }
    first = await fake_slack.event(client, event, event_id="Ev0RETRIED")
    retried = await fake_slack.event(
        client,
        event,
        event_id="Ev0RETRIED",
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert (first.status, retried.status) == (200, 200)
    # The same slash command delivered twice (same trigger_id) is handled once too.
    for _ in range(2):
        again = await fake_slack.command(client, f"{REPO} make add add", trigger_id="13.1.abc")
        assert again.status == 200

    async def both_queued() -> list[Run] | None:
        runs = await runs_of(client)
        return runs if len(runs) == 2 and all(r.tracking_comment_id for r in runs) else None

    runs = await eventually(both_queued)
    assert sorted(i["title"] for i in issues_of(fake_github)) == ["fix add", "make add add"]
    assert message.ts in {r.slack_ts for r in runs}


async def test_unauthorized_or_unknown_users_are_told_why_and_nothing_runs(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    fake_slack.add_user("U0CAROL", "carol", "carol@home.example")
    client = await aiohttp_client(create_app(world))
    await fake_slack.command(client, f"{REPO} fix add", user="U0BOB")
    await fake_slack.command(client, f"{REPO} fix add", user="U0CAROL")
    await eventually(lambda: len(fake_slack.responses) == 2)
    told = texts(fake_slack)
    assert "write access to `octo-org/calc`" in told and "`read`" in told
    assert "carol@home.example" in told and "/honk link" in told
    assert all(r["response_type"] == "ephemeral" for r in fake_slack.responses)
    assert issues_of(fake_github) == [] and await runs_of(client) == []
    assert bot_posts(fake_slack) == []


async def test_a_channel_default_repository(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    client = await aiohttp_client(create_app(world))
    await fake_slack.command(client, "fix the login crash")
    await eventually(lambda: "Which repository?" in texts(fake_slack))

    response = await fake_slack.command(client, f"repo {REPO}", user="U0BOB")  # read only
    assert response.status == 200
    await eventually(lambda: "write access" in texts(fake_slack))
    store = client.app[SERVICES].store
    assert await channel_repo(store, CHANNEL_ID) is None

    await fake_slack.command(client, f"repo {REPO}")
    public = await eventually(
        lambda: [r for r in fake_slack.responses if r["response_type"] == "in_channel"]
    )
    assert REPO in public[0]["text"]
    assert await channel_repo(store, CHANNEL_ID) == REPO

    await fake_slack.command(client, "fix the login crash")
    (issue,) = await eventually(lambda: issues_of(fake_github))
    assert issue["title"] == "fix the login crash"
    (run,) = await eventually(lambda: runs_of(client))
    assert run.issue_number == issue["number"]


async def test_connecting_github_from_slack_tells_honk_who_you_are(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    """carol's Slack e-mail is no GitHub member's: signing in with GitHub from Slack is how
    Honk learns who she is (the old comment-code `/honk link` is gone)."""
    fake_slack.add_user("U0CAROL", "carol", "carol@home.example")
    fake_github.set_permission(REPO, "carol", "write")
    settings = world.with_overrides(
        github_client_id=fake_github.oauth_client_id,
        github_client_secret=fake_github.oauth_client_secret,
        session_key=SESSION_KEY,
        honk_url=HONK_URL,
    )
    client = await aiohttp_client(create_app(settings))
    await fake_slack.command(client, f"{REPO} fix add", user="U0CAROL")
    await eventually(lambda: "carol@home.example" in texts(fake_slack))

    seen = len(fake_slack.responses)
    await fake_slack.command(client, "link", user="U0CAROL")
    url = await _connect_button(fake_slack, seen)
    assert fake_slack.responses[-1]["response_type"] == "ephemeral"
    page = await connect(client, fake_github, url, "carol")
    assert "<strong>carol</strong>" in page
    (note,) = await eventually(lambda: [m for m in fake_slack.ephemeral if "carol" in m.text])
    assert note.user == "U0CAROL" and "connected GitHub as `carol`" in note.text

    await fake_slack.command(client, f"{REPO} fix add", user="U0CAROL")
    (run,) = await eventually(lambda: runs_of(client))
    assert run.requested_by == "carol"
    await fake_slack.command(client, "unlink", user="U0CAROL")
    await eventually(lambda: "Disconnected from GitHub `carol`" in texts(fake_slack))
    assert await client.app[SERVICES].store.connections.get("T0HONKTEAM:U0CAROL") is None


# -- buttons ------------------------------------------------------------------------------------


async def test_retry_button_text_reaches_the_model_and_the_message_updates_in_place(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_slack: FakeSlack,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(text("NO_CHANGE: add() looks right to me."), *fixing_script())
    client = await aiohttp_client(create_app(world.with_overrides(workers=1)))
    await fake_slack.command(client, f"{REPO} add() returns the wrong sum")
    (first,) = await finished(client)
    assert first.state == RunState.NO_CHANGE
    last = fake_slack.messages(thread_ts=first.slack_ts)[-1]
    assert has_button(last, blocks.RETRY_ACTION)

    clicked = await fake_slack.click(client, last, blocks.RETRY_ACTION)
    assert clicked.status == 200
    (view,) = fake_slack.views
    assert view["callback_id"] == "honk_retry_modal"
    wish = "It subtracts: look at the operator in calc.py"
    submitted = await fake_slack.submit(client, view, {RETRY_BLOCK: {RETRY_INPUT: wish}})
    assert submitted.status == 200

    runs = await finished(client, count=2)
    retry = runs[0]
    assert (retry.kind, retry.state, retry.instructions) == (
        RunKind.RETRY,
        RunState.SUCCEEDED,
        wish,
    )
    assert retry.requested_by == "alice" and retry.slack_ts == first.slack_ts
    assert any(wish in json.dumps(r) for r in fake_anthropic.requests[1:])
    assert not any(wish in json.dumps(r) for r in fake_anthropic.requests[:1])
    # The clicked message: buttons gone, the retry said in their place.
    assert last.edits == 1 and not has_button(last, blocks.RETRY_ACTION)
    assert f"run {retry.id} is queued" in json.dumps(last.blocks)


async def test_cancel_button_needs_write_access_and_updates_the_message(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack
) -> None:
    client = await aiohttp_client(create_app(world))  # no workers: the run stays queued
    await fake_slack.command(client, f"{REPO} add() returns the wrong sum")
    root = await eventually(
        lambda: next(
            (m for m in bot_posts(fake_slack) if has_button(m, blocks.CANCEL_ACTION)), None
        )
    )

    await fake_slack.click(client, root, blocks.CANCEL_ACTION, user="U0BOB")
    await eventually(lambda: "write access" in texts(fake_slack))
    (run,) = await runs_of(client)
    assert run.state == RunState.QUEUED and has_button(root, blocks.CANCEL_ACTION)

    await fake_slack.click(client, root, blocks.CANCEL_ACTION)
    await eventually(lambda: not has_button(root, blocks.CANCEL_ACTION))
    (run,) = await runs_of(client)
    assert run.state == RunState.CANCELLED
    assert f"cancelled run {run.id}" in json.dumps(root.blocks)

    # Open PR is a link button: acknowledged, nothing else.
    open_pr = {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "honk_open_pr",
                "url": "https://example.com/pr/1",
                "value": str(run.id),
            }
        ],
    }
    root.blocks = [*(root.blocks or []), open_pr]
    calls = len(fake_slack.calls)
    assert (await fake_slack.click(client, root, blocks.OPEN_PR_ACTION)).status == 200
    assert len(fake_slack.calls) == calls


async def test_a_stored_request_survives_a_crash_and_is_done_after_restart(
    aiohttp_client: ClientFactory, world: Settings, fake_slack: FakeSlack, fake_github: FakeGitHub
) -> None:
    """Slack got its answer, then the process died: the stored request is done on restart."""
    from app.handlers.slack.commands import SLACK_EVENT
    from app.store import Store

    form = {
        "team_id": "T0HONKTEAM", "channel_id": "C0HONK0001", "channel_name": "honk",
        "user_id": "U0ALICE", "command": "/honk", "text": f"{REPO} add() returns the wrong sum",
        "response_url": fake_slack.response_url(), "trigger_id": "99.1.crash",
    }  # fmt: skip
    store = await Store.open(world.store.database_url)
    try:  # what the dead process left behind: the request in the inbox, not yet done
        stored = {"kind": "command", "form": form}
        assert await store.inbox.record("slack:command:99.1.crash", SLACK_EVENT, stored)
    finally:
        await store.close()
    client = await aiohttp_client(create_app(world))
    (issue,) = await eventually(lambda: issues_of(fake_github))
    assert "add() returns the wrong sum" in issue["title"] + issue["body"]
    (run,) = await eventually(lambda: runs_of(client))
    assert run.issue_number == issue["number"] and run.requested_by == "alice"


async def test_a_dm_thread_gets_the_result_but_the_person_message_is_never_edited(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_slack: FakeSlack,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(*fixing_script())
    client = await aiohttp_client(create_app(world.with_overrides(workers=1)))
    message, _ = await fake_slack.direct_message(client, f"fix add() in {REPO}")
    (run,) = await finished(client)
    assert run.state == RunState.SUCCEEDED, run.error
    thread = fake_slack.messages(message.channel, thread_ts=message.ts)
    assert any(run.pr_url and run.pr_url in json.dumps(m.blocks) for m in thread)
    edits = [
        c for c in fake_slack.calls
        if c.method == "chat.update" and c.params.get("ts") == message.ts
    ]  # fmt: skip
    assert edits == []
