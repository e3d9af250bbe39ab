"""The webhook inbox: every delivery (GitHub's, Slack's) stored before it is answered, leased."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from app.store.base import StoreBase, StoreError, utcnow
from app.store.tables import deliveries

MAX_DELIVERY_ATTEMPTS = 5
_NO_LEASE = {"lease_owner": None, "lease_expires_at": None}


@dataclass
class Delivery:
    id: str
    event: str
    action: str | None
    payload: dict[str, Any]
    attempts: int
    received_at: datetime


class Inbox(StoreBase):
    """Deliveries: recorded once, claimed under a lease, finished (or retried with back-off)."""

    # A delivery handed back with retry=True waits this long, doubled on each attempt,
    # so a GitHub hiccup has passed by the time it is tried again.
    delivery_retry_delay = 1.0

    async def record_delivery(self, delivery_id: str, event: str, payload: dict[str, Any]) -> bool:
        values = {
            "id": delivery_id,
            "event": event,
            "action": payload.get("action"),
            "payload": payload,
            "received_at": utcnow(),
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(
                self._insert(deliveries).values(values).on_conflict_do_nothing()
            )
            if result.rowcount == 1:
                return True
            # GitHub's "Redeliver" reuses the delivery id: a delivery that failed is taken
            # again; one that is pending or done is a duplicate.
            result = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status == "failed")
                .values(
                    status="pending",
                    attempts=0,
                    error=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    finished_at=None,
                    payload=payload,
                )
            )
        return result.rowcount == 1

    async def renew_delivery(self, delivery_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease of a delivery still being handled; False if `owner` lost it."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.lease_owner == owner,
                    deliveries.c.status == "pending",
                )
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
            )
        return result.rowcount == 1

    async def claim_delivery(self, owner: str, lease_seconds: float) -> Delivery | None:
        """The oldest undispatched delivery whose lease is free or expired; attempts += 1."""
        now = utcnow()
        free = or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now)
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(deliveries)
                    .where(deliveries.c.status == "pending", free)
                    .order_by(deliveries.c.received_at, deliveries.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).first()
            if row is None:
                return None
            await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == row.id)
                .values(
                    attempts=deliveries.c.attempts + 1,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                )
            )
        return Delivery(
            row.id, row.event, row.action, row.payload, row.attempts + 1, row.received_at
        )

    async def finish_delivery(
        self, delivery_id: str, *, error: str | None = None, retry: bool = False
    ) -> None:
        """Done (or failed, with error); retry=True: claimed again after a delay, up to 5 tries."""
        where = deliveries.c.id == delivery_id
        async with self.engine.begin() as conn:
            attempts = await conn.scalar(
                select(deliveries.c.attempts).where(where).with_for_update()
            )
            if attempts is None:
                raise StoreError(f"no delivery {delivery_id}")
            values: dict[str, Any] = {**_NO_LEASE, "error": error}
            if retry and attempts < MAX_DELIVERY_ATTEMPTS:
                # Released; the lease's expiry doubles as "not before", the back-off.
                delay = self.delivery_retry_delay * 2 ** (attempts - 1)
                values["lease_expires_at"] = utcnow() + timedelta(seconds=delay)
            else:
                values.update(status="failed" if error or retry else "done", finished_at=utcnow())
                if retry:
                    values["error"] = f"gave up after {attempts} attempts: {error or 'no error'}"
            await conn.execute(update(deliveries).where(where).values(values))

    async def count_deliveries(self, *, pending: bool = False) -> int:
        """How many deliveries are stored (pending=True: not yet dispatched)."""
        query = select(func.count()).select_from(deliveries)
        if pending:
            query = query.where(deliveries.c.status == "pending")
        async with self.engine.begin() as conn:
            return int(await conn.scalar(query) or 0)
