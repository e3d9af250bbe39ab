"""The webhook inbox: every delivery (GitHub's, Slack's) stored before it is answered, leased.

`store.inbox` keeps the rules the engines share (group commit, leases, back-off); the
statements are its backend's, chosen once: the SQLite lane or the portable SQLAlchemy path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import func, select

from app.models import delivery_subject
from app.store.database import Database, Part, StoreError, shielded, utcnow
from app.store.group_commit import Finished, GroupCommit, NewDelivery
from app.store.inbox_backend import Delivery, InboxBackend
from app.store.inbox_lane import LaneInbox
from app.store.inbox_portable import NO_LEASE, PortableInbox
from app.store.tables import deliveries

__all__ = ["Delivery", "Finished", "Inbox", "Recorded", "backend_for", "body_digest"]

MAX_DELIVERY_ATTEMPTS = 5


class Recorded(NamedTuple):
    """What record_claimed did: stored (False: a duplicate), and claimed for the owner."""

    stored: bool
    claimed: Delivery | None  # None when stored: left for a claim, in its subject's order


def backend_for(db: Database) -> InboxBackend:
    """The lane on a SQLite file, else the portable path: chosen once, per store."""
    return LaneInbox(db, db.lane) if db.lane is not None else PortableInbox(db)


class Inbox(Part):
    """`store.inbox`: deliveries recorded once (group commit), claimed under a lease,
    finished in batches."""

    # A delivery handed back with retry=True waits this long, doubled on each attempt,
    # so a GitHub hiccup has passed by the time it is tried again.
    retry_delay = 1.0

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.backend = backend_for(db)
        self._group_commit: GroupCommit | None = None

    # record, record_claimed and close need no shield: the group commit's writer task
    # finishes on its own.
    async def record(
        self,
        delivery_id: str,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        parsed: dict[str, Any] | None = None,
        done: bool = False,
        digest: str | None = None,
    ) -> bool:
        """Store a delivery (a body as received, or a payload); False for a duplicate.

        GitHub's "Redeliver" reuses the delivery id: one that failed is taken again; one that
        is pending or done is a duplicate. `parsed` is the body already parsed. `done`: one
        that starts nothing (no handler listens to it) is stored as handled already, so it
        is never claimed and needs no second write to finish it. `digest` (body_digest) of
        a signed body: a body already stored under another id is a duplicate too (a replay).
        """
        new = _new(delivery_id, event, payload, parsed, None)
        new.done, new.digest = done, digest
        return await self._record(new) is not None

    async def record_claimed(
        self,
        delivery_id: str,
        event: str,
        body: bytes,
        *,
        parsed: dict[str, Any],
        owner: str,
        lease_seconds: float,
        digest: str | None = None,
    ) -> Recorded:
        """record, stored already claimed by `owner` where the order allows it.

        A dispatcher in this process then needs no claim of its own; should it die, the
        lease runs out and any process claims the delivery as usual. When an earlier
        delivery about the same subject is pending and not `owner`'s, it is stored unclaimed
        and claimed after that one has finished (see claim).
        """
        new = _new(delivery_id, event, body, parsed, (owner, lease_seconds))
        new.digest = digest
        delivery = await self._record(new)
        if delivery is None:
            return Recorded(False, None)
        return Recorded(True, delivery if new.lease is not None else None)

    async def close(self) -> None:
        """Commit the deliveries waiting for their group commit, then take no more."""
        if self._group_commit is not None:
            await self._group_commit.close()

    def _writer(self) -> GroupCommit:
        if self._group_commit is None:
            self._group_commit = GroupCommit(self._write)
        return self._group_commit

    async def _record(self, new: NewDelivery) -> Delivery | None:
        if not await self._writer().submit(new):
            return None
        assert new.received_at is not None and new.parsed is not None
        attempts = 1 if new.lease else 0
        return Delivery(new.id, new.event, new.action, new.body, attempts, new.received_at,
                        new.parsed)  # fmt: skip

    async def _write(
        self, batch: list[NewDelivery], finished: list[Finished]
    ) -> tuple[set[str], list[str]]:
        """One group commit: the ids stored (new, or a failed one taken again), and the
        finished ids that are not stored."""
        now = utcnow()
        batch = [new.leased(now, order) for order, new in enumerate(batch)]

        def ending(one: Finished, tries: int) -> dict[str, Any]:
            return _ending(one, tries, now, self.retry_delay)

        return await self.backend.write(batch, finished, now, ending)

    @shielded
    async def renew(self, delivery_ids: Sequence[str], owner: str, lease_seconds: float) -> int:
        """Extend the leases of deliveries still being handled; how many `owner` still holds."""
        if not delivery_ids:
            return 0
        until = utcnow() + timedelta(seconds=lease_seconds)
        return await self.backend.renew(delivery_ids, owner, until)

    @shielded
    async def renew_one(self, delivery_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease of one delivery still being handled; False if `owner` lost it."""
        return await self.renew([delivery_id], owner, lease_seconds) == 1

    @shielded
    async def claim(self, owner: str, lease_seconds: float, *, limit: int = 1) -> list[Delivery]:
        """The oldest undispatched deliveries whose lease is free or expired; attempts += 1.

        Only the oldest pending delivery of a subject is claimable, unless the earlier ones
        are this owner's own (its dispatcher handles them in order); one whose body is gone
        fails instead.
        """
        now = utcnow()
        return await self.backend.claim(owner, now, now + timedelta(seconds=lease_seconds), limit)

    @shielded
    async def claim_one(self, owner: str, lease_seconds: float) -> Delivery | None:
        """The oldest claimable delivery (see claim), or None."""
        claimed = await self.claim(owner, lease_seconds, limit=1)
        return claimed[0] if claimed else None

    @shielded
    async def finish(self, finished: Sequence[Finished]) -> None:
        """Record how each ended, in the next group commit: done, failed, or back off and retry.

        A retry waits retry_delay, doubled per attempt, up to MAX_DELIVERY_ATTEMPTS.
        An id that is not stored is an error (the others are recorded all the same).
        """
        if not finished:
            return
        missing = await self._writer().finish(finished)
        if missing:
            raise StoreError(f"no delivery {', '.join(missing)}")

    @shielded
    async def finish_one(
        self, delivery_id: str, *, error: str | None = None, retry: bool = False
    ) -> None:
        """Done (or failed, with error); retry=True: claimed again after a delay, up to 5 tries."""
        await self.finish([Finished(delivery_id, error, retry)])

    @shielded
    async def body(self, delivery_id: str) -> bytes | None:
        """A delivery's body exactly as received; None for an unknown one (or a lost body)."""
        return await self.backend.body(delivery_id)

    @shielded
    async def count(self, *, pending: bool = False) -> int:
        """How many deliveries are stored (pending=True: not yet dispatched)."""
        query = select(func.count()).select_from(deliveries)
        if pending:
            query = query.where(deliveries.c.status == "pending")
        async with self.db.begin() as conn:
            return int(await conn.scalar(query) or 0)

    @shielded
    async def oldest_pending(self) -> datetime | None:
        """When the oldest delivery still waiting for dispatch arrived."""
        async with self.db.begin() as conn:
            oldest: datetime | None = await conn.scalar(
                select(func.min(deliveries.c.received_at)).where(deliveries.c.status == "pending")
            )
        return oldest

    @shielded
    async def prune(self, older_than: timedelta) -> int:
        """Forget finished deliveries (done or failed) that finished more than `older_than` ago,
        and on SQLite's lane the files of bodies no delivery refers to any more."""
        now = utcnow()
        return await self.backend.prune(now - older_than, now)


def body_digest(body: bytes) -> str:
    """A body's digest (hex SHA-256) where none comes with it: GitHub's deliveries use the
    verified signature instead (an HMAC-SHA256 of the body, computed already)."""
    return hashlib.sha256(body).hexdigest()


def _new(
    delivery_id: str,
    event: str,
    payload: dict[str, Any] | bytes,
    parsed: dict[str, Any] | None,
    lease: tuple[str, float] | None,
) -> NewDelivery:
    if isinstance(payload, bytes | bytearray):
        body = bytes(payload)
        if parsed is None:
            loaded = orjson.loads(body) if body else {}
            parsed = loaded if isinstance(loaded, dict) else {}
    else:
        body, parsed = orjson.dumps(payload), payload
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    subject = delivery_subject(event, parsed)
    return NewDelivery(
        delivery_id, event, parsed.get("action"), body, parsed, lease, answer, subject
    )


def _ending(one: Finished, tries: int, now: datetime, retry_delay: float) -> dict[str, Any]:
    """The columns of a delivery that did not simply succeed: released to retry, or failed."""
    values: dict[str, Any] = {**NO_LEASE, "error": one.error}
    if one.retry and tries < MAX_DELIVERY_ATTEMPTS:
        # Released; the lease's expiry doubles as "not before", the back-off.
        values["lease_expires_at"] = now + timedelta(seconds=retry_delay * 2 ** (tries - 1))
    else:
        values.update(status="failed", finished_at=now)
        if one.retry:
            values["error"] = f"gave up after {tries} attempts: {one.error or 'no error'}"
    return values
