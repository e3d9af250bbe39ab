"""Store: the webhook inbox, the runs queue, kv facts, run events, GitHub connections, fleets.

A composition over one `Database`: `store.inbox`, `store.runs`, `store.kv`, `store.events`,
`store.connections`, `store.stats`, `store.fleets`, each a part of its own; opening, closing
and pinging are the whole store's.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.connections import Connections
from app.store.database import Database, Part, shielded
from app.store.engine import create_engine
from app.store.engine import migrate as migrate_schema
from app.store.events import RunEventLog
from app.store.facts import Facts
from app.store.fleets import Fleets
from app.store.inbox import Inbox
from app.store.queue import RunQueue
from app.store.stats import RunStats


class Store(Part):
    """One database shared by the web and worker processes; each method is one short transaction."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.inbox = Inbox(db)
        self.runs = RunQueue(db)
        self.kv = Facts(db)
        self.events = RunEventLog(db)
        self.connections = Connections(db)
        self.stats = RunStats(db)
        self.fleets = Fleets(db)

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine

    @classmethod
    async def open(cls, database_url: str, *, migrate: bool = True, lane: bool = True) -> Store:
        """Connect, and bring the schema up to date unless migrate=False.

        lane=False keeps a SQLite file's inbox on the portable path (the contract tests).
        """
        store = cls(Database(create_engine(database_url), lane=lane))
        if migrate:
            try:
                await migrate_schema(store.engine)
            except BaseException:
                await store.close()
                raise
        return store

    async def close(self) -> None:
        # Deliveries waiting for their group commit, and operations whose callers were
        # cancelled (see database.shielded), still finish first.
        await self.inbox.close()
        await self.db.close()

    @shielded
    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True
