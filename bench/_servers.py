"""Start the test fakes as real loopback servers outside pytest, for the benchmarks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from app.config import Settings
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.slack import FakeSlack


@contextlib.asynccontextmanager
async def serve(app: web.Application, path: str = "") -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (a free port); yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


def tmp_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def world_settings(
    root: Path,
    key: str,
    github_url: str,
    slack: FakeSlack,
    slack_url: str,
    model: FakeAnthropic,
    model_url: str,
    **more: Any,
) -> Settings:
    """Honk's settings for a benchmark's world of fakes: one worker, a fast poll, its data
    under `root`; `more` (overriding those) as Settings.with_overrides takes them."""
    values: dict[str, Any] = dict(
        app_id=1,
        private_key=key,
        webhook_secret=WEBHOOK_SECRET,
        github_api_url=github_url,
        github_url=github_url,
        anthropic_api_key=model.api_key,
        anthropic_base_url=model_url,
        model="claude-sonnet-4-6",
        slack_bot_token=slack.token,
        slack_channel="#honk",
        slack_api_url=slack_url,
        data_dir=root / "honk",
        checkout_dir=root / "checkouts",
        database_url=f"sqlite+aiosqlite:///{root / 'honk' / 'honk.db'}",
        workers=1,
        poll_interval=0.02,
        log_level="WARNING",
    )
    return Settings().with_overrides(**(values | more))
