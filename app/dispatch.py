"""Dispatch stored deliveries through the handlers' router, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import gidgethub
from gidgethub import sansio

from app.github.client import GitHubClient
from app.handlers import router
from app.handlers.context import HandlerContext
from app.log import describe_error, log_context
from app.store import Delivery

log = logging.getLogger(__name__)

# Failures worth another attempt later: GitHub or the network having a bad moment.
TRANSIENT = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    gidgethub.GitHubBroken,
    gidgethub.RateLimitExceeded,
)


class Dispatcher:
    """Claims undispatched deliveries from the store (none is lost on a crash), routes them."""

    def __init__(self, ctx: HandlerContext, *, lease_seconds: float = 120.0) -> None:
        self.ctx = ctx
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}:dispatch"
        self.lease_seconds = lease_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Stored requests that are not GitHub events (Slack's), by event name.
        self._others: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}

    def register(self, event: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Dispatch stored deliveries named `event` to `handler(payload)` instead of GitHub's."""
        self._others[event] = handler

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="honk-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                handled = await self.dispatch_pending()
            except Exception:
                log.exception("dispatcher: store unavailable")
                handled = 0
            if not handled:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                # cancellation that stops this loop when the event fires at that moment.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ctx.settings.poll_interval):
                        await self._wake.wait()
                self._wake.clear()

    async def dispatch_pending(self) -> int:
        """Dispatch every delivery that can be claimed now; returns how many."""
        count = 0
        while delivery := await self.ctx.store.claim_delivery(self.owner, self.lease_seconds):
            await self.dispatch(delivery)
            count += 1
        return count

    async def dispatch(self, delivery: Delivery) -> None:
        with log_context(delivery_id=delivery.id):
            event = sansio.Event(delivery.payload, event=delivery.event, delivery_id=delivery.id)
            # Long handlers (labelling hundreds of repositories) keep their lease, so no
            # other process takes the same delivery meanwhile.
            keep_lease = asyncio.create_task(self._renew(delivery.id))
            try:
                if delivery.event in self._others:
                    await self._others[delivery.event](delivery.payload)
                else:
                    gh = await self._client_for(event)
                    await router.dispatch(event, gh, ctx=self.ctx)
            except TRANSIENT as exc:
                reason = describe_error(exc)
                log.warning(
                    "delivery %s (%s) will be retried: %s", delivery.id, delivery.event, reason
                )
                await self.ctx.store.finish_delivery(delivery.id, error=reason, retry=True)
            except Exception as exc:
                log.exception("delivery %s (%s) failed", delivery.id, delivery.event)
                await self.ctx.store.finish_delivery(delivery.id, error=describe_error(exc))
            else:
                await self.ctx.store.finish_delivery(delivery.id)
            finally:
                keep_lease.cancel()

    async def _renew(self, delivery_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.ctx.store.renew_delivery(delivery_id, self.owner, self.lease_seconds)
            except Exception:
                log.warning("could not renew the lease of delivery %s", delivery_id)

    async def _client_for(self, event: sansio.Event) -> GitHubClient:
        installation = event.data.get("installation") if isinstance(event.data, dict) else None
        if installation and installation.get("id") and event.event not in _APP_LEVEL_EVENTS:
            return await self.ctx.github.installation_client(int(installation["id"]))
        return self.ctx.github.app_client()


# Events about the installation itself are handled with the App's own JWT: the
# installation may already be gone (deleted) or unable to mint tokens (suspended).
_APP_LEVEL_EVENTS = {"installation", "ping"}
