"""What every part of the store shares: the engine, the error, the clock, dialect-aware INSERTs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine


class StoreError(RuntimeError):
    """A call the store cannot honour: an unknown run or delivery, a field that is not there."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """The engine and the operations still in flight; the store's parts build on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._inflight: set[asyncio.Future[Any]] = set()

    def _insert(self, table: Table) -> Any:
        """INSERT with ON CONFLICT support, in the engine's dialect."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)
