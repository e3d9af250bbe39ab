"""Dispatch stored deliveries through the handlers' router, off the request path, in batches.

Deliveries are claimed several at a time and handled concurrently (bounded), except that
deliveries about the same subject (an issue or PR, a commit, an installation) are handled one
after another in the order they arrived; how each ended is written back in batches too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import gidgethub
from gidgethub import sansio

from app import metrics
from app.github.client import GitHubClient
from app.handlers import router
from app.handlers.context import Context, GitHubServices
from app.log import describe_error, log_context
from app.models import delivery_subject
from app.store import Delivery
from app.store.inbox import Finished

log = logging.getLogger(__name__)

# Failures worth another attempt later: GitHub or the network having a bad moment.
TRANSIENT = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    gidgethub.GitHubBroken,
    gidgethub.RateLimitExceeded,
)
CONCURRENCY = 16  # handlers running at once in this process
CLAIM_BATCH = 64  # deliveries claimed in one transaction at most
MAX_CLAIMED = 4 * CONCURRENCY  # claimed and not yet finished, so other processes get some

# Events about the installation itself are handled with the App's own JWT: the
# installation may already be gone (deleted) or unable to mint tokens (suspended).
_APP_LEVEL_EVENTS = {"installation", "ping", "github_app_authorization"}


def subject_of(delivery: Delivery) -> str:
    """What a delivery is about (see models.delivery_subject); unrelated ones: themselves."""
    return delivery_subject(delivery.event, delivery.payload) or delivery.id


def _event(delivery: Delivery) -> sansio.Event:
    return sansio.Event(delivery.payload, event=delivery.event, delivery_id=delivery.id)


class Dispatcher:
    """Claims undispatched deliveries from the store (none is lost on a crash), routes them."""

    def __init__(
        self,
        services: GitHubServices,
        *,
        lease_seconds: float = 120.0,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.services = services
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}:dispatch"
        self.lease_seconds = lease_seconds
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Stored requests that are not GitHub events (Slack's), by event name.
        self._others: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._running = asyncio.Semaphore(concurrency)
        self._claimed: dict[str, asyncio.Task[None]] = {}  # delivery id -> its handling
        self._last_of: dict[str, asyncio.Task[None]] = {}  # subject -> its newest handling
        self._room = asyncio.Event()  # set when a claimed delivery finishes
        self._finished: list[Finished] = []
        self._finish_wake = asyncio.Event()
        # Deliveries may wait in the store behind ones finishing here (same subject): after
        # the next finish is written, claim again rather than at the next poll.
        self._claim_after_flush = False

    def register(self, event: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Dispatch stored deliveries named `event` to `handler(payload)` instead of GitHub's."""
        self._others[event] = handler

    def wake(self) -> None:
        """A delivery was stored unclaimed: claim it (now, and again after the next finish)."""
        self._claim_after_flush = True
        self._wake.set()

    @property
    def has_room(self) -> bool:
        """Whether this dispatcher takes a new delivery at once (see `take`)."""
        return bool(self._tasks) and not self._stopping and len(self._claimed) < MAX_CLAIMED

    def starts_something(self, event: str, payload: dict[str, Any], delivery_id: str) -> bool:
        """Whether a handler listens to this delivery; most of GitHub's events start nothing,
        and are stored as handled already (never claimed, never finished)."""
        if event in self._others:
            return True
        return bool(router.fetch(sansio.Event(payload, event=event, delivery_id=delivery_id)))

    def handled_already(self, event: str) -> None:
        """Count a delivery stored as handled at once (see starts_something)."""
        metrics.labelled(metrics.dispatched, event, "done").inc()

    def take(self, delivery: Delivery) -> None:
        """Handle a delivery this process stored already claimed for it (no claim needed);
        the caller has asked starts_something already."""
        self._start(delivery, starts_something=True)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="honk-dispatcher"),
            asyncio.create_task(self._finish_loop(), name="honk-dispatcher-finish"),
            asyncio.create_task(self._renew_loop(), name="honk-dispatcher-leases"),
        ]

    async def stop(self) -> None:
        """Stop claiming; cancel what is still handled (its lease lapses, it is taken again)."""
        self._stopping = True
        claim, finish, renew = self._tasks or (None, None, None)
        for task in (claim, renew, *self._claimed.values()):
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._claimed.values(), return_exceptions=True)
        if finish is not None:
            self._finish_wake.set()
            finish.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finish
        for task in (claim, renew):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._flush()  # what did finish is recorded

    # -- claiming ----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            room = MAX_CLAIMED - len(self._claimed)
            claimed: list[Delivery] = []
            if room > 0:
                try:
                    claimed = await self.services.store.inbox.claim(
                        self.owner, self.lease_seconds, limit=min(room, CLAIM_BATCH)
                    )
                except Exception:
                    log.exception("dispatcher: store unavailable")
            for delivery in claimed:
                self._start(delivery)
            if claimed:
                self._claim_after_flush = True  # what they held back is claimable once done
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
            # cancellation that stops this loop when the event fires at that moment.
            waiting_for = self._room if room <= 0 else self._wake
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.services.settings.store.poll_interval):
                    await waiting_for.wait()
            waiting_for.clear()

    def _start(self, delivery: Delivery, *, starts_something: bool = False) -> None:
        if not starts_something and not self.starts_something(
            delivery.event, delivery.payload, delivery.id
        ):
            # Claimed, yet starts nothing (stored without asking, as before 0008): finished at once,
            # without a task of its own.
            self.handled_already(delivery.event)
            self._finished.append(Finished(delivery.id))
            self._finish_wake.set()
            return
        subject = subject_of(delivery)
        before = self._last_of.get(subject)
        task = asyncio.create_task(self._handle(delivery, before), name=f"delivery-{delivery.id}")
        self._claimed[delivery.id] = task
        self._last_of[subject] = task

        def forget(_: asyncio.Task[None]) -> None:
            self._claimed.pop(delivery.id, None)
            if self._last_of.get(subject) is task:
                del self._last_of[subject]
            self._room.set()

        task.add_done_callback(forget)

    async def _handle(self, delivery: Delivery, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait([before])  # the same subject's earlier delivery first
        async with self._running:
            finished = await self.dispatch(delivery)
        self._finished.append(finished)
        self._finish_wake.set()

    async def dispatch(self, delivery: Delivery) -> Finished:
        """Route one delivery; how it ended (never raises but for cancellation)."""
        started = time.perf_counter()
        finished = await self._route(delivery)
        result = "done" if finished.ok else "retry" if finished.retry else "failed"
        metrics.labelled(metrics.dispatched, delivery.event, result).inc()
        metrics.labelled(metrics.dispatch_seconds, delivery.event).observe(
            time.perf_counter() - started
        )
        return finished

    async def _route(self, delivery: Delivery) -> Finished:
        with log_context(delivery_id=delivery.id):
            try:
                if delivery.event in self._others:
                    await self._others[delivery.event](delivery.payload)
                else:
                    event = _event(delivery)
                    handlers = router.fetch(event)
                    if handlers:  # most events start nothing: no client (nor token) for them
                        gh = await self._client_for(event)
                        context = Context(event, gh, self.services)
                        for handler in handlers:
                            await handler(context)
            except TRANSIENT as exc:
                reason = describe_error(exc)
                log.warning(
                    "delivery %s (%s) will be retried: %s", delivery.id, delivery.event, reason
                )
                return Finished(delivery.id, reason, retry=True)
            except Exception as exc:
                log.exception("delivery %s (%s) failed", delivery.id, delivery.event)
                return Finished(delivery.id, describe_error(exc))
            return Finished(delivery.id)

    async def _client_for(self, event: sansio.Event) -> GitHubClient:
        installation = event.data.get("installation") if isinstance(event.data, dict) else None
        if installation and installation.get("id") and event.event not in _APP_LEVEL_EVENTS:
            return await self.services.github.installation_client(int(installation["id"]))
        return self.services.github.app_client()

    # -- finishing and leases ------------------------------------------------------------

    async def _finish_loop(self) -> None:
        while True:
            if not self._finished:
                self._finish_wake.clear()
                await self._finish_wake.wait()
            await asyncio.sleep(0)  # those finishing in the same turn join the batch
            if not await self._flush():
                await asyncio.sleep(self.services.settings.store.poll_interval)  # the store is down

    async def _flush(self) -> bool:
        """Write how the finished deliveries ended, in one transaction; False if it failed."""
        batch, self._finished = self._finished, []
        if not batch:
            return True
        try:
            await self.services.store.inbox.finish(batch)
        except Exception:
            log.exception("dispatcher: could not record %d finished deliveries", len(batch))
            self._finished = batch + self._finished  # kept, and tried again
            return False
        if self._claim_after_flush:
            self._claim_after_flush = False
            self._wake.set()
        return True

    async def _renew_loop(self) -> None:
        """Long handlers (labelling hundreds of repositories) keep their leases, so no other
        process takes the same delivery meanwhile; one statement renews them all."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            held = [*self._claimed, *(f.id for f in self._finished)]
            try:
                await self.services.store.inbox.renew(held, self.owner, self.lease_seconds)
            except Exception:
                log.warning("could not renew the leases of %d deliveries", len(held))
