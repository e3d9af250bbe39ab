"""Group commit of new deliveries: one transaction for whatever arrived while the last committed.

The first delivery waits for nothing; those that arrive while a transaction commits go into
the next one, so a burst costs one transaction per batch rather than per delivery, and every
caller still hears only after its delivery is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app import metrics

GROUP_COMMIT_MAX = 256  # deliveries written in one transaction at most


@dataclass
class NewDelivery:
    """A delivery waiting for the next group commit, and the request waiting for its answer."""

    id: str
    event: str
    action: str | None
    body: bytes
    parsed: dict[str, Any] | None
    lease: tuple[str, float] | None  # (owner, seconds): stored already claimed by that owner
    answer: asyncio.Future[bool] = field(repr=False)
    received_at: datetime | None = None  # set when written
    lease_until: datetime | None = None

    def leased(self, now: datetime, order: int) -> NewDelivery:
        """Stamp the arrival (a microsecond apart, to keep their order) and the lease."""
        self.received_at = now + timedelta(microseconds=order)
        if self.lease is not None:
            self.lease_until = now + timedelta(seconds=self.lease[1])
        return self


Writer = Callable[[list[NewDelivery]], Awaitable[set[str]]]


class GroupCommit:
    """The one writer of new deliveries in this process; `write` stores a batch, says which."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._waiting: list[NewDelivery] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, delivery: NewDelivery) -> bool:
        """True once `delivery` is committed; False when it was a duplicate."""
        if self._closing:
            raise RuntimeError("the store is closing: no delivery is taken now")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="honk-inbox-writer")
        self._waiting.append(delivery)
        self._wake.set()
        return await delivery.answer

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0)  # requests parsed in the same turn of the loop join in
            batch = self._waiting[:GROUP_COMMIT_MAX]
            del self._waiting[:GROUP_COMMIT_MAX]
            first: dict[str, NewDelivery] = {}
            for delivery in batch:
                first.setdefault(delivery.id, delivery)  # the same id twice: one stored
            metrics.inbox_batch.observe(len(first))
            try:
                stored = await self._write(list(first.values()))
            except Exception as exc:
                for delivery in batch:
                    if not delivery.answer.done():
                        delivery.answer.set_exception(exc)
                continue
            for delivery in batch:
                if not delivery.answer.done():
                    delivery.answer.set_result(first.get(delivery.id) is delivery
                                               and delivery.id in stored)  # fmt: skip

    async def close(self) -> None:
        """Commit what is waiting, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
