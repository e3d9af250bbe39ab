"""Alembic environment: runs on the connection Store.open hands over, or on sqlalchemy.url."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.store.tables import metadata


def run_on(connection: Connection) -> None:
    # Batch mode lets later revisions alter SQLite tables (which has little ALTER TABLE).
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
else:  # the alembic command line, e.g. `alembic revision --autogenerate`
    asyncio.run(run_from_url(context.config.get_main_option("sqlalchemy.url") or ""))
