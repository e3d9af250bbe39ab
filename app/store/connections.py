"""Slack users' GitHub connections: one row each, the tokens as an opaque (encrypted) blob.

The store keeps what app/github/connections.py hands it and never looks inside `secret`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update

from app.store.database import Part, shielded, utcnow
from app.store.tables import github_connections


@dataclass(frozen=True)
class StoredConnection:
    slack_user: str  # "<team>:<user>"
    github_login: str
    github_id: int | None
    secret: bytes  # the tokens, encrypted by their owner
    connected_at: datetime
    updated_at: datetime


class Connections(Part):
    """`store.connections`: put, read, swap (compare-and-set on refresh) and forget connections."""

    @shielded
    async def put(
        self, slack_user: str, *, github_login: str, github_id: int | None, secret: bytes
    ) -> None:
        now = utcnow()
        values = {"github_login": github_login, "github_id": github_id, "secret": secret}
        statement = self.db.insert(github_connections).values(
            slack_user=slack_user, connected_at=now, updated_at=now, **values
        )
        statement = statement.on_conflict_do_update(
            index_elements=[github_connections.c.slack_user],
            set_={**values, "connected_at": now, "updated_at": now},
        )
        async with self.db.begin() as conn:
            await conn.execute(statement)

    @shielded
    async def get(self, slack_user: str) -> StoredConnection | None:
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    select(github_connections).where(github_connections.c.slack_user == slack_user)
                )
            ).first()
        return None if row is None else StoredConnection(**dict(row._mapping))

    @shielded
    async def swap_secret(self, slack_user: str, old: bytes, new: bytes) -> bool:
        """Replace the secret only if it is still `old` (two processes refreshing at once:
        the refresh token is single-use, so only one of them may keep its answer)."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                update(github_connections)
                .where(
                    github_connections.c.slack_user == slack_user,
                    github_connections.c.secret == old,
                )
                .values(secret=new, updated_at=utcnow())
            )
        return result.rowcount == 1

    @shielded
    async def delete(self, slack_user: str) -> bool:
        async with self.db.begin() as conn:
            result = await conn.execute(
                github_connections.delete().where(github_connections.c.slack_user == slack_user)
            )
        return result.rowcount == 1

    @shielded
    async def delete_all_of(
        self, *, github_id: int | None = None, github_login: str | None = None
    ) -> int:
        """Forget every Slack user connected to that GitHub account; how many."""
        wanted = []
        if github_id is not None:
            wanted.append(github_connections.c.github_id == github_id)
        if github_login:
            wanted.append(func.lower(github_connections.c.github_login) == github_login.lower())
        if not wanted:
            return 0
        async with self.db.begin() as conn:
            result = await conn.execute(github_connections.delete().where(or_(*wanted)))
        return int(result.rowcount or 0)
