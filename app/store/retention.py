"""Retention: finished deliveries older than HONK_RETENTION_DAYS go; runs and their events stay."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from app.store.store import Store

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between two prunings


async def keep_pruning(store: Store, days: float, *, every: float = PRUNE_EVERY) -> None:
    """Prune now and then, forever (cancel to stop); a failure waits for the next round."""
    while True:
        try:
            removed = await store.inbox.prune(timedelta(days=days))
            if removed:
                log.info(
                    "retention: removed %d deliveries finished over %g days ago", removed, days
                )
        except Exception:
            log.exception("retention: could not prune deliveries")
        await asyncio.sleep(every)
