"""Group commit: one transaction for whatever arrived while the last one committed.

New deliveries and the dispatcher's "how these ended" are written together: the first
arrival waits for nothing, those that arrive while a transaction commits go into the next
one, so a burst costs one transaction per batch (not one to record and one to finish each
delivery), and every caller hears only after its part is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app import metrics

GROUP_COMMIT_MAX = 256  # new deliveries written in one transaction at most


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
    subject: str | None = None  # models.delivery_subject
    digest: str | None = None  # of the signed body (GitHub's): the same body twice is a replay
    done: bool = False  # stored as handled already: no handler listens to it
    received_at: datetime | None = None  # set when written
    lease_until: datetime | None = None

    def hold_back(self) -> None:
        """Stored unclaimed: an earlier delivery about its subject is another's, or waits."""
        self.lease = self.lease_until = None

    def leased(self, now: datetime, order: int) -> NewDelivery:
        """Stamp the arrival (a microsecond apart, to keep their order) and the lease."""
        self.received_at = now + timedelta(microseconds=order)
        if self.lease is not None:
            self.lease_until = now + timedelta(seconds=self.lease[1])
        return self


def claimed_by_subject(batch: Sequence[NewDelivery]) -> dict[str, dict[str, list[NewDelivery]]]:
    """The new deliveries to be stored claimed that are about a subject, by owner, then by
    subject: the ones the subject order may hold back (see NewDelivery.hold_back)."""
    found: dict[str, dict[str, list[NewDelivery]]] = {}
    for new in batch:
        if new.lease is not None and new.subject is not None:
            found.setdefault(new.lease[0], {}).setdefault(new.subject, []).append(new)
    return found


def replayed(batch: Sequence[NewDelivery], stored: dict[str, str]) -> set[str]:
    """The ids in `batch` whose body is already stored (`stored`: digest -> id) or comes earlier
    in the batch under another id: a signed body sent again under a new delivery id."""
    holders = dict(stored)
    found: set[str] = set()
    for new in batch:
        if new.digest is not None and holders.setdefault(new.digest, new.id) != new.id:
            found.add(new.id)
    return found


@dataclass(slots=True)
class Finished:
    """How a claimed delivery ended: done, failed (error), or handed back to retry."""

    id: str
    error: str | None = None
    retry: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.retry


@dataclass
class _Finishing:
    finished: Sequence[Finished]
    answer: asyncio.Future[list[str]] = field(repr=False)


# write(new, finished) stores the new deliveries and records the finished ones in one
# transaction: the ids stored (not duplicates), and the finished ids that were not found.
Writer = Callable[[list[NewDelivery], list[Finished]], Awaitable[tuple[set[str], list[str]]]]


class GroupCommit:
    """The one writer of new and finished deliveries in this process."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._waiting: list[NewDelivery] = []
        self._finishing: list[_Finishing] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, delivery: NewDelivery) -> bool:
        """True once `delivery` is committed; False when it was a duplicate."""
        if self._closing:
            raise RuntimeError("the store is closing: no delivery is taken now")
        self._waiting.append(delivery)
        self._start()
        return await delivery.answer

    async def finish(self, finished: Sequence[Finished]) -> list[str]:
        """Once how these ended is committed: the ids among them that are not stored."""
        if self._task is not None and self._task.done():  # closed: written on its own
            return list((await self._write([], list(finished)))[1])
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._finishing.append(_Finishing(finished, answer))
        self._start()
        return await answer

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="honk-inbox-writer")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._waiting and not self._finishing:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0)  # requests parsed in the same turn of the loop join in
            batch = self._waiting[:GROUP_COMMIT_MAX]
            del self._waiting[:GROUP_COMMIT_MAX]
            finishing, self._finishing = self._finishing, []
            first: dict[str, NewDelivery] = {}
            for delivery in batch:
                first.setdefault(delivery.id, delivery)  # the same id twice: one stored
            if first:
                metrics.inbox_batch.observe(len(first))
            ended = [one for part in finishing for one in part.finished]
            try:
                stored, not_found = await self._write(list(first.values()), ended)
            except Exception as exc:
                answers: list[asyncio.Future[Any]] = [d.answer for d in batch]
                answers += [part.answer for part in finishing]
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for delivery in batch:
                if not delivery.answer.done():
                    delivery.answer.set_result(first.get(delivery.id) is delivery
                                               and delivery.id in stored)  # fmt: skip
            missing = set(not_found)
            for part in finishing:
                if not part.answer.done():
                    part.answer.set_result([one.id for one in part.finished if one.id in missing])

    async def close(self) -> None:
        """Commit what is waiting, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
