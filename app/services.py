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
from app.fleet.conductor import FleetConductor
from app.github.auth import GitHubApp
from app.github.connections import GitHubConnections
from app.github.oauth import GitHubOAuth
from app.github.retrying import Sleep
from app.handlers.context import GitHubServices
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
    # Takes fleet changes to their repositories; its wake-up is what fleet requests call.
    conductor: FleetConductor


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
    """Open the store, HTTP session, GitHub App, Slack; start workers and the dispatcher.

    Each is closed by the exit stack it joins as soon as it is open, so whatever fails half-way
    (a bad key, a task that cannot start), what was opened before it is closed all the same,
    in the reverse order: the dispatcher and workers stop before what they use is closed.
    """
    github_time = github_time or GitHubTime()
    redact.add(*settings.secrets())
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        store = await Store.open(settings.store.database_url)
        stack.push_async_callback(store.close)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        stack.push_async_callback(session.close)
        # One Slack client for notifications and the front door, on the shared session.
        slack = SlackNotifier(settings.slack, session=session)
        stack.push_async_callback(slack.close)
        github = GitHubApp(
            settings.github, session, clock=github_time.clock, sleep=github_time.sleep
        )
        # People's own GitHub tokens (connected from Slack), encrypted in the store.
        connections = GitHubConnections(settings.web, store, GitHubOAuth(settings.github, session))
        config_cache = ConfigCache()
        ci = CiReporter(settings, store, slack, config_cache=config_cache)
        pipeline = Pipeline(settings, store, github, slack, ci=ci, config_cache=config_cache)
        stack.push_async_callback(pipeline.close)
        pool = WorkerPool(settings, store, pipeline)
        stack.push_async_callback(pool.stop)
        ci.wake_workers = pool.wake  # a repair queued from CI starts at once, not at the next poll
        worker_count = settings.store.workers if workers is None else workers
        conductor = FleetConductor(
            settings, store, github, slack, wake_workers=pool.wake, workers=worker_count
        )
        pool.on_fleet_run_ended = conductor.wake
        handlers = GitHubServices(
            settings=settings,
            store=store,
            github=github,
            slack=slack,
            ci=ci,
            wake_workers=pool.wake,
            wake_fleets=conductor.wake,
            config_cache=config_cache,
            connections=connections,
        )
        # A delivery's lease is a run's: a dead process's clicks and events are taken over as
        # soon.
        dispatcher = Dispatcher(handlers, lease_seconds=settings.store.lease_seconds)
        slack_front = SlackContext(
            settings=settings,
            store=store,
            github=github,
            slack=slack,
            session=session,
            identity=Identity(store, slack.client, connections),
            connections=connections,
            wake_workers=pool.wake,
            wake_fleets=conductor.wake,
            wake_dispatcher=dispatcher.wake,
            config_cache=config_cache,
        )
        # Its requests' work ends once the dispatcher (which starts it) has stopped.
        stack.push_async_callback(slack_front.close)
        stack.push_async_callback(dispatcher.stop)
        # Slack requests are stored like GitHub deliveries; any process's dispatcher does them.
        dispatcher.register(SLACK_EVENT, functools.partial(on_stored_request, slack_front))
        services = Services(
            settings,
            store,
            session,
            github,
            slack,
            pool,
            dispatcher,
            slack_front,
            connections,
            conductor,
        )
        if dispatch:
            dispatcher.start()
            retention = asyncio.create_task(keep_pruning(store, settings.store.retention_days))
            stack.push_async_callback(_cancelled, retention)
        pool.start(worker_count)
        if worker_count:
            # Fleets are conducted where their runs are worked: a process that only answers
            # webhooks queues none (its fleet requests wake no one here; a worker's poll
            # finds them).
            conductor.start()
            stack.push_async_callback(conductor.stop)
        yield services


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
