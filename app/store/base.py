"""What every part of the store shares: the engine, the error, the clock, dialect-aware INSERTs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.store.sqlite_lane import SqliteLane


class StoreError(RuntimeError):
    """A call the store cannot honour: an unknown run or delivery, a field that is not there."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """The engine and the operations still in flight; the store's parts build on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._inflight: set[asyncio.Future[Any]] = set()
        # SQLite has one writer, and every transaction here begins IMMEDIATE (see engine.py):
        # taking turns in this process keeps its connections out of SQLite's busy handler,
        # which sleeps up to 100 ms between tries. PostgreSQL locks rows, not the database.
        self._sqlite_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        database = engine.url.database
        file_backed = self._sqlite_turn is not None and database not in (None, "", ":memory:")
        self._lane = SqliteLane(str(database)) if file_backed else None

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """SQLite's turn in this process (nothing to wait for on PostgreSQL)."""
        if self._sqlite_turn is None:
            yield
            return
        async with self._sqlite_turn:
            yield

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: engine.begin(), taking SQLite's turn in this process first."""
        if self._sqlite_turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._sqlite_turn, self.engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        """INSERT with ON CONFLICT support, in the engine's dialect."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)
