"""The run's home and the package caches end to end (real HTTP entry, real bwrap, real git):
setup fills pip's cache, the agent and `verify:` see it in the same home, the review's test
runs in a copy of the home as setup left it, the next run of the repository gets it restored
before its setup, and what the agent wrote into the cache after setup is in neither."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app import metrics
from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import ISSUE, ISSUE_BODY, REPO, labeled
from tests.fakes.anthropic import (
    FakeAnthropic,
    result_text,
    text,
    tool_results,
    tool_use_bash,
    tool_use_edit,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.run_page_world import page_settings, seed_people

pytestmark = pytest.mark.bwrap

SECOND_ISSUE = ISSUE + 1
FIX = tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b")
SETUP = (
    'if test -f "$PIP_CACHE_DIR/marker"; then echo "cache was there"; else echo "cache was '
    'empty"; mkdir -p "$PIP_CACHE_DIR"; echo from-setup > "$PIP_CACHE_DIR/marker"; fi; '
    'ls "$PIP_CACHE_DIR"'
)
# `verify:` shares the agent's home; the review's test runs get the home as setup left it.
HONK_YML = (
    'verify: test -f "$PIP_CACHE_DIR/agent-was-here" && python -m pytest -q\n'
    f"setup: '{SETUP}'\n"
    "review:\n"
    '  tests: test -f "$PIP_CACHE_DIR/marker" && test ! -e "$PIP_CACHE_DIR/agent-was-here" '
    "&& PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q\n"
)


@pytest.fixture
def world_settings(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    seed_people(fake_github)
    return page_settings(
        base_settings, fake_github, fake_anthropic, fake_slack, honk_url="http://honk.test"
    )


def restores(result: str) -> float:
    value = metrics.registry.get_sample_value("honk_cache_restores_total", {"result": result})
    return value or 0.0


async def run_of(client: TestClient, issue: int) -> Any:
    store = client.app[SERVICES].store

    async def probe() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=issue)
        return runs[0] if runs and not runs[0].state.active else None

    return await eventually(probe, within=90)


async def events_of(client: TestClient, run: Any, kind: str) -> list[dict[str, Any]]:
    store = client.app[SERVICES].store
    return [event.data for event in await store.events.read(run.id, kinds=(kind,))]


async def setup_output(client: TestClient, run: Any) -> str:
    done = [e for e in await events_of(client, run, "setup") if e.get("exit_code") is not None]
    assert [e["exit_code"] for e in done] == [0], done
    return str(done[0]["output"])


async def test_setup_fills_the_cache_the_run_shares_it_and_the_next_run_restores_it(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_github.commit_files(REPO, {".github/honk.yml": HONK_YML})
    fake_github.add_issue(
        REPO, SECOND_ISSUE, title="add() again", body=ISSUE_BODY, user="alice", labels=["honk"]
    )
    agent_turns = (
        tool_use_bash(
            'echo "agent home=$HOME"; cat "$PIP_CACHE_DIR/marker"; '
            'echo poison > "$PIP_CACHE_DIR/agent-was-here"'
        ),
        FIX,
        tool_use_bash("python -m pytest -q"),
        text("Fixed `add`."),
    )
    fake_anthropic.script(*agent_turns)
    hits, misses = restores("hit"), restores("miss")
    client = await aiohttp_client(create_app(world_settings))

    await post_webhook(client, "issues", labeled())
    first = await run_of(client, ISSUE)
    assert first.state == RunState.SUCCEEDED, first.error
    assert "cache was empty" in await setup_output(client, first)
    seen = "\n".join(
        result_text(block) for request in fake_anthropic.requests for block in tool_results(request)
    )
    assert "agent home=/home/honk" in seen and "from-setup" in seen  # the same home
    notes = [e["text"] for e in await events_of(client, first, "note")]
    assert any(n.startswith("No package cache yet for these lock files") for n in notes), notes
    assert any(n.startswith("Package caches saved for the next run") for n in notes), notes
    assert restores("miss") == misses + 1
    # `verify:` found the agent's file; the review's test runs found setup's marker, not it.
    outcome = (await events_of(client, first, "outcome"))[-1]
    assert outcome["runs"] and outcome["error"] is None, outcome
    by_check = {run["check"]: run for run in outcome["runs"]}
    # pytest ran in each (`test -f` passed): the base fails as the bug does, the change passes.
    assert "1 failed" in by_check["base"]["output"], by_check
    assert by_check["pass-to-pass"]["exit_code"] == 0, by_check
    pr = fake_github.repo(REPO)["pulls"][first.pr_number]
    assert "passed" in pr["body"] and not pr["draft"]

    fake_anthropic.script(*agent_turns)
    second_issue = labeled()
    second_issue["issue"] = {**second_issue["issue"], "number": SECOND_ISSUE}
    await post_webhook(client, "issues", second_issue)
    second = await run_of(client, SECOND_ISSUE)
    assert second.state == RunState.SUCCEEDED, second.error
    output = await setup_output(client, second)
    assert "cache was there" in output
    assert "agent-was-here" not in output  # the agent's write was never saved
    assert restores("hit") == hits + 1
    notes = [e["text"] for e in await events_of(client, second, "note")]
    assert any(n.startswith("Package caches restored: key ") for n in notes), notes
    # An exact hit setup did not change is not saved again.
    assert not any(n.startswith("Package caches saved") for n in notes), notes
