"""A run's events as they happened, numbered per run: the run page's transcript and timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from app.store.database import Part, StoreError, shielded, utcnow
from app.store.tables import run_events, runs

# Should two writers still pick one number, the unique index refuses the second: it retries.
SEQ_ATTEMPTS = 5


@dataclass(frozen=True)
class RunEvent:
    """One stored event: `seq` counts from 1 within its run; `data` is JSON."""

    seq: int
    kind: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class EventTotals:
    """What a run has stored so far: how many events, how many characters, the last number."""

    count: int = 0
    size: int = 0
    last_seq: int = 0


class RunEventLog(Part):
    """`store.events`: append and read a run's events; the caller redacts and bounds them first."""

    @shielded
    async def add(self, run_id: int, kind: str, data: dict[str, Any], *, size: int = 0) -> RunEvent:
        for _attempt in range(SEQ_ATTEMPTS):
            now = utcnow()
            try:
                async with self.db.engine.begin() as conn:
                    # The run's row, locked: its writers number their events one at a time
                    # (SQLite's BEGIN IMMEDIATE serializes them already).
                    held = select(runs.c.id).where(runs.c.id == run_id).with_for_update()
                    if await conn.scalar(held) is None:
                        raise StoreError(f"no run {run_id}")
                    last = await conn.scalar(
                        select(func.coalesce(func.max(run_events.c.seq), 0)).where(
                            run_events.c.run_id == run_id
                        )
                    )
                    seq = int(last or 0) + 1
                    await conn.execute(
                        insert(run_events).values(
                            run_id=run_id, seq=seq, kind=kind, data=data, size=size, at=now
                        )
                    )
                return RunEvent(seq, kind, now, data)
            except IntegrityError as exc:
                if "foreign key" in str(exc).lower():
                    raise StoreError(f"no run {run_id}") from None
        raise StoreError(f"could not number an event of run {run_id}")

    @shielded
    async def read(
        self, run_id: int, *, after: int = 0, limit: int = 1000, kinds: tuple[str, ...] = ()
    ) -> list[RunEvent]:
        """The run's events numbered above `after`, oldest first, at most `limit`."""
        query = select(run_events).where(run_events.c.run_id == run_id, run_events.c.seq > after)
        if kinds:
            query = query.where(run_events.c.kind.in_(kinds))
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(query.order_by(run_events.c.seq).limit(limit))).all()
        return [RunEvent(row.seq, row.kind, row.at, dict(row.data)) for row in rows]

    @shielded
    async def totals(self, run_id: int) -> EventTotals:
        query = select(
            func.count(), func.coalesce(func.sum(run_events.c.size), 0),
            func.coalesce(func.max(run_events.c.seq), 0),
        ).where(run_events.c.run_id == run_id)  # fmt: skip
        async with self.db.engine.begin() as conn:
            count, size, last = (await conn.execute(query)).one()
        return EventTotals(int(count), int(size), int(last))
