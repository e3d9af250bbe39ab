"""A real `honk worker` SIGKILLed mid-run: the run is claimed again after restart, ends once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import BUGGY, FIXED, ISSUE, REPO, labeled
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment a separately started `honk worker` reads its settings from."""
    assert (
        settings.github.private_key
        and settings.github.webhook_secret
        and settings.agent.anthropic_api_key
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "APP_ID": str(settings.github.app_id),
        "PRIVATE_KEY": settings.github.private_key,
        "WEBHOOK_SECRET": settings.github.webhook_secret,
        "GITHUB_API_URL": settings.github.api_url,
        "GITHUB_URL": settings.github.url,
        "ANTHROPIC_API_KEY": settings.agent.anthropic_api_key,
        "ANTHROPIC_BASE_URL": settings.agent.anthropic_base_url or "",
        "HONK_MODEL": settings.agent.model,
        "HONK_DATA_DIR": str(settings.store.data_dir),
        "HONK_CHECKOUT_DIR": str(settings.sandbox.checkout_dir),
        "HONK_SANDBOX_PYTHON": str(settings.sandbox.python or ""),
        "DATABASE_URL": settings.store.database_url,
        "HONK_WORKERS": "1",
        "HONK_LEASE_SECONDS": str(settings.store.lease_seconds),
        "HONK_POLL_INTERVAL": "0.05",
        "LOG_FORMAT": "json",
    } | slack_environment(settings)


def slack_environment(settings: Settings) -> dict[str, str]:
    """Slack's settings for a separately started process, when Slack is on."""
    if not settings.slack.bot_token:
        return {}
    return {
        "SLACK_BOT_TOKEN": settings.slack.bot_token,
        "SLACK_SIGNING_SECRET": settings.slack.signing_secret or "",
        "SLACK_CHANNEL": settings.slack.channel or "",
        "SLACK_API_URL": settings.slack.api_url,
    }


@contextlib.asynccontextmanager
async def honk_worker(settings: Settings, log_path: Path) -> AsyncIterator[Any]:
    """`python -m app worker` in its own process group; SIGKILLed and reaped on exit."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "--env-file",
            "",
            "worker",
            env=worker_environment(settings),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@pytest.fixture
def crash_settings(calc_world_settings: Settings) -> Settings:
    return calc_world_settings.with_overrides(lease_seconds=1.0, workers=0, slack_bot_token=None)


async def current_run(client: TestClient) -> Any:
    runs = await client.app[SERVICES].store.runs.find(repo=REPO, issue_number=ISSUE)
    return runs[0] if runs else None


async def test_worker_killed_mid_run_is_claimed_again_after_restart(
    aiohttp_client: ClientFactory,
    crash_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    fake_anthropic.script(
        tool_use_bash("sleep 30"),  # the first worker is killed while this runs
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("python -m pytest -q"),
        text("Fixed add()."),
    )
    # The web side only receives and queues; workers live in other processes.
    client = await aiohttp_client(create_app(crash_settings, workers=0))
    await post_webhook(client, "issues", labeled())
    await eventually(lambda: current_run(client))

    async with honk_worker(crash_settings, tmp_path / "worker-1.log") as first:
        await eventually(lambda: len(fake_anthropic.requests) >= 1, within=30)
        running = await current_run(client)
        assert running.state == RunState.RUNNING and running.attempts == 1
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    assert first.returncode == -signal.SIGKILL

    # A fresh process (the restart) claims the run once its lease has run out.
    async with honk_worker(crash_settings, tmp_path / "worker-2.log"):

        async def finished() -> Any:
            run = await current_run(client)
            return run if run and not run.state.active else None

        run = await eventually(finished, within=60)
    log = (tmp_path / "worker-2.log").read_text()
    assert run.state == RunState.SUCCEEDED, (run.error, log[-3000:])
    assert run.attempts == 2
    assert len(fake_github.repo(REPO)["pulls"]) == 1
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED
    assert fake_github.file_at(REPO, "main", "calc.py") == BUGGY
    # The token the workers used never reached their logs.
    logs = log + (tmp_path / "worker-1.log").read_text()
    assert all(token not in logs for token in fake_github.tokens)
    assert f'"run_id": {run.id}' in log


async def test_killed_after_push_before_the_pr_opens_exactly_one_pr(
    aiohttp_client: ClientFactory,
    crash_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        text("Fixed add()."),
        # The second attempt finds the fix already on the branch and changes nothing.
        text("The branch already has the fix."),
    )
    # GitHub keeps failing to open the PR, so the first worker is killed between push and PR.
    fake_github.fail_next("POST", rf"^/repos/{REPO}/pulls$", 502, times=1000)
    client = await aiohttp_client(create_app(crash_settings, workers=0))
    await post_webhook(client, "issues", labeled())
    await eventually(lambda: current_run(client))

    async with honk_worker(crash_settings, tmp_path / "worker-1.log") as first:
        await eventually(lambda: fake_github.calls_to("POST", rf"^/repos/{REPO}/pulls$"), within=30)
        run = await current_run(client)
        assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED  # pushed
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    assert fake_github.repo(REPO)["pulls"] == {}
    fake_github.clear_failures()

    async with honk_worker(crash_settings, tmp_path / "worker-2.log"):

        async def finished() -> Any:
            current = await current_run(client)
            return current if current and not current.state.active else None

        run = await eventually(finished, within=60)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.attempts == 2
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    assert pr["head"]["ref"] == run.branch and f"Fixes #{ISSUE}" in pr["body"]
    assert fake_github.git(REPO, "rev-list", "--count", f"main..{run.branch}").strip() == "1"


async def test_killed_after_its_pr_opened_it_ends_as_pr_opened_and_the_agent_runs_once(
    aiohttp_client: ClientFactory,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    tmp_path: Path,
) -> None:
    """SIGKILLed after the PR is opened and saved (at the `Honk` check run): claimed again,
    the run reports the PR it opened; it does not run the agent on its own pushed branch, find
    nothing to change and say "no change" while the PR stays open."""
    settings = calc_world_settings.with_overrides(lease_seconds=1.0, workers=0)
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("python -m pytest -q"),
        text("Fixed add()."),
        text("The branch already has the fix; nothing to change."),  # were it asked again
    )
    check_runs = rf"^/repos/{REPO}/check-runs$"
    held = fake_github.hold_next("POST", check_runs)
    client = await aiohttp_client(create_app(settings, workers=0))
    await post_webhook(client, "issues", labeled())
    await eventually(lambda: current_run(client))

    async with honk_worker(settings, tmp_path / "worker-1.log") as first:
        await eventually(lambda: fake_github.calls_to("POST", check_runs), within=60)
        opened = await current_run(client)
        assert opened.pr_number is not None and opened.head_sha  # saved before the check run
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    asked_the_model = len(fake_anthropic.requests)

    async with honk_worker(settings, tmp_path / "worker-2.log"):

        async def finished() -> Any:
            current = await current_run(client)
            return current if current and not current.state.active else None

        run = await eventually(finished, within=60)
    held.set()
    log = (tmp_path / "worker-2.log").read_text()
    assert run.state == RunState.SUCCEEDED, (run.error, log[-3000:])
    assert run.attempts == 2
    assert len(fake_anthropic.requests) == asked_the_model  # the agent did not run again
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    assert pr["state"] == "open" and (run.pr_number, run.head_sha) == (
        pr["number"],
        opened.head_sha,
    )
    comments = [c["body"] for c in fake_github.repo(REPO)["comments"].values()]
    assert not any("made no change" in body for body in comments), comments
    (tracking,) = [c for c in comments if f"/pull/{pr['number']}" in c]
    assert f"Opened {pr['html_url']}" in tracking and "~~" not in tracking
    said = json.dumps([(m.text, m.blocks) for m in fake_slack.posted])
    assert "No change needed" not in said and pr["html_url"] in said
    made = [
        c for c in fake_github.calls_to("POST", check_runs) if c.json["head_sha"] == run.head_sha
    ]
    assert made and made[-1].json["conclusion"] == "success"


def checkouts_in(directory: Path) -> list[Path]:
    """The runs' checkouts there (each in a directory of its own, beside its marker)."""
    if not directory.exists():
        return []
    return [entry for entry in directory.iterdir() if entry.is_dir()]


async def test_a_dead_processs_checkout_is_swept_by_the_process_that_takes_its_run_over(
    aiohttp_client: ClientFactory,
    crash_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
) -> None:
    """Two processes with data directories of their own share one store and one checkouts
    directory: the one that takes over a dead one's run leaves no checkout of it behind."""
    fake_anthropic.script(
        tool_use_bash("sleep 30"),  # the first process is killed while this runs
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("python -m pytest -q"),
        text("Fixed add()."),
    )
    checkouts = crash_settings.sandbox.checkout_dir
    machine_a = crash_settings.with_overrides(data_dir=tmp_path / "machine-a")
    machine_b = crash_settings.with_overrides(data_dir=tmp_path / "machine-b")
    client = await aiohttp_client(create_app(crash_settings, workers=0))
    await post_webhook(client, "issues", labeled())
    await eventually(lambda: current_run(client))

    async with honk_worker(machine_a, tmp_path / "worker-a.log") as first:
        await eventually(lambda: len(fake_anthropic.requests) >= 1, within=30)
        (left_behind,) = checkouts_in(checkouts)  # the first process's checkout, mid-run
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    assert left_behind.exists()

    async with honk_worker(machine_b, tmp_path / "worker-b.log"):

        async def finished() -> Any:
            run = await current_run(client)
            return run if run and not run.state.active else None

        run = await eventually(finished, within=60)
        log = (tmp_path / "worker-b.log").read_text()
        assert run.state == RunState.SUCCEEDED, (run.error, log[-3000:])
        assert run.attempts == 2
        # Swept when the second process claimed the run; its own went when the run ended.
        await eventually(lambda: not checkouts_in(checkouts), within=10)
    assert not left_behind.exists()
