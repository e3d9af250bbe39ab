"""Typed key-value namespaces over `store.kv`: each belongs to one module, the only one that
builds its keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from app.store.store import Store

T = TypeVar("T")

_NAMES: dict[str, str] = {}  # namespace -> the module that declared it


def _same(value: Any) -> Any:
    return value


class Namespace(Generic[T]):
    """One namespace of the store's kv table; values go through `encode`/`decode` (JSON).

    Declared once, at module level, by its owner; a second declaration of the same name is
    refused, so two modules can never share a namespace by accident.
    """

    def __init__(
        self,
        name: str,
        *,
        owner: str,
        encode: Callable[[T], Any] = _same,
        decode: Callable[[Any], T | None] = _same,
    ) -> None:
        if _NAMES.get(name, owner) != owner:
            raise ValueError(f"kv namespace {name!r} already belongs to {_NAMES[name]}")
        _NAMES[name] = owner
        self.name = name
        self._encode = encode
        self._decode = decode

    async def get(self, store: Store, key: str) -> T | None:
        value = await store.kv.get(self.name, key)
        return None if value is None else self._decode(value)

    async def put(self, store: Store, key: str, value: T) -> None:
        await store.kv.put(self.name, key, self._encode(value))

    async def put_if_absent(self, store: Store, key: str, value: T) -> bool:
        return await store.kv.put_if_absent(self.name, key, self._encode(value))

    async def delete(self, store: Store, key: str) -> None:
        await store.kv.delete(self.name, key)

    async def prune(self, store: Store, older_than: timedelta) -> int:
        return await store.kv.prune(self.name, older_than)


def declared() -> dict[str, str]:
    """Every namespace declared so far, with its owning module."""
    return dict(_NAMES)


def mapping(value: Any) -> dict[str, Any] | None:
    """A stored JSON object, or None for anything else (a value of an older shape)."""
    return dict(value) if isinstance(value, dict) else None
