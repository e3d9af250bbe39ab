"""The run page without a browser: who sees what, CSRF, the JSON API, the live stream, redaction."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import unquote

from aiohttp.test_utils import TestClient

from app.agent.results import AgentEvent
from app.models import Run, RunState
from app.runs.events import RunEvents
from app.store import NewRun
from app.web import SERVICES
from tests.calc_world import INSTALLATION, ISSUE, REPO
from tests.fakes.github import FakeGitHub
from tests.run_page_world import HONK_URL, csrf_of, sign_in

# Shaped like a GitHub token: the redactor knows it by its prefix, whatever its length.
LEAKED = "ghp_" + "Z9" * 20


async def queued(page_client: TestClient, **fields: Any) -> Run:
    store = page_client.app[SERVICES].store
    values = {"repo": REPO, "installation_id": INSTALLATION, "issue_number": ISSUE} | fields
    run = await store.runs.enqueue(NewRun(**values))
    assert run is not None
    return run


async def test_a_visitor_signs_in_with_github_and_comes_back_to_the_run(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    first = await page_client.get(f"/runs/{run.id}", allow_redirects=False)
    assert first.status == 302
    assert unquote(first.headers["Location"]) == f"/signin?next=/runs/{run.id}"
    assert await sign_in(page_client, fake_github, "alice", f"/runs/{run.id}") == f"/runs/{run.id}"
    authorize = fake_github.calls_to("GET", r"^/login/oauth/authorize$")[-1]
    assert authorize.query["client_id"] == fake_github.oauth_client_id
    assert authorize.query["redirect_uri"] == f"{HONK_URL}/signin/callback"
    page = await page_client.get(f"/runs/{run.id}")
    assert page.status == 200
    text = await page.text()
    assert f"Run {run.id}" in text and "Cancel this run" in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # The cookie is the encrypted session: neither the login nor the token is readable in it.
    cookie = page_client.session.cookie_jar.filter_cookies(page_client.make_url("/"))[
        "honk_session"
    ]
    token = next(iter(fake_github.user_tokens))
    assert "alice" not in cookie.value and token not in cookie.value
    # An outside address to come back to is refused: the flow ends on Honk's own runs list.
    assert await sign_in(page_client, fake_github, "alice", "https://evil.example/x") == "/runs"


async def test_a_person_who_cannot_read_the_repository_gets_the_same_404_as_for_no_run(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    await sign_in(page_client, fake_github, "bob")
    hidden = await page_client.get(f"/runs/{run.id}")
    missing = await page_client.get("/runs/999999")
    assert hidden.status == missing.status == 404
    assert await hidden.text() == await missing.text()
    for path in (f"/api/runs/{run.id}", f"/api/runs/{run.id}/events", f"/runs/{run.id}/live"):
        assert (await page_client.get(path)).status == 404, path
    listed = await (await page_client.get("/runs")).text()
    assert f"/runs/{run.id}" not in listed


async def test_a_reader_sees_the_run_but_may_not_steer_it(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    await sign_in(page_client, fake_github, "carol")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert f"Run {run.id}" in page and "Cancel this run" not in page
    refused = await page_client.post(
        f"/runs/{run.id}/cancel", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert refused.status == 403
    assert "needs write access" in await refused.text()
    stored = await page_client.app[SERVICES].store.runs.get(run.id)
    assert stored is not None and stored.state == RunState.QUEUED


async def test_cancel_needs_the_sessions_csrf_token(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert '<noscript><meta http-equiv="refresh"' in page  # active: refreshes without JavaScript
    store = page_client.app[SERVICES].store
    for form in ({}, {"csrf": "forged"}):
        refused = await page_client.post(f"/runs/{run.id}/cancel", data=form, allow_redirects=False)
        assert refused.status == 403
        assert (await store.runs.get(run.id)).state == RunState.QUEUED  # type: ignore[union-attr]
    done = await page_client.post(
        f"/runs/{run.id}/cancel", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == f"/runs/{run.id}"
    cancelled = await store.runs.get(run.id)
    assert cancelled is not None and cancelled.state == RunState.CANCELLED
    assert any(s.name == "cancel" and "@alice" in s.detail for s in cancelled.steps)


async def test_retry_with_instructions_queues_a_follow_up_by_the_person(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    store = page_client.app[SERVICES].store
    run = await queued(page_client, requested_by="alice")
    await store.runs.finish(run.id, RunState.FAILED, error="the tests failed")
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert "Retry" in page and "Cancel this run" not in page
    assert 'http-equiv="refresh"' not in page  # finished: nothing more to wait for
    response = await page_client.post(
        f"/runs/{run.id}/retry",
        data={"csrf": csrf_of(page), "instructions": "Keep the old name as an alias."},
        allow_redirects=False,
    )
    assert response.status == 303
    follow_up = await store.runs.get(int(response.headers["Location"].rsplit("/", 1)[1]))
    assert follow_up is not None and follow_up.id != run.id
    assert follow_up.requested_by == "alice" and follow_up.state == RunState.QUEUED
    assert follow_up.instructions == "Keep the old name as an alias."


async def test_the_json_api_takes_a_github_token_as_a_bearer(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    store = page_client.app[SERVICES].store
    run = await queued(page_client, requested_by="alice")
    for n in range(3):
        await store.events.add(run.id, "text", {"turn": n, "text": f"step {n}"})
    carol = {"Authorization": f"Bearer {fake_github.user_token_for('carol')}"}
    described = await page_client.get(f"/api/runs/{run.id}", headers=carol)
    assert described.status == 200
    body = await described.json()
    assert body["repo"] == REPO and body["state"] == "queued"
    assert body["links"]["page"] == f"{HONK_URL}/runs/{run.id}"
    events = await (
        await page_client.get(f"/api/runs/{run.id}/events?after=1", headers=carol)
    ).json()
    assert [e["seq"] for e in events["events"]] == [2, 3] and events["last"] == 3
    assert events["events"][0]["data"]["text"] == "step 1"
    bob = {"Authorization": f"token {fake_github.user_token_for('bob')}"}
    assert (await page_client.get(f"/api/runs/{run.id}", headers=bob)).status == 404
    nobody = await page_client.get(f"/api/runs/{run.id}")
    assert nobody.status == 401 and "Bearer" in nobody.headers["WWW-Authenticate"]
    forged = {"Authorization": "Bearer ghu_not-a-token"}
    assert (await page_client.get(f"/api/runs/{run.id}", headers=forged)).status == 401
    assert (
        await page_client.get(f"/api/runs/{run.id}/events?after=x", headers=carol)
    ).status == 400


async def test_the_runs_list_filters_by_repository_state_and_mine(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    fake_github.add_repo("octo-org/other", private=True)
    store = page_client.app[SERVICES].store
    mine = await queued(page_client, requested_by="carol")
    theirs = await queued(page_client, issue_number=13, requested_by="alice")
    await store.runs.finish(theirs.id, RunState.SUCCEEDED)
    hidden = await queued(page_client, repo="octo-org/other", issue_number=1, requested_by="carol")
    await sign_in(page_client, fake_github, "carol")

    async def listed(query: str = "") -> set[int]:
        page = await (await page_client.get(f"/runs{query}")).text()
        return {int(n) for n in re.findall(r'href="/runs/(\d+)"', page)}

    assert await listed() == {mine.id, theirs.id}  # never the repository carol cannot read
    assert await listed("?mine=1") == {mine.id}
    assert await listed("?state=succeeded") == {theirs.id}
    assert await listed(f"?repo={REPO}&state=queued") == {mine.id}
    assert await listed("?repo=octo-org/other") == set()
    assert hidden.id not in await listed("?mine=1")


async def test_a_secret_in_a_commands_output_never_reaches_the_page_or_the_api(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    events = RunEvents(page_client.app[SERVICES].store, run.id)
    await events.agent(
        AgentEvent("tool", 1, "bash", "env", tool_id="t1", tool_input={"command": "env"})
    )
    output = f"HOME=/workspace\nGITHUB_TOKEN={LEAKED}\n" + "\n".join(map(str, range(30)))
    await events.agent(AgentEvent("tool_done", 1, "bash", "env", tool_id="t1", output=output))
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    api = await (await page_client.get(f"/api/runs/{run.id}/events")).text()
    for shown in (page, api):
        assert LEAKED not in shown and "GITHUB_TOKEN=[REDACTED]" in shown
    assert "$ env" in page and "more lines</summary>" in page  # one entry, its output folded
    assert page.count('id="call-t1"') == 1


async def test_an_expiring_user_token_is_refreshed_and_the_session_keeps_the_new_one(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    fake_github.user_token_ttl = 60.0  # inside Honk's margin: every request refreshes first
    await sign_in(page_client, fake_github, "alice")
    for _ in range(3):  # each time with the refresh token the last answer stored in the cookie
        seen = await page_client.get(f"/runs/{run.id}", allow_redirects=False)
        assert seen.status == 200, (seen.status, seen.headers.get("Location"))
    assert len(fake_github.calls_to("POST", r"^/login/oauth/access_token$")) == 4
    assert len(fake_github.refresh_tokens) == 1  # each refresh token was spent once
    # A refresh GitHub refuses signs the person out: the next page asks them to sign in.
    fake_github.refresh_tokens.clear()
    again = await page_client.get(f"/runs/{run.id}", allow_redirects=False)
    assert again.status == 302 and again.headers["Location"].startswith("/signin?next=")


async def test_a_judges_review_and_the_network_summary_show_when_the_run_has_them(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    store = page_client.app[SERVICES].store
    await sign_in(page_client, fake_github, "carol")
    before = await (await page_client.get(f"/runs/{run.id}")).text()
    assert 'id="review-section" hidden' in before and 'id="network-section" hidden' in before
    record = {"verdict": "vetoed", "round": 1, "final": True, "model": "claude-haiku-4-5"}
    record |= {"reasons": ["<b>add()</b> lacks a test"], "checks": True, "findings": []}
    await store.events.add(run.id, "review", record)
    for host, allowed in (("pypi.org", True), ("pypi.org", True), ("evil.example", False)):
        await store.events.add(run.id, "network", {"host": host, "allowed": allowed})
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert 'id="review-section" hidden' not in page
    assert '<span class="verdict-tag bad">Vetoed</span>' in page
    # The judge's words are a model's: inert (its HTML shown as code), never markup.
    assert "<li><code>&lt;b&gt;</code>add()<code>&lt;/b&gt;</code> lacks a test</li>" in page
    assert "<b>add()" not in page
    assert '<code>pypi.org</code> <span class="tag allowed">allowed</span> \u00d72' in page
    assert '<code>evil.example</code> <span class="tag blocked">blocked</span> \u00d71' in page


async def test_the_live_stream_sends_new_entries_the_summary_and_the_end(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client, requested_by="alice")
    store = page_client.app[SERVICES].store
    await store.events.add(run.id, "text", {"turn": 1, "text": "already on the page"})
    await sign_in(page_client, fake_github, "alice")
    seen: list[tuple[str, str]] = []  # (event, data)

    async def read_until(stream: Any, wanted: str) -> None:
        event = ""
        async with asyncio.timeout(20):
            while not any(name == wanted for name, _ in seen):
                line = (await stream.content.readline()).decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((event, line.removeprefix("data: ")))

    async with page_client.get(f"/runs/{run.id}/live?after=1") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await read_until(stream, "summary")
        await store.events.add(run.id, "text", {"turn": 2, "text": "<i>new</i> words"})
        await read_until(stream, "entry")
        await store.runs.finish(run.id, RunState.FAILED, error="stopped")
        await read_until(stream, "end")
    entries = [json.loads(data) for name, data in seen if name == "entry"]
    assert [(e["seq"], e["section"]) for e in entries] == [(2, "transcript")]
    assert "&lt;i&gt;new&lt;/i&gt; words" in entries[0]["html"]
    assert "already on the page" not in json.dumps(entries)
    summaries = [json.loads(data)["html"] for name, data in seen if name == "summary"]
    assert "Working" in summaries[0] or "Queued" in summaries[0]
    assert "Failed" in summaries[-1] and "Retry" in summaries[-1]
