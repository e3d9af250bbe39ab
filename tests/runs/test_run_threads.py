"""One thread per run, and a limit that asks: Continue after a turn limit, a verdict that
changes on one commit told twice (its repair stopped), a repair's no-change kept in the thread."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunKind, RunState
from app.slack import card
from app.web import SERVICES, create_app
from tests.calc_world import FIXED, ISSUE, REPO, fixing_script, labeled
from tests.fakes.anthropic import FakeAnthropic, Hold, text, tool_use_bash, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.golive_world import (
    PR,
    buttons,
    ci_finishes,
    dispatched,
    finished,
    golive_settings,
    in_thread,
    thread,
    workflow_event,
)
from tests.helpers import ClientFactory, eventually, post_webhook

WIP = "a + b  # wip"
FAILING_LOG = (
    "E       AssertionError: add(-1, 1) returned 7\n##[error]Process completed with exit code 1."
)


@pytest.fixture
def world(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    return golive_settings(base_settings, fake_github, fake_anthropic, fake_slack)


def ci_said(fake_slack: FakeSlack) -> list[str]:
    return [
        m.text for m in thread(fake_slack) if m.text.startswith((":x: CI", ":white_check_mark: CI"))
    ]


async def first_pr(client: TestClient) -> Any:
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store
    runs = await eventually(lambda: store.runs.find(repo=REPO, issue_number=ISSUE))
    run = await finished(client, runs[-1].id)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.pr_number == PR and run.head_sha and run.branch
    return run


async def test_a_run_stopped_at_its_turn_limit_continues_from_the_button_and_finishes(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_anthropic.script(
        tool_use_edit(
            command="str_replace", path="calc.py", old_str="a - b", new_str="a + b  # wip"
        ),
        tool_use_bash("echo still working"),
        # The continuation: it finishes what the first run left.
        tool_use_edit(
            command="str_replace", path="calc.py", old_str="a + b  # wip", new_str="a + b"
        ),
        text("Finished: took out the work-in-progress marker."),
    )
    client = await aiohttp_client(create_app(world.with_overrides(max_turns=2)))
    first = await first_pr(client)
    pr = fake_github.repo(REPO)["pulls"][PR]
    assert pr["draft"] and pr["title"].startswith("[unfinished]")

    (stopped,) = await eventually(lambda: in_thread(fake_slack, "Stopped at its limit"))
    assert "the turn limit was reached" in stopped.text and "cost so far: $0." in stopped.text
    button = buttons(stopped)[card.CONTINUE_ACTION]
    assert button["text"]["text"] == "Continue with +2 turns"

    asked = len(fake_anthropic.requests)
    await fake_slack.click(client, stopped, card.CONTINUE_ACTION)
    store = client.app[SERVICES].store

    async def continued() -> Any:
        newest = (await store.runs.find(repo=REPO, pr_number=PR, limit=1))[0]
        return newest if newest.id != first.id else None

    follow = await finished(client, (await eventually(continued)).id)
    assert follow.kind == RunKind.CONTINUE and follow.state == RunState.SUCCEEDED, follow.error
    assert follow.branch == first.branch and follow.requested_by == "alice"
    assert "stopped at its limit" in json.dumps(fake_anthropic.requests[asked])
    assert fake_github.file_at(REPO, first.branch, "calc.py") == FIXED
    pr = fake_github.repo(REPO)["pulls"][PR]
    assert not pr["draft"] and not pr["title"].startswith("[unfinished]")  # ready for review
    assert "asked Honk to continue" in json.dumps(stopped.blocks)
    assert card.CONTINUE_ACTION not in buttons(stopped)
    assert len(fake_github.repo(REPO)["pulls"]) == 1


async def test_a_verdict_that_changes_on_one_commit_is_told_twice_and_stops_its_repair(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    hold = Hold(text("Looking into it."))
    fake_anthropic.script(*fixing_script(), hold)
    client = await aiohttp_client(create_app(world))
    run = await first_pr(client)
    workflow = await ci_finishes(
        client, fake_github, run.head_sha, branch=run.branch, conclusion="failure", log=FAILING_LOG
    )
    store = client.app[SERVICES].store
    repairs = await eventually(lambda: store.runs.find(repo=REPO, pr_number=PR, limit=1))
    repair = repairs[0]
    assert repair.kind == RunKind.CI_FIX
    await eventually(lambda: fake_anthropic._holds)  # the repair is working on that commit

    # The failed jobs are re-run on the same commit, and pass.
    fake_github.rerun_failed_jobs(REPO, workflow)
    await post_webhook(client, "workflow_run", workflow_event(fake_github, workflow))
    await eventually(lambda: dispatched(client))
    stopped = await finished(client, repair.id, within=30)
    assert stopped.state == RunState.CANCELLED
    said = ci_said(fake_slack)
    assert len(said) == 2 and said[0].startswith(":x: CI failed")
    assert said[1].startswith(":white_check_mark: CI passed")
    (green,) = in_thread(fake_slack, "ready to merge")
    assert f"Honk stopped its repair (run {repair.id})" in json.dumps(green.blocks)
    # And the same events again say nothing more.
    await post_webhook(client, "workflow_run", workflow_event(fake_github, workflow))
    await eventually(lambda: dispatched(client))
    assert len(ci_said(fake_slack)) == 2
    assert fake_github.branch_sha(REPO, run.branch) == run.head_sha  # the repair pushed nothing


async def test_a_repairs_no_change_stays_in_the_runs_thread(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_anthropic.script(
        *fixing_script(), text("NO_CHANGE: the failure is the CI runner's, not the code's.")
    )
    client = await aiohttp_client(create_app(world))
    run = await first_pr(client)
    root = fake_slack.messages()[0]
    before = (root.text, json.dumps(root.blocks))
    await ci_finishes(
        client, fake_github, run.head_sha, branch=run.branch, conclusion="failure", log=FAILING_LOG
    )
    store = client.app[SERVICES].store
    repair = (await eventually(lambda: store.runs.find(repo=REPO, pr_number=PR, limit=1)))[0]
    repair = await finished(client, repair.id)
    assert repair.kind == RunKind.CI_FIX and repair.state == RunState.NO_CHANGE
    assert in_thread(fake_slack, "No change needed")
    top_level = [m for m in fake_slack.posted if m.thread_ts is None and m.author == "U0HONKBOT"]
    assert top_level == [root]  # nothing of the repair at the channel's top level
    assert (root.text, json.dumps(root.blocks)) == before  # the root still shows the PR
    assert "No change" not in root.text
