"""A Slack click is a delivery: `honk serve` SIGKILLed between Slack's answer and the merge,
restarted, merges once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.config import Settings
from app.slack import card
from app.web import create_app
from tests.calc_world import REPO, fixing_script
from tests.e2e.test_crash_recovery import worker_environment
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.golive_world import PR, connect_user, golive_settings, green_pr
from tests.helpers import ClientFactory, eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_environment(settings: Settings, port: int) -> dict[str, str]:
    """What a separately started `honk serve` reads: the worker's settings, sign-in (whose key
    also encrypts the connected GitHub tokens), its port; no workers (no runs are needed)."""
    assert settings.web.session_key and settings.github.client_id and settings.github.client_secret
    return worker_environment(settings) | {
        "HONK_WORKERS": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "HONK_URL": settings.web.url or "",
        "HONK_SESSION_KEY": settings.web.session_key,
        "GITHUB_CLIENT_ID": settings.github.client_id,
        "GITHUB_CLIENT_SECRET": settings.github.client_secret,
    }


@contextlib.asynccontextmanager
async def honk_serve(
    settings: Settings, log_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, aiohttp.ClientSession]]:
    """`python -m app serve` in its own process group, once it answers /healthz: the process
    and a session to it (Slack posts there); SIGKILLed and reaped on exit."""
    port = free_port()
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "--env-file", "", "serve",
            env=serve_environment(settings, port), stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        session = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get("/healthz") as health:
                        if health.status == 200:
                            break
                assert process.returncode is None, "honk serve exited; see its log"
                assert time.monotonic() < deadline, "honk serve did not start"
                await asyncio.sleep(0.1)
            yield process, session
        finally:
            await session.close()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@pytest.fixture
def world(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    fake_anthropic.script(*fixing_script())
    return golive_settings(
        base_settings, fake_github, fake_anthropic, fake_slack, lease_seconds=1.0
    )


def merges(fake_github: FakeGitHub) -> list[Any]:
    return fake_github.calls_to("PUT", rf"^/repos/{REPO}/pulls/{PR}/merge$")


async def test_a_merge_clicked_just_before_a_crash_happens_once_after_the_restart(
    aiohttp_client: ClientFactory,
    world: Settings,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
    tmp_path: Path,
) -> None:
    # A green Honk PR with its card, and alice connected, made by an in-process Honk.
    client = await aiohttp_client(create_app(world))
    _run, ready = await green_pr(client, fake_github, fake_slack)
    await connect_user(client, fake_slack, fake_github, "U0ALICE")
    await client.close()  # from here on only `honk serve` processes share the store

    # The merge stops at GitHub (the repository's settings, just before PUT .../merge): the
    # click was answered, the action has begun, and then the process is killed.
    at_github = rf"^/repos/{REPO}$"
    asked_before = len(fake_github.calls_to("GET", at_github))  # the run asked too

    def at_the_merge() -> bool:
        return len(fake_github.calls_to("GET", at_github)) > asked_before

    held = fake_github.hold_next("GET", at_github)
    async with honk_serve(world, tmp_path / "serve-1.log") as (first, slack_side):
        started = time.monotonic()
        answer = await fake_slack.click(slack_side, ready, card.MERGE_ACTION)  # type: ignore[arg-type]
        assert answer.status == 200 and time.monotonic() - started < 3  # Slack's 3 seconds
        await eventually(at_the_merge, within=30)
        os.killpg(first.pid, signal.SIGKILL)
        await first.wait()
    assert merges(fake_github) == []

    async with honk_serve(world, tmp_path / "serve-2.log"):
        log = tmp_path / "serve-2.log"
        await eventually(lambda: merges(fake_github), within=30)
        await asyncio.sleep(world.store.lease_seconds * 3)  # nothing else takes it up again
        merged = fake_github.repo(REPO)["pulls"][PR]
        assert merged["merged"] is True, log
        assert len(merges(fake_github)) == 1
        marked = [m for m in fake_slack.posted if m.ts == ready.ts]
        assert marked and "Merged by <@U0ALICE>" in str(marked[-1].blocks)
    held.set()
