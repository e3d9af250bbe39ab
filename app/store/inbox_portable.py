"""The inbox through SQLAlchemy: PostgreSQL, or SQLite without its lane (the same rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.database import Database
from app.store.group_commit import Finished, NewDelivery, claimed_by_subject, replayed
from app.store.inbox_backend import Delivery, Ending
from app.store.tables import deliveries, delivery_bodies

NO_LEASE = {"lease_owner": None, "lease_expires_at": None}
_SUBJECT_LOCKS = 7274390  # any constant: the namespace of PostgreSQL's per-subject locks


class PortableInbox:
    """InboxBackend over the engine, each call one transaction in SQLite's turn (if SQLite)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(
        self, batch: list[NewDelivery], finished: list[Finished], now: datetime, ending: Ending
    ) -> tuple[set[str], list[str]]:
        async with self._db.begin() as conn:
            stored = await self._insert(conn, batch, now) if batch else set()
            missing = await _finish(conn, finished, now, ending) if finished else []
        return stored, missing

    async def _insert(
        self, conn: AsyncConnection, batch: list[NewDelivery], now: datetime
    ) -> set[str]:
        await _hold_back(conn, batch, now)
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
                self._db.insert(deliveries).on_conflict_do_nothing().returning(deliveries.c.id),
                [row(new) for new in fresh],
            )
            ours = set(inserted.scalars())
            fresh = [new for new in fresh if new.id in ours]
        for new in again:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == new.id)
                .values(row(new) | {"error": None, "payload": None})
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

    async def renew(self, delivery_ids: Sequence[str], owner: str, until: datetime) -> int:
        async with self._db.begin() as conn:
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

    async def claim(self, owner: str, now: datetime, until: datetime, limit: int) -> list[Delivery]:
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
        async with self._db.begin() as conn:
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
                    attempts=deliveries.c.attempts + 1, lease_owner=owner, lease_expires_at=until
                )
            )
        return [_delivery(row) for row in rows]

    async def body(self, delivery_id: str) -> bytes | None:
        async with self._db.begin() as conn:
            found = (
                await conn.execute(
                    select(deliveries.c.payload, delivery_bodies.c.body)
                    .outerjoin(delivery_bodies, delivery_bodies.c.delivery_id == deliveries.c.id)
                    .where(deliveries.c.id == delivery_id)
                )
            ).first()
        return None if found is None else _stored_body(found)

    async def prune(self, cutoff: datetime, now: datetime) -> int:
        async with self._db.begin() as conn:
            result = await conn.execute(
                delete(deliveries).where(
                    and_(deliveries.c.status != "pending", deliveries.c.finished_at < cutoff)
                )
            )
        return int(result.rowcount or 0)


async def _hold_back(conn: AsyncConnection, batch: list[NewDelivery], now: datetime) -> None:
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


async def _finish(
    conn: AsyncConnection, finished: Sequence[Finished], now: datetime, ending: Ending
) -> list[str]:
    ids = [f.id for f in finished]
    rows = await conn.execute(
        select(deliveries.c.id, deliveries.c.attempts)
        .where(deliveries.c.id.in_(ids))
        .with_for_update()
    )
    attempts = {found.id: found.attempts for found in rows}
    done = [f.id for f in finished if f.ok and f.id in attempts]
    if done:
        await conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(done))
            .values(**NO_LEASE, error=None, status="done", finished_at=now)
        )
    for one in finished:
        if not one.ok and one.id in attempts:
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == one.id)
                .values(ending(one, attempts[one.id]))
            )
    return [i for i in ids if i not in attempts]


def _not_leased_to(table: Any, owner: str, now: datetime) -> Any:
    """Rows of `table` that are not held by `owner` under a live lease."""
    return or_(
        table.c.lease_owner.is_(None),
        table.c.lease_owner != owner,
        table.c.lease_expires_at < now,
    )


def row(new: NewDelivery) -> dict[str, Any]:
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


def _stored_body(found: Any) -> bytes:
    """A row's body; before migration 0004 bodies were JSON payloads."""
    return bytes(found.body) if found.body is not None else orjson.dumps(found.payload or {})


def _delivery(found: Any) -> Delivery:
    body = _stored_body(found)
    return Delivery(
        found.id, found.event, found.action, body, found.attempts + 1, found.received_at
    )
