"""The inbox on a SQLite file: each call one trip to the lane's thread (see sqlite_lane.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.store import sqlite_lane
from app.store.database import Database
from app.store.group_commit import Finished, NewDelivery
from app.store.inbox_backend import Delivery, Ending
from app.store.sqlite_lane import SqliteLane, stamp


class LaneInbox:
    """InboxBackend over raw sqlite3, its writes taking SQLite's turn in this process."""

    def __init__(self, db: Database, lane: SqliteLane) -> None:
        self._db = db
        self._lane = lane

    async def write(
        self, batch: list[NewDelivery], finished: list[Finished], now: datetime, ending: Ending
    ) -> tuple[set[str], list[str]]:
        async with self._db.turn():
            return await self._lane.run(
                sqlite_lane.write, self._lane.bodies, batch, finished, stamp(now), ending
            )

    async def renew(self, delivery_ids: Sequence[str], owner: str, until: datetime) -> int:
        async with self._db.turn():
            return await self._lane.run(sqlite_lane.renew, list(delivery_ids), owner, stamp(until))

    async def claim(self, owner: str, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        async with self._db.turn():
            claimed = await self._lane.run(
                sqlite_lane.claim, self._lane.bodies, owner, stamp(now), stamp(until), limit
            )
        return [_claimed(row) for row in claimed]

    async def body(self, delivery_id: str) -> bytes | None:
        return await self._lane.run(sqlite_lane.body, self._lane.bodies, delivery_id)

    async def prune(self, cutoff: datetime, now: datetime) -> int:
        async with self._db.turn():
            return await self._lane.run(
                sqlite_lane.prune, self._lane.bodies, stamp(cutoff), now.date()
            )


def _claimed(row: sqlite_lane.Claimed) -> Delivery:
    delivery_id, event, action, body, attempts, received_at = row
    received = sqlite_lane.unstamp(received_at)
    return Delivery(delivery_id, event, action, body, attempts + 1, received)
