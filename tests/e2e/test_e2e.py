"""End to end through the real HTTP entry: a signed `issues.labeled` -> a tested PR, Slack told."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import (
    BUGGY,
    FIXED,
    INSTALLATION,
    ISSUE,
    REPO,
    fixing_script,
    labeled,
    without_outcome_checks,
)
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook


def inspect_branch(
    bare: Path, branch: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str, list[str]]:
    """Clone the pushed branch; run its tests; its last commit's author/message and files."""
    clone = tmp_path / "verify-clone"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(bare), str(clone)], check=True)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=clone, capture_output=True, text=True)

    tests = run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    log = run("git", "log", "-1", "--format=%an <%ae>%n%B").stdout
    changed = run("git", "show", "--name-only", "--format=", "HEAD").stdout.split()
    return tests, log, changed


async def finished_run(client: TestClient) -> Any:
    store = client.app[SERVICES].store

    async def probe() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    return await eventually(probe, within=60)


def everything_sent(
    fake_github: FakeGitHub, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> str:
    sent = [json.dumps(c.json) for c in fake_github.calls if c.json is not None]
    sent += [f"{m.text} {json.dumps(m.blocks)}" for m in fake_slack.messages()]
    sent += [json.dumps(r) for r in fake_anthropic.requests + fake_anthropic.review_requests]
    return "\n".join(sent)


async def test_labelled_issue_becomes_a_tested_pull_request(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_anthropic.script(*fixing_script(look_first=True))
    client = await aiohttp_client(create_app(calc_world_settings))
    response = await post_webhook(client, "issues", labeled(), delivery_id="e2e-1")
    assert response.status == 202

    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.branch and run.branch.startswith(f"honk/{ISSUE}-add-returns-the-wrong-sum")

    # The bare repository has the branch with the fix, and its own test passes on it.
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED
    assert fake_github.file_at(REPO, "main", "calc.py") == BUGGY
    # git and a child pytest take seconds: in a thread, so the event loop stays free.
    tests, log, changed = await asyncio.to_thread(
        inspect_branch, fake_github.bare_path(REPO), run.branch, tmp_path
    )
    assert tests.returncode == 0, tests.stdout
    assert log.startswith("honk-test[bot] <")
    assert "Co-authored-by: Alice Example <" in log and f"Fixes #{ISSUE}" in log
    assert changed == ["calc.py"]  # test caches never become part of the change

    # One ready PR with the agent's summary, Fixes #N, verification and cost.
    pulls = list(fake_github.repo(REPO)["pulls"].values())
    assert len(pulls) == 1
    pr = pulls[0]
    assert pr["head"]["ref"] == run.branch and pr["base"]["ref"] == "main"
    assert not pr["draft"]
    assert f"Fixes #{ISSUE}" in pr["body"]
    assert "subtracted instead of adding" in pr["body"]
    assert "`python -m pytest -q`: **passed**" in pr["body"]
    assert "$" in pr["body"] and "tokens" in pr["body"]
    # The run's usage counts the agent's four requests and the review's one.
    assert run.pr_number == pr["number"] and run.usage.requests == 4 + 1
    assert len(fake_anthropic.review_requests) == 1 and run.review == "approved"

    # The tracking comment ends with the PR link; Slack's thread has it too.
    tracking = fake_github.repo(REPO)["comments"][run.tracking_comment_id]
    assert pr["html_url"] in tracking["body"]
    assert "- [x] Verifying" in tracking["body"]
    root = fake_slack.messages()[0]
    assert REPO in root.text or REPO in json.dumps(root.blocks)
    replies = fake_slack.messages(thread_ts=root.ts)
    assert any(pr["html_url"] in json.dumps(m.blocks) for m in replies)

    # The agent saw the issue and the repository's own instructions.
    first_request = json.dumps(fake_anthropic.requests[0])
    assert "add(2, 3)" in first_request and "Run `python -m pytest -q`" in first_request

    # No installation token anywhere: logs, PR, comments, Slack, the model.
    tokens = list(fake_github.tokens)
    assert tokens
    haystack = everything_sent(fake_github, fake_slack, fake_anthropic) + caplog.text
    for token in tokens:
        assert token not in haystack
    # The checkout is gone once the run is over.
    assert calc_world_settings.sandbox.checkout_dir.is_dir()
    assert not any(calc_world_settings.sandbox.checkout_dir.iterdir())


async def test_no_change_needed_comments_and_opens_no_pr(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(
        tool_use_bash("python -m pytest -q"),
        text("NO_CHANGE: the tests pass and add() is already correct for these inputs."),
    )
    fake_github.commit_files(REPO, {"calc.py": FIXED})
    client = await aiohttp_client(create_app(calc_world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.NO_CHANGE
    assert fake_github.repo(REPO)["pulls"] == {}
    bodies = [c["body"] for c in fake_github.repo(REPO)["comments"].values()]
    assert any("already correct" in b and "made no change" in b for b in bodies)


async def test_turn_limit_pushes_a_draft_marked_unfinished(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("echo still working"),
        tool_use_bash("echo still working"),
    )
    client = await aiohttp_client(create_app(calc_world_settings.with_overrides(max_turns=2)))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    assert pr["draft"] is True
    assert pr["title"].startswith("[unfinished]")
    assert "Unfinished" in pr["body"] and "turn limit" in pr["body"]
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED


async def test_failed_verification_gets_one_more_attempt(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a * b"),
        text("Changed the operator."),
        # Second attempt, with the failure output in front of the agent.
        tool_use_edit(command="str_replace", path="calc.py", old_str="a * b", new_str="a + b"),
        text("Now it adds; the test passes."),
    )
    client = await aiohttp_client(create_app(calc_world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    retry_prompt = json.dumps(fake_anthropic.requests[2])
    assert "failed verification" in retry_prompt and "assert 6 == 5" in retry_prompt
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    assert not pr["draft"] and "**passed**" in pr["body"]


async def test_model_overloaded_twice_then_succeeds(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    from tests.fakes.anthropic import overloaded

    fake_anthropic.script(overloaded(), overloaded(), *fixing_script(look_first=True))
    settings = without_outcome_checks(fake_github, calc_world_settings)
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert len(fake_anthropic.requests) == 6


async def test_model_down_fails_the_run_and_says_why(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    from tests.fakes.anthropic import server_error

    fake_anthropic.script(*[server_error() for _ in range(6)])
    client = await aiohttp_client(create_app(calc_world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert "500" in (run.error or "") or "Anthropic" in (run.error or "")
    tracking = fake_github.repo(REPO)["comments"][run.tracking_comment_id]
    assert "Failed" in tracking["body"]
    assert fake_github.repo(REPO)["pulls"] == {}
    thread = fake_slack.messages(thread_ts=fake_slack.messages()[0].ts)
    assert any("Anthropic" in m.text or "500" in m.text for m in thread)


async def test_slack_down_never_fails_a_run(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_slack.down = True
    fake_anthropic.script(*fixing_script(look_first=True))
    settings = without_outcome_checks(fake_github, calc_world_settings)
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert len(fake_github.repo(REPO)["pulls"]) == 1
    assert run.slack_ts is None


async def test_github_hiccups_while_publishing_are_retried(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.script(*fixing_script(look_first=True))
    fake_github.fail_next("POST", rf"^/repos/{REPO}/pulls$", 502)
    fake_github.fail_next(
        "GET",
        rf"^/repos/{REPO}$",
        403,
        headers={"Retry-After": "0"},
        body={"message": "You have exceeded a secondary rate limit."},
    )
    settings = without_outcome_checks(fake_github, calc_world_settings)
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert len(fake_github.repo(REPO)["pulls"]) == 1
    assert len(fake_github.calls_to("POST", rf"^/repos/{REPO}/pulls$")) == 2


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("verify: [unclosed\n", "not valid YAML"),
        # A host the operator's HONK_NETWORK_ALLOW (by default: presets only) does not allow.
        ("network: [pypi, evil.example]\n", "network: evil.example is not allowed by this"),
    ],
)
async def test_malformed_config_stops_the_run_and_names_the_error(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    config: str,
    named: str,
) -> None:
    fake_github.commit_files(REPO, {".github/honk.yml": config})
    client = await aiohttp_client(create_app(calc_world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert "honk.yml" in (run.error or "") and named in (run.error or "")
    tracking = fake_github.repo(REPO)["comments"][run.tracking_comment_id]
    assert "honk.yml" in tracking["body"] and "not valid" in tracking["body"]
    assert named in tracking["body"]
    assert fake_anthropic.requests == []  # the agent never ran with the wrong settings


async def test_repository_settings_channel_and_limits_are_applied(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    config = "verify: python -m pytest -q\nslack_channel: '#calc'\nlimits:\n  turns: 500\n"
    fake_github.commit_files(REPO, {".github/honk.yml": config})
    fake_anthropic.script(*[tool_use_bash("echo thinking") for _ in range(5)])
    # The operator allows 3 turns; the repository asking for 500 cannot raise that.
    client = await aiohttp_client(create_app(calc_world_settings.with_overrides(max_turns=3)))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert len(fake_anthropic.requests) == 3
    assert run.state == RunState.FAILED and "turn limit" in (run.error or "")
    root = fake_slack.messages()[0]
    assert root.channel == run.slack_channel
    assert root.channel != "C0HONK0001"  # the repository's #calc, not the default #honk


async def test_a_run_for_an_uninstalled_repository_sends_nothing(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    from app.installations import RepositoryState, record_repository

    client = await aiohttp_client(create_app(calc_world_settings.with_overrides(workers=0)))
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store
    (queued,) = await eventually(lambda: store.runs.find(repo=REPO, issue_number=ISSUE))
    await record_repository(store, INSTALLATION, REPO, state=RepositoryState.REMOVED, label=None)
    calls_before = len(fake_github.calls)
    outcome = await client.app[SERVICES].workers.pipeline.execute(queued)
    assert outcome.state == RunState.CANCELLED
    assert len(fake_github.calls) == calls_before
    assert fake_slack.messages() == [] and fake_anthropic.requests == []


async def test_no_agent_runs_without_a_working_sandbox(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A machine whose bwrap cannot create namespaces (as in many containers).
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    fake_bwrap = broken / "bwrap"
    fake_bwrap.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    fake_bwrap.chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    fake_anthropic.script(*fixing_script(look_first=True))
    client = await aiohttp_client(create_app(calc_world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert "sandbox" in (run.error or "") and "HONK_SANDBOX=off" in (run.error or "")
    assert fake_anthropic.requests == []  # not one token spent without a sandbox
    assert fake_github.repo(REPO)["pulls"] == {}
