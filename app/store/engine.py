"""The database engine (SQLite tuned for several processes, or PostgreSQL) and migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# WAL lets readers and one writer share the file across processes; busy_timeout makes a
# writer wait for the lock instead of failing at once.
SQLITE_PRAGMAS = (
    "busy_timeout=30000",
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "temp_store=MEMORY",  # statement journals of multi-row statements: no file each time
)
MIGRATION_LOCK = 7274390001  # any constant: the PostgreSQL advisory lock migrations take


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for sqlite+aiosqlite:///path (its directory created) or postgresql+asyncpg://."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


async def migrate(engine: AsyncEngine) -> None:
    """alembic upgrade head; a no-op on an up-to-date database."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes starting together take turns; SQLite's BEGIN IMMEDIATE does the same.
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await conn.run_sync(_upgrade)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration: what a migrated database's alembic_version says."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection  # picked up by migrations/env.py
    command.upgrade(config, "head")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, decides when transactions begin (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: every transaction's reads and writes then happen under
    # one lock, so check-then-write steps (claiming, the one-active-run rule) are race-free
    # across processes, and no transaction fails upgrading from a stale read snapshot.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
