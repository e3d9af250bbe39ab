"""The run page leads with the outcome: the issue's title, the state, the agent's summary as
inert Markdown, the review's verdict and reasons (a run event the review records), the main
action; below, Retry, the figures and a transcript without empty phases. Over aiohttp, one
real run through the pipeline (git, bwrap, the fakes) and stored events for the rest."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.agent.results import AgentEvent
from app.config import Settings
from app.issue_snapshots import record_approved
from app.models import Run, RunState, Usage
from app.runs.events import RunEvents
from app.store import NewRun
from app.web import SERVICES
from tests.calc_world import INSTALLATION, ISSUE, ISSUE_TITLE, REPO, TESTS, labeled
from tests.fakes.anthropic import FakeAnthropic, approve, text, tool_use_edit, veto
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.run_page_world import page_honk, sign_in

DATED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")
PHASE = re.compile(
    r'<h3 class="entry phase" id="[^"]+">(\w+)(?: <span class="muted">· ([^<]*)</span>)?</h3>'
)
REASON = "`test_add` now expects -1; the bug in `add()` is still there."


async def queued(page_client: TestClient, issue: int = ISSUE) -> Run:
    new = NewRun(repo=REPO, installation_id=INSTALLATION, issue_number=issue, requested_by="alice")
    run = await page_client.app[SERVICES].store.runs.enqueue(new)
    assert run is not None
    return run


def position(page: str, marker: str) -> int:
    assert marker in page, marker
    return page.index(marker)


@pytest.mark.e2e
async def test_a_real_run_records_its_review_and_the_page_leads_with_the_outcome(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_anthropic.script(
        # Rewrites the expectation to fit the bug; the judge vetoes; the second attempt fixes.
        tool_use_edit(command="str_replace", path="test_calc.py", old_str="== 5", new_str="== -1"),
        text("Updated the test to the current behaviour."),
        tool_use_edit(command="create", path="test_calc.py", file_text=TESTS),
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        text("Restored the test and fixed `add()`: it subtracted.\n\n- `python -m pytest` passes"),
    )
    fake_anthropic.script_review(veto(REASON), approve("Fixes `add()`; the test is unchanged."))
    fakes = (fake_github, fake_anthropic, fake_slack)
    page_client = await page_honk(aiohttp_client, base_settings, fakes, workers=1)
    assert (await post_webhook(page_client, "issues", labeled())).status == 202
    store = page_client.app[SERVICES].store

    async def finished() -> Run | None:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(finished, within=90)
    assert run.state == RunState.SUCCEEDED and run.review == "recovered", run.error

    # The review is a run event: the first look stopped by the tests' outcome (the rewritten
    # expectation fails with main's tests), then the second look's verdict.
    events = await store.events.read(run.id)
    reviews = [e.data for e in events if e.kind == "review"]
    assert [(r["round"], r["verdict"], r["final"]) for r in reviews] == [
        (1, "outcome", False),
        (2, "recovered", True),
    ]
    assert reviews[0]["reasons"] == [REASON] and reviews[1]["summary"].startswith("Fixes")
    assert [e.data["title"] for e in events if e.kind == "subject"] == [ISSUE_TITLE]
    (end,) = [e.data for e in events if e.kind == "finished"]
    assert end["summary"].startswith("Restored the test and fixed `add()`")

    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    # The issue's title, then the outcome, then Retry, then the figures and the rest.
    assert f'<h1 id="title">{ISSUE_TITLE}</h1>' in page
    order = [
        position(page, 'id="title"'),
        position(page, 'id="state">PR opened<'),
        position(page, 'id="agent-summary"'),
        position(page, 'id="verdict"'),
        position(page, 'id="open-pr"'),
        position(page, 'id="retry"'),
        position(page, 'class="facts"'),
        position(page, 'class="card timeline"'),
        position(page, 'id="transcript-section"'),
    ]
    assert order == sorted(order)
    assert "Restored the test and fixed <code>add()</code>: it subtracted." in page
    assert "<li><code>python -m pytest</code> passes</li>" in page
    pr = next(iter(fake_github.repo(REPO)["pulls"].values()))
    assert f'id="open-pr" href="{pr["html_url"]}">Open pull request #{pr["number"]}</a>' in page
    outcome = page[position(page, 'id="outcome"') : position(page, 'id="retry"')]
    assert "Approved on the agent&#39;s second attempt" in outcome
    reason_html = "<code>test_add</code> now expects -1; the bug in <code>add()</code> is still"
    assert "Stopped at first" in outcome and reason_html in outcome
    # The Review card has both looks.
    card = page[position(page, 'id="review-section"') : position(page, 'id="diff-section"')]
    stopped = "Stopped by the tests&#39; outcome, before the agent&#39;s second attempt"
    assert stopped in card and reason_html in card
    assert "Fixes <code>add()</code>; the test is unchanged." in card

    # The transcript shows no empty phase (the review's hold the tests' outcome checks); its
    # last phase says how the run ended.
    assert PHASE.findall(page) == [
        ("agent", "starting"),
        ("review", ""),
        ("agent", "addressing the review"),
        ("review", "after the agent&#39;s second attempt"),
        ("publish", "PR opened"),
    ]
    assert "The run ended: PR opened." in page
    # Times with their date and zone; no worker's id; counts that agree.
    timeline = page[position(page, 'class="card timeline"') :]
    times = re.findall(r"<time datetime=\"[^\"]+\">([^<]+)</time>", timeline)
    assert len(times) == len(run.steps) > 5 and all(DATED.fullmatch(t) for t in times)
    claimed = next(s for s in run.steps if s.name == "claimed")
    assert claimed.detail and claimed.detail not in page
    assert f"Timeline ({len(run.steps)} steps)" in page
    requests = run.usage.requests
    assert requests > 1 and f"({requests} requests to <code>" in page
    assert "finding(s)" not in page
    assert "1 outcome finding, 1 finding (1 from reading the test files, 0 from the diff)" in page
    # The outcome checks' event is shown in words, with the check that caught each finding.
    assert "<strong>The tests' outcome:</strong>" in page and "(pass-to-pass)</li>" in page
    assert "skipped=None" not in page


async def test_counts_agree_with_their_nouns_and_times_have_a_date_and_zone(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client)
    store = page_client.app[SERVICES].store
    assert not run.steps
    await store.runs.add_usage(run.id, Usage(requests=1))
    await store.runs.add_step(run.id, "claimed", "host-7:4242:w0")  # a worker's id
    await sign_in(page_client, fake_github, "carol")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert "(1 request to <code>" in page and "1 requests" not in page
    assert "Timeline (1 step)" in page
    (step,) = (await store.runs.get(run.id)).steps  # type: ignore[union-attr]
    stamp = step.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    shown = f'<time datetime="{step.at.isoformat()}">{stamp}</time> <strong>claimed</strong></li>'
    assert shown in page
    assert "host-7" not in page
    await store.runs.add_usage(run.id, Usage(requests=1))
    await store.runs.add_step(run.id, "checkout")
    again = await (await page_client.get(f"/runs/{run.id}")).text()
    assert "(2 requests to <code>" in again and "Timeline (2 steps)" in again


async def test_the_agents_summary_is_markdown_and_inert(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client)
    store = page_client.app[SERVICES].store
    summary = (
        "Fixed `add`: it subtracted. <script>alert(1)</script> @octo-org/everyone\n\n"
        "[safe](https://example.com/a) [unsafe](javascript:alert(1)) [local](/runs/1/cancel) "
        "![tracker](https://evil.example/pixel.png) <img src=https://evil.example/x>\n\n"
        + "\n\n".join(f"Paragraph {n}: " + "words " * 40 for n in range(6))
    )
    await RunEvents(store, run.id).finished(RunState.FAILED, error="stopped", summary=summary)
    await store.runs.finish(run.id, RunState.FAILED, error="the tests failed")
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    head = page[position(page, 'id="agent-summary"') : position(page, 'id="open-issue"')]
    assert "<p>Fixed <code>add</code>: it subtracted." in head
    assert "<code>&lt;script&gt;</code>alert(1)<code>&lt;/script&gt;</code>" in head
    assert "<code>@octo-org/everyone</code>" in head
    assert '<a href="https://example.com/a" rel="nofollow noopener noreferrer">safe</a>' in head
    assert "javascript:" not in head.replace("[unsafe](javascript:alert(1))", "")
    assert 'href="/runs' not in head and "<img" not in page and "<script>" not in page
    # A long summary shows its head; the rest opens on request, below the fold.
    assert "Paragraph 0" in head and "The rest of the agent's summary</summary>" in head
    assert head.index("Paragraph 5") > head.index("The rest of the agent")
    above = page[position(page, 'id="state"') : position(page, 'id="agent-summary"')]
    assert "<strong>Why it stopped:</strong> the tests failed" in above


@pytest.mark.e2e
async def test_empty_phases_leave_the_live_page_and_its_last_phase_says_how_it_ended(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client)
    store = page_client.app[SERVICES].store
    events = RunEvents(store, run.id)
    await events.phase("checkout")  # seq 1: on the page already
    await sign_in(page_client, fake_github, "alice")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def read_until(stream: Any, done: Any) -> None:
        event = ""
        async with asyncio.timeout(20):
            while not done():
                line = (await stream.content.readline()).decode().rstrip("\r\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line.removeprefix("data: "))))

    def entry(key: str) -> list[dict[str, Any]]:
        return [data for name, data in seen if name == "entry" and data.get("key") == key]

    async with page_client.get(f"/runs/{run.id}/live?after=1") as stream:
        await events.phase("agent", "starting")  # seq 2: checkout had nothing under it
        await read_until(stream, lambda: entry("ev-2"))
        assert entry("ev-1") == [{"seq": 2, "key": "ev-1", "section": "transcript", "html": ""}]
        await events.agent(AgentEvent("text", 1, "", "Looking at `calc.py`."))  # seq 3
        await events.phase("verify")  # seq 4: the agent's phase stays, it has text
        await read_until(stream, lambda: entry("ev-4"))
        assert not [d for d in entry("ev-2") if d["html"] == ""]
        await events.finished(RunState.SUCCEEDED, summary="Fixed `add`.")  # seq 5
        await store.runs.finish(run.id, RunState.SUCCEEDED)
        await read_until(stream, lambda: any(name == "end" for name, _ in seen))
    # The last phase, replaced in place: how the run ended instead of a stale note.
    assert '">verify <span class="muted">· PR opened</span></h3>' in entry("ev-4")[-1]["html"]
    summaries = [data["html"] for name, data in seen if name == "summary"]
    assert "Fixed <code>add</code>." in summaries[-1]
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert PHASE.findall(page) == [("agent", "starting"), ("verify", "PR opened")]


async def test_a_summary_only_from_the_end_or_from_a_run_recorded_before_summaries(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    store = page_client.app[SERVICES].store
    cancelled, older = await queued(page_client), await queued(page_client, ISSUE + 1)
    for run in (cancelled, older):
        await store.events.add(run.id, "text", {"turn": 1, "text": "Let me look at `calc.py`."})
    # Cancelled mid-turn: the agent's last words were no summary, and the end says so.
    await RunEvents(store, cancelled.id).finished(RunState.CANCELLED, note="Cancelled.")
    await store.runs.finish(cancelled.id, RunState.CANCELLED)
    # An end stored before the end carried a summary: the agent's last message stands in.
    await store.events.add(older.id, "finished", {"state": "succeeded", "error": None})
    await store.runs.finish(older.id, RunState.SUCCEEDED)
    await sign_in(page_client, fake_github, "alice")
    page = await (await page_client.get(f"/runs/{cancelled.id}")).text()
    assert 'id="agent-summary"' not in page and 'id="state">Cancelled<' in page
    page = await (await page_client.get(f"/runs/{older.id}")).text()
    summary = page[position(page, 'id="agent-summary"') :]
    assert summary.startswith('id="agent-summary"><p>Let me look at <code>calc.py</code>.</p>')


async def test_a_queued_run_is_titled_by_its_issue_as_approved(
    page_client: TestClient, fake_github: FakeGitHub
) -> None:
    run = await queued(page_client)
    store = page_client.app[SERVICES].store
    await sign_in(page_client, fake_github, "alice")
    untitled = await (await page_client.get(f"/runs/{run.id}")).text()
    assert f'<h1 id="title">Run {run.id}</h1>' in untitled
    issue = {"number": ISSUE, "title": "add() <b>returns</b> the wrong sum", "body": "x"}
    await record_approved(store, REPO, issue, approved_by="alice")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert '<h1 id="title">add() &lt;b&gt;returns&lt;/b&gt; the wrong sum</h1>' in page
    assert 'id="state">Queued<' in page and 'id="cancel"' in page  # its main action
    # Once the run has started, the title it recorded is the one shown.
    await RunEvents(store, run.id).subject("Follow-up: keep the old name")
    page = await (await page_client.get(f"/runs/{run.id}")).text()
    assert '<h1 id="title">Follow-up: keep the old name</h1>' in page
