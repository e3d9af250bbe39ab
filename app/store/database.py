"""The one database the store's parts share, and what each part needs from it.

`Database` holds the engine, SQLite's turn and lane, and the operations still in flight;
every part (`Part`) is a view of it. `@shielded` on a part's method lets the operation
finish even when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import HonkError
from app.store.sqlite_lane import SqliteLane

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(HonkError, RuntimeError):
    """A call the store cannot honour: an unknown run or delivery, a field that is not there."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """The engine, SQLite's turn (and on a SQLite file its lane), the operations in flight."""

    def __init__(self, engine: AsyncEngine, *, lane: bool = True) -> None:
        """`lane=False` keeps a SQLite file on the portable (SQLAlchemy) path throughout."""
        self.engine = engine
        self.inflight: set[asyncio.Future[Any]] = set()
        # SQLite has one writer, and every transaction here begins IMMEDIATE (see engine.py):
        # taking turns in this process keeps its connections out of SQLite's busy handler,
        # which sleeps up to 100 ms between tries. PostgreSQL locks rows, not the database.
        self._sqlite_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        database = engine.url.database
        file_backed = self._sqlite_turn is not None and database not in (None, "", ":memory:")
        self.lane = SqliteLane(str(database)) if file_backed and lane else None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """SQLite's turn in this process (nothing to wait for on PostgreSQL)."""
        if self._sqlite_turn is None:
            yield
            return
        async with self._sqlite_turn:
            yield

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: engine.begin(), taking SQLite's turn in this process first."""
        if self._sqlite_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._sqlite_turn, self.engine.begin() as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        """INSERT with ON CONFLICT support, in the engine's dialect."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def track(self, task: asyncio.Future[Any]) -> None:
        """Keep `task` until it is done: close() waits for it."""
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def close(self) -> None:
        """Let the operations whose callers were cancelled finish, then let go of it all."""
        await asyncio.gather(*self.inflight, return_exceptions=True)
        if self.lane is not None:
            await self.lane.close()
        await self.engine.dispose()


class Part:
    """One part of the store (the inbox, the runs, ...): a view of the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db


PartT = TypeVar("PartT", bound=Part)


def shielded(
    method: Callable[Concatenate[PartT, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PartT, P], Coroutine[Any, Any, T]]:
    """Let a store operation finish even when its caller is cancelled (a worker stopping).

    A transaction cut off half-way leaves its pooled connection inside BEGIN (on SQLite a
    held write lock every other connection then waits on); shielded, it commits or rolls
    back and gives the connection back, while the caller sees its cancellation at once.
    The operation is tracked by the database, whose close() waits for it.
    """

    @functools.wraps(method)
    async def run_shielded(self: PartT, /, *args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self.db.track(task)
        return await asyncio.shield(task)

    return run_shielded
