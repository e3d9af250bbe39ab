"""The webhook inbox: every delivery (GitHub's, Slack's) stored before it is answered, leased."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import delivery_subject
from app.store import sqlite_lane
from app.store.base import StoreBase, StoreError, utcnow
from app.store.group_commit import (
    Finished,
    GroupCommit,
    NewDelivery,
    claimed_by_subject,
    replayed,
)
from app.store.sqlite_lane import stamp
from app.store.tables import deliveries, delivery_bodies

MAX_DELIVERY_ATTEMPTS = 5
_NO_LEASE = {"lease_owner": None, "lease_expires_at": None}
_SUBJECT_LOCKS = 7274390  # any constant: the namespace of PostgreSQL's per-subject locks


@dataclass
class Delivery:
    """A stored delivery: its body as received, parsed on first use (or handed over parsed)."""

    id: str
    event: str
    action: str | None
    body: bytes
    attempts: int
    received_at: datetime
    _payload: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            parsed = orjson.loads(self.body) if self.body else {}
            self._payload = parsed if isinstance(parsed, dict) else {}
        return self._payload


class Recorded(NamedTuple):
    """What record_claimed did: stored (False: a duplicate), and claimed for the owner."""

    stored: bool
    claimed: Delivery | None  # None when stored: left for a claim, in its subject's order


class Inbox(StoreBase):
    """Deliveries: recorded once (group commit), claimed under a lease, finished in batches."""

    # A delivery handed back with retry=True waits this long, doubled on each attempt,
    # so a GitHub hiccup has passed by the time it is tried again.
    delivery_retry_delay = 1.0

    async def record_delivery(
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
        """record_delivery, stored already claimed by `owner` where the order allows it.

        A dispatcher in this process then needs no claim of its own; should it die, the
        lease runs out and any process claims the delivery as usual. When an earlier
        delivery about the same subject is pending and not `owner`'s, it is stored unclaimed
        and claimed after that one has finished (see claim_deliveries).
        """
        new = _new(delivery_id, event, body, parsed, (owner, lease_seconds))
        new.digest = digest
        delivery = await self._record(new)
        if delivery is None:
            return Recorded(False, None)
        return Recorded(True, delivery if new.lease is not None else None)

    def _writer(self) -> GroupCommit:
        if getattr(self, "_group_commit", None) is None:
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
            return _ending(one, tries, now, self.delivery_retry_delay)

        if self._lane is not None:
            async with self._turn():
                return await self._lane.run(
                    sqlite_lane.write, self._lane.bodies, batch, finished, stamp(now), ending
                )
        async with self._begin() as conn:
            stored = await self._insert_portably(conn, batch, now) if batch else set()
            missing = await self._finish_portably(conn, finished, now, ending) if finished else []
        return stored, missing

    async def _insert_portably(
        self, conn: AsyncConnection, batch: list[NewDelivery], now: datetime
    ) -> set[str]:
        await self._hold_back_portably(conn, batch, now)
        ids = [new.id for new in batch]
        found = await conn.execute(
            select(deliveries.c.id, deliveries.c.status).where(deliveries.c.id.in_(ids))
        )
        known = {row.id: row.status for row in found}
        digests = [new.digest for new in batch if new.digest is not None]
        held: dict[str, str] = {}
        if digests:
            rows = await conn.execute(
                select(deliveries.c.body_digest, deliveries.c.id).where(
                    deliveries.c.body_digest.in_(digests)
                )
            )
            held = {row.body_digest: row.id for row in rows}
        replays = replayed(batch, held)
        fresh = [new for new in batch if new.id not in known and new.id not in replays]
        again = [new for new in batch if known.get(new.id) == "failed" and new.id not in replays]
        if fresh:
            # Another process may store the same id or body at this moment: what it stored
            # first is skipped here (a duplicate), and only what this insert wrote is ours.
            inserted = await conn.execute(
                self._insert(deliveries).on_conflict_do_nothing().returning(deliveries.c.id),
                [_row(new) for new in fresh],
            )
            ours = set(inserted.scalars())
            fresh = [new for new in fresh if new.id in ours]
        for new in again:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == new.id)
                .values(_row(new) | {"error": None, "payload": None})
            )
            await conn.execute(
                delete(delivery_bodies).where(delivery_bodies.c.delivery_id == new.id)
            )
        stored = fresh + again
        if stored:
            await conn.execute(
                delivery_bodies.insert(),
                [{"delivery_id": new.id, "body": new.body} for new in stored],
            )
        return {new.id for new in stored}

    async def _hold_back_portably(
        self, conn: AsyncConnection, batch: list[NewDelivery], now: datetime
    ) -> None:
        """Leave unclaimed each delivery whose subject has an earlier pending delivery that is
        not its owner's (see sqlite_lane.hold_back; there one writer at a time needs no lock)."""
        to_claim = claimed_by_subject(batch)
        if not to_claim:
            return
        subjects = sorted({subject for by_subject in to_claim.values() for subject in by_subject})
        if conn.dialect.name == "postgresql":
            # Two processes storing deliveries about one subject at once take turns here, so
            # the second sees the first and is held back. Locks in one order: no deadlock.
            keys = (
                await conn.execute(
                    text("SELECT DISTINCT hashtext(s) FROM unnest(CAST(:subjects AS text[])) s"),
                    {"subjects": subjects},
                )
            ).scalars()
            for key in sorted(keys):
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:space, :key)"),
                    {"space": _SUBJECT_LOCKS, "key": key},
                )
        for owner, by_subject in to_claim.items():
            taken = await conn.execute(
                select(deliveries.c.subject)
                .where(
                    deliveries.c.status == "pending",
                    deliveries.c.subject.in_(sorted(by_subject)),
                    _not_leased_to(deliveries, owner, now),
                )
                .distinct()
            )
            for subject in taken.scalars():
                for new in by_subject[subject]:
                    new.hold_back()

    async def close_inbox(self) -> None:
        """Commit the deliveries waiting for their group commit, then take no more."""
        group_commit = getattr(self, "_group_commit", None)
        if group_commit is not None:
            await group_commit.close()

    async def renew_deliveries(
        self, delivery_ids: Sequence[str], owner: str, lease_seconds: float
    ) -> int:
        """Extend the leases of deliveries still being handled; how many `owner` still holds."""
        if not delivery_ids:
            return 0
        until = utcnow() + timedelta(seconds=lease_seconds)
        if self._lane is not None:
            async with self._turn():
                return await self._lane.run(
                    sqlite_lane.renew, list(delivery_ids), owner, stamp(until)
                )
        async with self._begin() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.lease_owner == owner,
                    deliveries.c.status == "pending",
                )
                .values(lease_expires_at=until)
            )
        return int(result.rowcount or 0)

    async def renew_delivery(self, delivery_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease of one delivery still being handled; False if `owner` lost it."""
        return await self.renew_deliveries([delivery_id], owner, lease_seconds) == 1

    async def claim_deliveries(
        self, owner: str, lease_seconds: float, *, limit: int = 1
    ) -> list[Delivery]:
        """The oldest undispatched deliveries whose lease is free or expired; attempts += 1."""
        now = utcnow()
        if self._lane is not None:
            until = stamp(now + timedelta(seconds=lease_seconds))
            async with self._turn():
                claimed = await self._lane.run(
                    sqlite_lane.claim, self._lane.bodies, owner, stamp(now), until, limit
                )
            return [_claimed(row) for row in claimed]
        free = or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now)
        earlier = deliveries.alias("earlier")
        # Only the oldest pending delivery of a subject is claimable, unless the earlier
        # ones are this owner's own (its dispatcher handles them in order).
        in_order = or_(
            deliveries.c.subject.is_(None),
            ~select(earlier.c.id)
            .where(
                earlier.c.subject == deliveries.c.subject,
                earlier.c.status == "pending",
                or_(
                    earlier.c.received_at < deliveries.c.received_at,
                    and_(
                        earlier.c.received_at == deliveries.c.received_at,
                        earlier.c.id < deliveries.c.id,
                    ),
                ),
                _not_leased_to(earlier, owner, now),
            )
            .exists(),
        )
        async with self._begin() as conn:
            rows = (
                await conn.execute(
                    select(deliveries, delivery_bodies.c.body)
                    .outerjoin(delivery_bodies, delivery_bodies.c.delivery_id == deliveries.c.id)
                    .where(deliveries.c.status == "pending", free, in_order)
                    .order_by(deliveries.c.received_at, deliveries.c.id)
                    .limit(limit)
                    .with_for_update(of=deliveries, skip_locked=True)
                )
            ).all()
            if not rows:
                return []
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_([row.id for row in rows]))
                .values(
                    attempts=deliveries.c.attempts + 1,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                )
            )
        return [_delivery(row) for row in rows]

    async def claim_delivery(self, owner: str, lease_seconds: float) -> Delivery | None:
        """The oldest claimable delivery (see claim_deliveries), or None."""
        claimed = await self.claim_deliveries(owner, lease_seconds, limit=1)
        return claimed[0] if claimed else None

    async def finish_deliveries(self, finished: Sequence[Finished]) -> None:
        """Record how each ended, in the next group commit: done, failed, or back off and retry.

        A retry waits delivery_retry_delay, doubled per attempt, up to MAX_DELIVERY_ATTEMPTS.
        An id that is not stored is an error (the others are recorded all the same).
        """
        if not finished:
            return
        missing = await self._writer().finish(finished)
        if missing:
            raise StoreError(f"no delivery {', '.join(missing)}")

    async def _finish_portably(
        self,
        conn: AsyncConnection,
        finished: Sequence[Finished],
        now: datetime,
        ending: Callable[[Finished, int], dict[str, Any]],
    ) -> list[str]:
        ids = [f.id for f in finished]
        rows = await conn.execute(
            select(deliveries.c.id, deliveries.c.attempts)
            .where(deliveries.c.id.in_(ids))
            .with_for_update()
        )
        attempts = {row.id: row.attempts for row in rows}
        done = [f.id for f in finished if f.ok and f.id in attempts]
        if done:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(done))
                .values(**_NO_LEASE, error=None, status="done", finished_at=now)
            )
        for one in finished:
            if not one.ok and one.id in attempts:
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == one.id)
                    .values(ending(one, attempts[one.id]))
                )
        return [i for i in ids if i not in attempts]

    async def finish_delivery(
        self, delivery_id: str, *, error: str | None = None, retry: bool = False
    ) -> None:
        """Done (or failed, with error); retry=True: claimed again after a delay, up to 5 tries."""
        await self.finish_deliveries([Finished(delivery_id, error, retry)])

    async def delivery_body(self, delivery_id: str) -> bytes | None:
        """A delivery's body exactly as received; None for an unknown one (or a lost body)."""
        if self._lane is not None:
            return await self._lane.run(sqlite_lane.body, self._lane.bodies, delivery_id)
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    select(deliveries.c.payload, delivery_bodies.c.body)
                    .outerjoin(delivery_bodies, delivery_bodies.c.delivery_id == deliveries.c.id)
                    .where(deliveries.c.id == delivery_id)
                )
            ).first()
        return None if row is None else _stored_body(row)

    async def count_deliveries(self, *, pending: bool = False) -> int:
        """How many deliveries are stored (pending=True: not yet dispatched)."""
        query = select(func.count()).select_from(deliveries)
        if pending:
            query = query.where(deliveries.c.status == "pending")
        async with self._begin() as conn:
            return int(await conn.scalar(query) or 0)

    async def oldest_pending(self) -> datetime | None:
        """When the oldest delivery still waiting for dispatch arrived."""
        async with self._begin() as conn:
            return await conn.scalar(
                select(func.min(deliveries.c.received_at)).where(deliveries.c.status == "pending")
            )

    async def prune_deliveries(self, older_than: timedelta) -> int:
        """Forget finished deliveries (done or failed) that finished more than `older_than` ago,
        and on SQLite the files of bodies no delivery refers to any more."""
        now = utcnow()
        cutoff = now - older_than
        if self._lane is not None:
            async with self._turn():
                return await self._lane.run(
                    sqlite_lane.prune, self._lane.bodies, stamp(cutoff), now.date()
                )
        async with self._begin() as conn:
            result = await conn.execute(
                delete(deliveries).where(
                    and_(deliveries.c.status != "pending", deliveries.c.finished_at < cutoff)
                )
            )
        return int(result.rowcount or 0)


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


def _not_leased_to(table: Any, owner: str, now: datetime) -> Any:
    """Rows of `table` that are not held by `owner` under a live lease."""
    return or_(
        table.c.lease_owner.is_(None),
        table.c.lease_owner != owner,
        table.c.lease_expires_at < now,
    )


def _row(new: NewDelivery) -> dict[str, Any]:
    """The deliveries row of a new delivery: pending (claimed already when it has a lease), or
    done at once."""
    return {
        "id": new.id,
        "event": new.event,
        "action": new.action,
        "status": "done" if new.done else "pending",
        "finished_at": new.received_at if new.done else None,
        "attempts": 1 if new.lease else 0,
        "lease_owner": new.lease[0] if new.lease else None,
        "lease_expires_at": new.lease_until,
        "received_at": new.received_at,
        "subject": new.subject,
        "body_digest": new.digest,
    }


def _stored_body(row: Any) -> bytes:
    """A row's body (portable path); before migration 0004 bodies were JSON payloads."""
    return bytes(row.body) if row.body is not None else orjson.dumps(row.payload or {})


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.id, row.event, row.action, _stored_body(row), row.attempts + 1, row.received_at
    )


def _claimed(row: sqlite_lane.Claimed) -> Delivery:
    delivery_id, event, action, body, attempts, received_at = row
    received = sqlite_lane.unstamp(received_at)
    return Delivery(delivery_id, event, action, body, attempts + 1, received)


def _ending(one: Finished, tries: int, now: datetime, retry_delay: float) -> dict[str, Any]:
    """The columns of a delivery that did not simply succeed: released to retry, or failed."""
    values: dict[str, Any] = {**_NO_LEASE, "error": one.error}
    if one.retry and tries < MAX_DELIVERY_ATTEMPTS:
        # Released; the lease's expiry doubles as "not before", the back-off.
        values["lease_expires_at"] = now + timedelta(seconds=retry_delay * 2 ** (tries - 1))
    else:
        values.update(status="failed", finished_at=now)
        if one.retry:
            values["error"] = f"gave up after {tries} attempts: {one.error or 'no error'}"
    return values
