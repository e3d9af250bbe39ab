"""Which run threads start at a person's own message (a mention, a DM): Honk may not edit those."""

from __future__ import annotations

from app.models import SlackThread
from app.store import Store
from app.store.kv import Namespace

# "<channel>:<ts>" -> True: the thread's root is a person's message; Honk replies, never edits
_USER_ROOTS: Namespace[bool] = Namespace("slack_user_root", owner=__name__)


async def mark_user_root(store: Store, thread: SlackThread) -> None:
    await _USER_ROOTS.put(store, thread.key, True)


async def is_user_root(store: Store, thread: SlackThread) -> bool:
    return bool(await _USER_ROOTS.get(store, thread.key))
