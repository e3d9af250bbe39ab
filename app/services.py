"""The long-lived collaborators one process owns, opened and closed together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from app.config import Settings
from app.dispatch import Dispatcher
from app.github.auth import GitHubApp
from app.handlers.context import HandlerContext
from app.log import redact
from app.slack.commands import SLACK_EVENT, FrontDoor
from app.slack.notify import TIMEOUT_SECONDS, SlackNotifier, retry_handlers
from app.store import Store
from app.worker import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    github: GitHubApp
    slack: SlackNotifier
    workers: WorkerPool
    dispatcher: Dispatcher
    front_door: FrontDoor


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, *, workers: int | None = None, dispatch: bool = True
) -> AsyncIterator[Services]:
    """Open the store, HTTP session, GitHub App, Slack; start workers and the dispatcher."""
    redact.add(*settings.secrets())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.database_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    slack = SlackNotifier(settings)
    github = GitHubApp(settings, session)
    pool = WorkerPool(settings, store, github, slack)
    ctx = HandlerContext(settings, store, github, slack, wake_workers=pool.wake)
    dispatcher = Dispatcher(ctx)
    front_door = FrontDoor(
        settings,
        store,
        github,
        AsyncWebClient(
            token=settings.slack_bot_token,
            base_url=settings.slack_api_url,
            timeout=TIMEOUT_SECONDS,
            session=session,
            retry_handlers=retry_handlers(),
        ),
        session,
        wake_workers=pool.wake,
        wake_dispatcher=dispatcher.wake,
    )
    # Slack requests are stored like GitHub deliveries; any process's dispatcher does them.
    dispatcher.register(SLACK_EVENT, front_door.process_stored)
    services = Services(settings, store, session, github, slack, pool, dispatcher, front_door)
    try:
        if dispatch:
            dispatcher.start()
        pool.start(settings.workers if workers is None else workers)
        yield services
    finally:
        await pool.stop()
        await pool.pipeline.close()
        await dispatcher.stop()
        await front_door.close()
        await slack.close()
        await session.close()
        await store.close()
