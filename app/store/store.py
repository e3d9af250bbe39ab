"""Store: the webhook inbox, the runs queue, kv facts, run events and GitHub connections."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import text

from app.store.connections import Connections
from app.store.engine import create_engine
from app.store.engine import migrate as migrate_schema
from app.store.events import RunEventLog
from app.store.facts import Facts
from app.store.inbox import Inbox
from app.store.queue import RunQueue
from app.store.stats import RunStats

T = TypeVar("T")


class Store(Inbox, RunQueue, Facts, RunStats, RunEventLog, Connections):
    """One database shared by the web and worker processes; each method is one short transaction."""

    @classmethod
    async def open(cls, database_url: str, *, migrate: bool = True) -> Store:
        """Connect, and bring the schema up to date unless migrate=False."""
        store = cls(create_engine(database_url))
        if migrate:
            try:
                await migrate_schema(store.engine)
            except BaseException:
                await store.close()
                raise
        return store

    async def close(self) -> None:
        # Deliveries waiting for their group commit, and operations whose callers were
        # cancelled (see _uncancellable), still finish first.
        await self.close_inbox()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._lane is not None:
            await self._lane.close()
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True


def _uncancellable(
    method: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Let a store operation finish even when its caller is cancelled (a worker stopping).

    A transaction cut off half-way leaves its pooled connection inside BEGIN (on SQLite a
    held write lock every other connection then waits on); shielded, it commits or rolls
    back and gives the connection back, while the caller sees its cancellation at once.
    """

    @functools.wraps(method)
    async def shielded(self: Store, *args: Any, **kwargs: Any) -> T:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await asyncio.shield(task)

    return shielded


# The group commit's writer task finishes on its own: a record needs no shield of its own.
_SHIELDED_ALREADY = ("close", "open", "close_inbox", "record_delivery", "record_claimed")
for _part in Store.__mro__[::-1]:
    for _name, _method in list(vars(_part).items()):
        public = not _name.startswith("_") and _name not in _SHIELDED_ALREADY
        if inspect.iscoroutinefunction(_method) and public:
            setattr(Store, _name, _uncancellable(_method))
