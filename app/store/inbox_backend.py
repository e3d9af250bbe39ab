"""What the inbox asks of its engine: one backend each, chosen once when the store opens.

`LaneInbox` (inbox_lane.py) on a SQLite file, `PortableInbox` (inbox_portable.py, SQLAlchemy)
on PostgreSQL or another SQLite; the same rules on both, checked by one contract test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from app.store.group_commit import Finished, NewDelivery

# The columns of a delivery that did not simply succeed (released to retry, or failed),
# from how it ended and how many attempts it had.
Ending = Callable[[Finished, int], dict[str, Any]]


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


class InboxBackend(Protocol):
    """The inbox's statements on one engine; each call is one transaction."""

    async def write(
        self, batch: list[NewDelivery], finished: list[Finished], now: datetime, ending: Ending
    ) -> tuple[set[str], list[str]]:
        """One group commit: store `batch` (stamped already), record how `finished` ended;
        the ids stored (new, or a failed one taken again), and the finished ids not stored."""
        ...

    async def renew(self, delivery_ids: Sequence[str], owner: str, until: datetime) -> int:
        """Extend `owner`'s leases of pending deliveries to `until`; how many it still holds."""
        ...

    async def claim(self, owner: str, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        """The oldest claimable deliveries, leased to `owner` until `until`; attempts += 1."""
        ...

    async def body(self, delivery_id: str) -> bytes | None:
        """A delivery's body as received; None for an unknown one (or a lost body)."""
        ...

    async def prune(self, cutoff: datetime, now: datetime) -> int:
        """Forget finished deliveries that finished before `cutoff`; how many went."""
        ...
