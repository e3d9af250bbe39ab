"""Small key-value facts in namespaces (see app/store/kv.py for their typed, owned access)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.store.database import Part, shielded, utcnow
from app.store.tables import kv


class Facts(Part):
    """`store.kv`: get / put / put-if-absent / delete / prune by namespace and key."""

    @shielded
    async def get(self, namespace: str, key: str) -> Any | None:
        async with self.db.begin() as conn:
            return await conn.scalar(
                select(kv.c.value).where(kv.c.namespace == namespace, kv.c.key == key)
            )

    @shielded
    async def put(self, namespace: str, key: str, value: Any) -> None:
        now = utcnow()
        statement = self.db.insert(kv).values(
            namespace=namespace, key=key, value=value, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[kv.c.namespace, kv.c.key], set_={"value": value, "updated_at": now}
        )
        async with self.db.begin() as conn:
            await conn.execute(statement)

    @shielded
    async def put_if_absent(self, namespace: str, key: str, value: Any) -> bool:
        statement = self.db.insert(kv).values(
            namespace=namespace, key=key, value=value, updated_at=utcnow()
        )
        async with self.db.begin() as conn:
            result = await conn.execute(statement.on_conflict_do_nothing())
        return result.rowcount == 1

    @shielded
    async def prune(self, namespace: str, older_than: timedelta) -> int:
        """Forget the namespace's facts not written for `older_than`; how many went."""
        async with self.db.begin() as conn:
            result = await conn.execute(
                kv.delete().where(
                    kv.c.namespace == namespace, kv.c.updated_at < utcnow() - older_than
                )
            )
        return int(result.rowcount or 0)

    @shielded
    async def delete(self, namespace: str, key: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(kv.delete().where(kv.c.namespace == namespace, kv.c.key == key))
