"""Small key-value facts in namespaces (see app/store/kv.py for their typed, owned access)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.store.base import StoreBase, utcnow
from app.store.tables import kv


class Facts(StoreBase):
    """get / put / put-if-absent / delete / prune by namespace and key."""

    async def get_kv(self, namespace: str, key: str) -> Any | None:
        async with self._begin() as conn:
            return await conn.scalar(
                select(kv.c.value).where(kv.c.namespace == namespace, kv.c.key == key)
            )

    async def put_kv(self, namespace: str, key: str, value: Any) -> None:
        now = utcnow()
        statement = self._insert(kv).values(
            namespace=namespace, key=key, value=value, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[kv.c.namespace, kv.c.key], set_={"value": value, "updated_at": now}
        )
        async with self._begin() as conn:
            await conn.execute(statement)

    async def put_kv_if_absent(self, namespace: str, key: str, value: Any) -> bool:
        statement = self._insert(kv).values(
            namespace=namespace, key=key, value=value, updated_at=utcnow()
        )
        async with self._begin() as conn:
            result = await conn.execute(statement.on_conflict_do_nothing())
        return result.rowcount == 1

    async def prune_kv(self, namespace: str, older_than: timedelta) -> int:
        """Forget the namespace's facts not written for `older_than`; how many went."""
        async with self._begin() as conn:
            result = await conn.execute(
                kv.delete().where(
                    kv.c.namespace == namespace, kv.c.updated_at < utcnow() - older_than
                )
            )
        return int(result.rowcount or 0)

    async def delete_kv(self, namespace: str, key: str) -> None:
        async with self._begin() as conn:
            await conn.execute(kv.delete().where(kv.c.namespace == namespace, kv.c.key == key))
