"""What the go-live tests share: the calc world with sign-in, people in Slack and on GitHub,
connecting GitHub from Slack as a browser would, and a green Honk PR with its card."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import Run, RunState
from app.slack import card
from app.web import SERVICES
from tests.calc_world import ISSUE, REPO, calc_settings, labeled, seed_calc
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack, PostedMessage
from tests.helpers import eventually, post_webhook
from tests.run_page_world import SESSION_KEY

HONK_URL = "http://honk.example.test"  # http: the test client has no TLS
PR = 13  # the fake numbers pull requests after the issues
# Slack user -> (GitHub login, role on octo-org/calc)
PEOPLE = {"U0ALICE": ("alice", "write"), "U0BOB": ("bob", "read"), "U0DAVE": ("dave", "write")}


def golive_settings(
    base: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    **overrides: Any,
) -> Settings:
    """octo-org/calc with Honk installed and sign-in set up; alice and dave may write, bob may
    only read; each is an org member whose public e-mail is their Slack e-mail."""
    seed_calc(fake_github)
    fake_slack.add_user("U0DAVE", "dave", "dave@example.com")
    for login, role in PEOPLE.values():
        fake_github.add_user(login, name=login.title(), email=f"{login}@example.com")
        fake_github.add_org_member("octo-org", login)
        fake_github.set_permission(REPO, login, role)
    values: dict[str, Any] = {
        "github_client_id": fake_github.oauth_client_id,
        "github_client_secret": fake_github.oauth_client_secret,
        "session_key": SESSION_KEY,
        "honk_url": HONK_URL,
    }
    return calc_settings(base, fake_github, fake_anthropic, fake_slack, **(values | overrides))


def buttons(message: PostedMessage | dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = message["blocks"] if isinstance(message, dict) else message.blocks
    return {
        element["action_id"]: element
        for block in found or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


def told_to(fake_slack: FakeSlack, text: str) -> list[dict[str, Any]]:
    """What Honk answered on response_urls (ephemeral unless said) holding `text`."""
    return [r for r in fake_slack.responses if text in json.dumps(r)]


def thread(fake_slack: FakeSlack) -> list[PostedMessage]:
    root = fake_slack.messages()[0]
    return fake_slack.messages(thread_ts=root.ts)


def in_thread(fake_slack: FakeSlack, text: str) -> list[PostedMessage]:
    return [m for m in thread(fake_slack) if text in m.text or text in json.dumps(m.blocks)]


async def _connect_button(fake_slack: FakeSlack, seen: int = 0) -> str:
    async def found() -> str | None:
        for response in reversed(fake_slack.responses[seen:]):
            button = buttons(response).get(card.CONNECT_ACTION) if response.get("blocks") else None
            if button:
                return str(button["url"])
        return None

    return await eventually(found)


async def connect(client: TestClient, fake_github: FakeGitHub, url: str, login: str) -> str:
    """Open the Connect GitHub link, go on, sign in on GitHub as `login`, confirm the
    connection on the page that names both accounts: the final page."""
    assert url.startswith(f"{HONK_URL}/connect/")
    path = urlsplit(url).path
    page = await client.get(path)
    assert page.status == 200, await page.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf
    start = await client.post(path, data={"csrf": csrf.group(1)}, allow_redirects=False)
    assert start.status == 302, await start.text()
    fake_github.sign_in_as(login)
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(start.headers["Location"], allow_redirects=False) as back,
    ):
        assert back.status == 302
        callback = urlsplit(back.headers["Location"])
    confirm = await client.get(f"{callback.path}?{callback.query}", allow_redirects=False)
    assert confirm.status == 200, await confirm.text()
    asked = await confirm.text()
    # The last step names both accounts; only its button connects them.
    assert f"Connect the GitHub account <strong>{login}</strong> to the Slack user" in asked
    form = re.search(r'<form method="post" action="(/connect/[^"]+/confirm)">', asked)
    csrf = re.search(r'name="csrf" value="([^"]+)"', asked)
    assert form and csrf
    done = await client.post(form.group(1), data={"csrf": csrf.group(1)}, allow_redirects=False)
    assert done.status == 200, await done.text()
    return await done.text()


async def connect_user(
    client: TestClient, fake_slack: FakeSlack, fake_github: FakeGitHub, user: str
) -> None:
    seen = len(fake_slack.responses)
    await fake_slack.command(client, "link", user=user)
    url = await _connect_button(fake_slack, seen)
    page = await connect(client, fake_github, url, PEOPLE[user][0])
    assert f"<strong>{PEOPLE[user][0]}</strong>" in page


async def finished(client: TestClient, run_id: int, within: float = 60) -> Run:
    store = client.app[SERVICES].store

    async def probe() -> Run | None:
        run = await store.runs.get(run_id)
        return run if run is not None and not run.state.active else None

    return await eventually(probe, within=within)


async def dispatched(client: TestClient) -> bool:
    return await client.app[SERVICES].store.inbox.count(pending=True) == 0


def workflow_event(fake_github: FakeGitHub, workflow: dict[str, Any]) -> dict[str, Any]:
    from tests.conftest import load_payload

    payload = load_payload("workflow_run.completed.1", workflow_run=workflow)
    payload["repository"] = fake_github.repo(REPO)["data"]
    payload["installation"] = {"id": 5150}
    return payload


async def ci_finishes(
    client: TestClient,
    fake_github: FakeGitHub,
    sha: str,
    *,
    branch: str,
    conclusion: str = "success",
    log: str = "",
) -> dict[str, Any]:
    """A workflow run on `sha` finishes; GitHub tells Honk (workflow_run.completed)."""
    workflow = fake_github.add_workflow_run(
        REPO,
        head_sha=sha,
        head_branch=branch,
        conclusion=conclusion,
        jobs=[{"name": "tests", "conclusion": conclusion, "log": log}],
    )
    await post_webhook(client, "workflow_run", workflow_event(fake_github, workflow))
    await eventually(lambda: dispatched(client))
    return workflow


async def green_pr(
    client: TestClient, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> tuple[Run, Any]:
    """Label the issue; the run opens PR #13; CI passes on it: (the run, the card)."""
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store
    runs = await eventually(lambda: store.runs.find(repo=REPO, issue_number=ISSUE))
    run = await finished(client, runs[-1].id)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.pr_number == PR and run.head_sha and run.branch
    await ci_finishes(client, fake_github, run.head_sha, branch=run.branch)
    (ready,) = await eventually(lambda: in_thread(fake_slack, "ready to merge"))
    return run, ready
