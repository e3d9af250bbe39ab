"""The inbox's hot path on SQLite: a whole batch in one trip to a thread of its own.

SQLAlchemy's async adapter for SQLite crosses to its worker thread for every step of a
statement (begin, cursor, execute, fetch, close, commit), and under load each crossing waits
for a busy event loop. Here recording, claiming and finishing a batch of deliveries is one
crossing and one transaction, with the same SQL rules as the portable path
(inbox_portable.py).
Bodies lie in files beside the database (body_log.py), appended before their rows commit.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from app.store.body_log import BodyLog, directory_for
from app.store.engine import SQLITE_PRAGMAS
from app.store.group_commit import NewDelivery, claimed_by_subject, replayed

T = TypeVar("T")
_yield_cpu: Callable[[], None] = getattr(os, "sched_yield", lambda: None)  # not on Windows
# id, event, action, body, attempts, received_at
Claimed = tuple[str, str, str | None, bytes, int, str]


def stamp(moment: datetime) -> str:
    """As SQLAlchemy writes UTCDateTime into SQLite: comparisons between them are textual."""
    # isoformat is several times faster than strftime, and writes the same text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def unstamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class SqliteLane:
    """One connection in one thread; `run(fn, ...)` calls fn(connection, ...) in a transaction."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="honk-sqlite-lane")
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self.bodies = BodyLog(directory_for(path))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._transaction, fn, args)
        # The lane's thread has just been woken, but a busy event loop holds the GIL and the
        # CPU: giving both up for a moment starts the transaction now, not a time slice later
        # (paired bench rounds: about 5% more deliveries/s and 9 us less CPU per delivery).
        _yield_cpu()
        return await future

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
            self.bodies.close()
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=False)


def write(
    connection: sqlite3.Connection,
    bodies: BodyLog,
    batch: Sequence[Any],
    finished: Sequence[Any],
    now: str,
    ending: Callable[[Any, int], dict[str, Any]],
) -> tuple[set[str], list[str]]:
    """A group commit (see group_commit.py): insert `batch`, record how `finished` ended."""
    stored = insert(connection, bodies, batch, now) if batch else set()
    missing = finish(connection, finished, now, ending) if finished else []
    return stored, missing


# Every step of a statement lets go of the GIL and takes it back, waiting for the event loop
# while it is busy: a batch is a few multi-row statements, not a statement per row.
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CHUNK = 200  # rows per statement: SQLite binds at most 32766 values in one


def insert(
    connection: sqlite3.Connection, bodies: BodyLog, batch: Sequence[Any], now: str
) -> set[str]:
    """Store each new delivery (see inbox_portable.row); a failed one is taken again."""
    hold_back(connection, batch, now)
    ids = [new.id for new in batch]
    known = dict(
        connection.execute(
            f"SELECT id, status FROM deliveries WHERE id IN ({_marks(ids)})", ids
        ).fetchall()
    )
    digests = [new.digest for new in batch if new.digest is not None]
    held = dict(
        connection.execute(
            f"SELECT body_digest, id FROM deliveries WHERE body_digest IN ({_marks(digests)})",
            digests,
        ).fetchall()
        if digests
        else ()
    )
    replays = replayed(batch, held)
    fresh = [new for new in batch if new.id not in known and new.id not in replays]
    again = [new for new in batch if known.get(new.id) == "failed" and new.id not in replays]
    stored = fresh + again
    if not stored:
        return set()
    where = bodies.append([new.body for new in stored])
    places = {new.id: place for new, place in zip(stored, where, strict=True)}
    stamped = _stamper()
    for part in _chunks(fresh):
        values: list[Any] = []
        for new in part:
            received = stamped(new.received_at)
            values += (new.id, new.event, new.action, *_status(new, received),
                       1 if new.lease else 0, new.lease[0] if new.lease else None,
                       stamped(new.lease_until) if new.lease_until else None,
                       received, *places[new.id], len(new.body), new.subject,
                       new.digest)  # fmt: skip
        connection.execute(
            "INSERT INTO deliveries (id, event, action, status, finished_at, attempts, "
            "lease_owner, lease_expires_at, received_at, body_file, body_offset, body_length, "
            "subject, body_digest) "
            f"VALUES {','.join([_ROW] * len(part))}",
            values,
        )
    for new in again:
        received = stamped(new.received_at)
        connection.execute(
            "UPDATE deliveries SET status = ?, finished_at = ?, attempts = ?, error = NULL, "
            "lease_owner = ?, lease_expires_at = ?, payload = NULL, "
            "received_at = ?, body_file = ?, body_offset = ?, body_length = ?, subject = ?, "
            "body_digest = ? WHERE id = ?",
            (
                *_status(new, received),
                1 if new.lease else 0,
                new.lease[0] if new.lease else None,
                stamped(new.lease_until) if new.lease_until else None,
                received,
                *places[new.id],
                len(new.body),
                new.subject,
                new.digest,
                new.id,
            ),
        )
        connection.execute("DELETE FROM delivery_bodies WHERE delivery_id = ?", (new.id,))
    return {new.id for new in stored}


def _status(new: Any, received: str) -> tuple[str, str | None]:
    """status and finished_at of a new row: pending, or done as it arrives (see inbox)."""
    return ("done", received) if new.done else ("pending", None)


def _not_leased_to(row: str = "") -> str:
    """SQL: the row is not held by the owner (the first ?) under a live lease (? = now)."""
    return f"({row}lease_owner IS NULL OR {row}lease_owner != ? OR {row}lease_expires_at < ?)"


def hold_back(connection: sqlite3.Connection, batch: Sequence[NewDelivery], now: str) -> None:
    """Leave unclaimed each new delivery whose subject has an earlier pending delivery that is
    not its owner's: that one is handled first, by whoever holds it. (One writer at a time:
    nothing is stored between this look and the insert.)"""
    for owner, by_subject in claimed_by_subject(batch).items():
        subjects = sorted(by_subject)
        taken = connection.execute(
            "SELECT DISTINCT subject FROM deliveries WHERE status = 'pending' AND "
            f"subject IN ({_marks(subjects)}) AND {_not_leased_to()}",
            (*subjects, owner, now),
        )
        for (subject,) in taken:
            for new in by_subject[subject]:
                new.hold_back()


def claim(
    connection: sqlite3.Connection,
    bodies: BodyLog,
    owner: str,
    now: str,
    until: str,
    limit: int,
) -> list[Claimed]:
    """The oldest claimable deliveries, leased to `owner`; one whose body is gone fails."""
    rows = connection.execute(
        "SELECT d.id, event, action, body, payload, body_file, body_offset, body_length, "
        "attempts, received_at FROM deliveries AS d "
        "LEFT JOIN delivery_bodies ON delivery_id = d.id "
        "WHERE status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
        # The oldest pending delivery of a subject only, unless the earlier are the owner's.
        "AND (subject IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries AS e "
        "WHERE e.subject = d.subject AND e.status = 'pending' AND "
        "(e.received_at < d.received_at OR (e.received_at = d.received_at AND e.id < d.id)) "
        f"AND {_not_leased_to('e.')})) "
        "ORDER BY received_at, d.id LIMIT ?",
        (now, owner, now, limit),
    ).fetchall()
    claimed: list[Claimed] = []
    for delivery_id, event, action, stored, payload, file, offset, length, tries, at in rows:
        body = _body_of(bodies, stored, payload, file, offset, length)
        if body is None:
            connection.execute(
                "UPDATE deliveries SET status = 'failed', error = ?, finished_at = ?, "
                "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                (f"its body is gone: {file} is missing or cut short", now, delivery_id),
            )
            continue
        claimed.append((delivery_id, event, action, body, tries, at))
    if claimed:
        ids = [row[0] for row in claimed]
        connection.execute(
            "UPDATE deliveries SET attempts = attempts + 1, lease_owner = ?, "
            f"lease_expires_at = ? WHERE id IN ({_marks(ids)})",
            (owner, until, *ids),
        )
    return claimed


def body(connection: sqlite3.Connection, bodies: BodyLog, delivery_id: str) -> bytes | None:
    """One delivery's body as received (None: no such delivery, or its body is gone)."""
    row = connection.execute(
        "SELECT body, payload, body_file, body_offset, body_length FROM deliveries "
        "LEFT JOIN delivery_bodies ON delivery_id = id WHERE id = ?",
        (delivery_id,),
    ).fetchone()
    return None if row is None else _body_of(bodies, *row)


def _body_of(
    bodies: BodyLog,
    stored: bytes | None,
    payload: str | None,
    file: str | None,
    offset: int | None,
    length: int | None,
) -> bytes | None:
    """A row's body: from its file (None if that is gone), its delivery_bodies row, or, from
    before bodies were kept as received (migration 0004), its JSON payload."""
    if file is not None:
        return bodies.read(file, offset or 0, length or 0)
    return bytes(stored) if stored is not None else (payload or "{}").encode()


def prune(connection: sqlite3.Connection, bodies: BodyLog, cutoff: str, today: date) -> int:
    """Forget deliveries finished before `cutoff`; then the body files no row refers to.

    Only files of days before yesterday are looked at: a process still appending to today's
    file (or, just after midnight, yesterday's) never has it taken away.
    """
    removed = connection.execute(
        "DELETE FROM deliveries WHERE status != 'pending' AND finished_at < ?", (cutoff,)
    ).rowcount
    unused = [
        name
        for name in bodies.old_files(before=today - timedelta(days=1))
        if connection.execute(
            "SELECT 1 FROM deliveries WHERE body_file = ? LIMIT 1", (name,)
        ).fetchone()
        is None
    ]
    bodies.remove(unused)
    return int(removed)


def finish(
    connection: sqlite3.Connection,
    finished: Sequence[Any],
    now: str,
    ending: Callable[[Any, int], dict[str, Any]],
) -> list[str]:
    """Mark the ok ones done, the others as `ending(one, attempts)` says; the ids not found."""
    done = [one.id for one in finished if one.ok]
    missing: list[str] = []
    for part in _chunks(done):
        changed = connection.execute(
            "UPDATE deliveries SET status = 'done', error = NULL, lease_owner = NULL, "
            f"lease_expires_at = NULL, finished_at = ? WHERE id IN ({_marks(part)})",
            (now, *part),
        ).rowcount
        if changed < len(set(part)):  # rare: look for the ones that are not there
            found = connection.execute(
                f"SELECT id FROM deliveries WHERE id IN ({_marks(part)})", part
            ).fetchall()
            missing += sorted(set(part) - {row[0] for row in found})
    for one in finished:
        if one.ok:
            continue
        row = connection.execute("SELECT attempts FROM deliveries WHERE id = ?", (one.id,))
        attempts = row.fetchone()
        if attempts is None:
            missing.append(one.id)
            continue
        values = {
            k: stamp(v) if isinstance(v, datetime) else v
            for k, v in ending(one, int(attempts[0])).items()
        }
        columns = ", ".join(f"{name} = ?" for name in values)
        connection.execute(
            f"UPDATE deliveries SET {columns} WHERE id = ?", (*values.values(), one.id)
        )
    return missing


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def _stamper() -> Callable[[datetime], str]:
    """stamp(), faster for moments of the same second (a batch's): each second formatted once."""
    seconds: dict[datetime, str] = {}

    def stamped(moment: datetime) -> str:
        whole = moment.replace(microsecond=0)
        head = seconds.get(whole)
        if head is None:
            head = seconds[whole] = stamp(whole)[:-7]  # "YYYY-MM-DD HH:MM:SS"
        return f"{head}.{moment.microsecond:06d}"

    return stamped


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[n : n + _CHUNK] for n in range(0, len(items), _CHUNK)]


def renew(connection: sqlite3.Connection, ids: Sequence[str], owner: str, until: str) -> int:
    renewed = connection.execute(
        "UPDATE deliveries SET lease_expires_at = ? WHERE lease_owner = ? "
        f"AND status = 'pending' AND id IN ({_marks(ids)})",
        (until, owner, *ids),
    )
    return int(renewed.rowcount)
