"""The composition root: every long-lived collaborator of a process, built once, closed together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp

from app.ci.reporter import CiReporter
from app.config import Settings
from app.dispatch import Dispatcher
from app.github.auth import GitHubApp
from app.github.client import Sleep
from app.github.connections import GitHubConnections
from app.github.oauth import GitHubOAuth
from app.handlers.context import HandlerContext
from app.handlers.slack import on_stored_request
from app.handlers.slack.commands import SLACK_EVENT
from app.handlers.slack.conversation import SlackContext
from app.handlers.slack.identity import Identity
from app.log import redact
from app.repo_config import ConfigCache
from app.runs.pipeline import Pipeline
from app.runs.worker import WorkerPool
from app.slack.notify import SlackNotifier
from app.store import Store
from app.store.retention import keep_pruning

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
    slack_front: SlackContext
    connections: GitHubConnections


@dataclass(frozen=True)
class GitHubTime:
    """The clock and sleep GitHub's side keeps time with (tokens, retries, pacing): real
    time, unless a test runs GitHub on a fake clock."""

    clock: Callable[[], float] = field(default=time.time)
    sleep: Sleep = field(default=asyncio.sleep)


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    workers: int | None = None,
    dispatch: bool = True,
    github_time: GitHubTime | None = None,
) -> AsyncIterator[Services]:
    """Open the store, HTTP session, GitHub App, Slack; start workers and the dispatcher."""
    github_time = github_time or GitHubTime()
    redact.add(*settings.secrets())
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.store.database_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    # One Slack client for notifications and the front door, on the shared session.
    slack = SlackNotifier(settings.slack, session=session)
    github = GitHubApp(settings.github, session, clock=github_time.clock, sleep=github_time.sleep)
    # People's own GitHub tokens (connected from Slack), encrypted in the store.
    connections = GitHubConnections(settings.web, store, GitHubOAuth(settings.github, session))
    config_cache = ConfigCache()
    ci = CiReporter(settings, store, slack, config_cache=config_cache)
    pipeline = Pipeline(settings, store, github, slack, ci=ci, config_cache=config_cache)
    pool = WorkerPool(settings, store, pipeline)
    ci.wake_workers = pool.wake  # a repair queued from CI starts at once, not at the next poll
    handlers = HandlerContext(
        settings,
        store,
        github,
        slack,
        ci,
        wake_workers=pool.wake,
        config_cache=config_cache,
        connections=connections,
    )
    # A delivery's lease is a run's: a dead process's clicks and events are taken over as soon.
    dispatcher = Dispatcher(handlers, lease_seconds=settings.store.lease_seconds)
    slack_front = SlackContext(
        settings,
        store,
        github,
        slack,
        session,
        Identity(store, slack.client, connections),
        connections=connections,
        wake_workers=pool.wake,
        wake_dispatcher=dispatcher.wake,
        config_cache=config_cache,
    )
    # Slack requests are stored like GitHub deliveries; any process's dispatcher does them.
    dispatcher.register(SLACK_EVENT, functools.partial(on_stored_request, slack_front))
    services = Services(
        settings, store, session, github, slack, pool, dispatcher, slack_front, connections
    )
    retention: asyncio.Task[None] | None = None
    try:
        if dispatch:
            dispatcher.start()
            retention = asyncio.create_task(keep_pruning(store, settings.store.retention_days))
        pool.start(settings.store.workers if workers is None else workers)
        yield services
    finally:
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        await pool.stop()
        await pipeline.close()
        await dispatcher.stop()
        await slack_front.close()
        await slack.close()
        await session.close()
        await store.close()
