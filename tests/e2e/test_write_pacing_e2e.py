"""Twenty issues labelled at once, end to end on the fake GitHub's clock: GitHub's limits
kept in every minute of the fake's log, and what one ordinary run writes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from app.config import Settings
from app.github.pacing import is_content_creating
from app.models import RunState
from app.services import GitHubTime
from app.web import SERVICES, create_app
from tests.calc_world import (
    FIXED,
    INSTALLATION,
    ISSUE,
    REPO,
    calc_settings,
    fixing_script,
    labeled,
    seed_calc,
)
from tests.fakes.anthropic import FakeAnthropic, Turn, tool_results, tool_use_edit
from tests.fakes.github import FakeGitHub, VirtualClock
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

ISSUES = range(101, 121)
# Quick to verify and no review's test runs (the operator allows that below), so the runs
# are about GitHub's limits, not the sandbox: twenty reviews would take minutes on 2 cores.
CONFIG = "verify: test -f calc.py\nreview: {outcome: off}\n"


def answer(request: dict[str, Any]) -> Turn | str:
    """Runs interleave on the fake model: answer each by the issue its prompt is about."""
    if tool_results(request):
        return "Recorded the change."
    number = re.search(r"Record change (\d+)", json.dumps(request["messages"][0]))
    assert number is not None
    n = number.group(1)
    return tool_use_edit(command="create", path=f"change-{n}.txt", file_text=f"change {n}\n")


def writes(fake: FakeGitHub) -> list[Any]:
    """The content-creating requests made with installation tokens, as the fake got them."""
    return [
        call
        for call in fake.calls
        if call.path.startswith("/repos/")
        and is_content_creating(call.method, call.path, json.dumps(call.json or {}).encode())
    ]


@pytest.mark.timeout(300)  # twenty real runs: git, the sandbox, on a busy machine
async def test_twenty_issues_labelled_at_once_stay_under_githubs_limits(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    clock = VirtualClock()
    fake_github.clock = clock
    seed_calc(fake_github, issue=False)
    fake_github.commit_files(REPO, {"calc.py": FIXED, ".github/honk.yml": CONFIG})
    for number in ISSUES:
        fake_github.add_issue(
            REPO, number, title=f"Record change {number}", body="", user="alice", labels=["honk"]
        )
    fake_anthropic.script(*[answer] * (2 * len(ISSUES)))
    # Leases long enough that a busy machine's late heartbeat never hands a run over.
    settings = calc_settings(
        base_settings,
        fake_github,
        fake_anthropic,
        fake_slack,
        workers=5,
        model_judge=False,
        review_outcome_optional=True,
        lease_seconds=60.0,
    )
    client = await aiohttp_client(
        create_app(settings, github_time=GitHubTime(clock=clock, sleep=clock.sleep))
    )
    started = clock()

    for number in ISSUES:
        payload = labeled()
        issue = fake_github.repo(REPO)["issues"][number]
        payload["issue"] = {**payload["issue"], **{k: issue[k] for k in ("number", "title")}}
        response = await post_webhook(client, "issues", payload)
        assert response.status == 202

    store = client.app[SERVICES].store

    async def all_finished() -> list[Any]:
        runs = await store.runs.find(repo=REPO)
        done = [run for run in runs if not run.state.active]
        return runs if len(done) == len(ISSUES) else []

    runs = await eventually(all_finished, within=300)
    assert {run.state for run in runs} == {RunState.SUCCEEDED}, [
        (run.issue_number, run.state, run.error) for run in runs
    ]
    assert len(fake_github.repo(REPO)["pulls"]) == len(ISSUES)

    sent = writes(fake_github)
    # Without pacing these would all land in the first minute (212 to 241 of them before
    # tracking-comment edits were coalesced): the pacer spread them out.
    assert len(sent) > 60 and clock() - started >= 60
    print(f"twenty runs: {len(sent)} content-creating requests over {clock() - started:.0f} s")
    assert fake_github.busiest_window(INSTALLATION, 60) <= settings.github.writes_per_minute
    assert fake_github.busiest_window(INSTALLATION, 3600) <= settings.github.writes_per_hour
    assert fake_github.rate_limited == []  # GitHub never had to say no


async def test_one_ordinary_run_writes_little(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    seed_calc(fake_github)
    fake_anthropic.script(*fixing_script(look_first=True))
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store

    async def finished() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(finished, within=120)
    assert run.state == RunState.SUCCEEDED, run.error
    kinds = [f"{call.method} {call.path.rsplit('/', 1)[-1]}" for call in writes(fake_github)]
    # The reaction, the tracking comment, the PR and the `Honk` check, once each.
    assert kinds.count("POST reactions") == 1 and kinds.count("POST comments") == 1
    assert kinds.count("POST pulls") == 1 and kinds.count("POST check-runs") == 1
    # Uncoalesced, this run edited the tracking comment 8 times (12 writes in all). Edits
    # within a second of each other are one: at least the run's start and its checkout,
    # which follow each other at once, however slow this machine is.
    edits = [kind for kind in kinds if kind.startswith("PATCH")]
    assert 1 <= len(edits) <= 7, kinds
    print(f"one ordinary run: {len(kinds)} content-creating requests: {kinds}")
