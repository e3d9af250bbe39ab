"""The inbox's hot path on SQLite: a whole batch in one trip to a thread of its own.

SQLAlchemy's async adapter for SQLite crosses to its worker thread for every step of a
statement (begin, cursor, execute, fetch, close, commit), and under load each crossing waits
for a busy event loop. Here recording, claiming and finishing a batch of deliveries is one
crossing and one transaction, with the same SQL rules as the portable path in inbox.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from app.store.engine import SQLITE_PRAGMAS

T = TypeVar("T")
# How SQLAlchemy writes UTCDateTime into SQLite: comparisons between them are textual.
STAMP = "%Y-%m-%d %H:%M:%S.%f"
Claimed = tuple[str, str, str | None, bytes | None, str | None, int, str]


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(STAMP)


def unstamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class SqliteLane:
    """One connection in one thread; `run(fn, ...)` calls fn(connection, ...) in a transaction."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="honk-sqlite-lane")
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn, args)

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            for pragma in SQLITE_PRAGMAS:
                self._connection.execute(f"PRAGMA {pragma}")
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = fn(connection, *args)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=False)


def insert(connection: sqlite3.Connection, batch: Sequence[Any]) -> set[str]:
    """Store each new delivery (see inbox._row); a failed one is taken again (redelivery)."""
    marks = ",".join("?" * len(batch))
    known = dict(
        connection.execute(
            f"SELECT id, status FROM deliveries WHERE id IN ({marks})", [n.id for n in batch]
        ).fetchall()
    )
    fresh = [new for new in batch if new.id not in known]
    again = [new for new in batch if known.get(new.id) == "failed"]
    rows = [
        (
            new.id,
            new.event,
            new.action,
            1 if new.lease else 0,
            new.lease[0] if new.lease else None,
            stamp(new.lease_until) if new.lease_until else None,
            stamp(new.received_at),
        )
        for new in fresh
    ]
    connection.executemany(
        "INSERT INTO deliveries (id, event, action, status, attempts, lease_owner, "
        "lease_expires_at, received_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
        rows,
    )
    for new in again:
        connection.execute(
            "UPDATE deliveries SET status = 'pending', attempts = ?, error = NULL, "
            "lease_owner = ?, lease_expires_at = ?, finished_at = NULL, payload = NULL, "
            "received_at = ? WHERE id = ?",
            (
                1 if new.lease else 0,
                new.lease[0] if new.lease else None,
                stamp(new.lease_until) if new.lease_until else None,
                stamp(new.received_at),
                new.id,
            ),
        )
    stored = fresh + again
    connection.executemany(
        "INSERT OR REPLACE INTO delivery_bodies (delivery_id, body) VALUES (?, ?)",
        [(new.id, new.body) for new in stored],
    )
    return {new.id for new in stored}


def claim(
    connection: sqlite3.Connection, owner: str, now: str, until: str, limit: int
) -> list[Claimed]:
    rows: list[Claimed] = connection.execute(
        "SELECT id, event, action, body, payload, attempts, received_at FROM deliveries "
        "LEFT JOIN delivery_bodies ON delivery_id = id "
        "WHERE status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
        "ORDER BY received_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    if rows:
        marks = ",".join("?" * len(rows))
        connection.execute(
            "UPDATE deliveries SET attempts = attempts + 1, lease_owner = ?, "
            f"lease_expires_at = ? WHERE id IN ({marks})",
            (owner, until, *(row[0] for row in rows)),
        )
    return rows


def finish(
    connection: sqlite3.Connection,
    finished: Sequence[Any],
    now: str,
    ending: Callable[[Any, int], dict[str, Any]],
) -> list[str]:
    """Mark the ok ones done, the others as `ending(one, attempts)` says; ids not found."""
    ids = [one.id for one in finished]
    marks = ",".join("?" * len(ids))
    found = connection.execute(
        f"SELECT id, attempts FROM deliveries WHERE id IN ({marks})", tuple(ids)
    ).fetchall()
    attempts = {row[0]: int(row[1]) for row in found}
    missing = [i for i in ids if i not in attempts]
    if missing:
        return missing
    done = [one.id for one in finished if one.ok]
    if done:
        marks = ",".join("?" * len(done))
        connection.execute(
            "UPDATE deliveries SET status = 'done', error = NULL, lease_owner = NULL, "
            f"lease_expires_at = NULL, finished_at = ? WHERE id IN ({marks})",
            (now, *done),
        )
    for one in finished:
        if one.ok:
            continue
        values = {
            k: stamp(v) if isinstance(v, datetime) else v
            for k, v in ending(one, attempts[one.id]).items()
        }
        columns = ", ".join(f"{name} = ?" for name in values)
        connection.execute(
            f"UPDATE deliveries SET {columns} WHERE id = ?", (*values.values(), one.id)
        )
    return []


def renew(connection: sqlite3.Connection, ids: Sequence[str], owner: str, until: str) -> int:
    marks = ",".join("?" * len(ids))
    renewed = connection.execute(
        "UPDATE deliveries SET lease_expires_at = ? WHERE lease_owner = ? "
        f"AND status = 'pending' AND id IN ({marks})",
        (until, owner, *ids),
    )
    return int(renewed.rowcount)
