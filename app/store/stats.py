"""Counts over the runs table for reports (`honk stats`)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select

from app.store.base import StoreBase
from app.store.tables import runs


class RunStats(StoreBase):
    """Read-only counts; one query each."""

    async def review_counts(self, since: datetime) -> dict[str, Counter[str]]:
        """Per repository, how many runs created since `since` had each review verdict."""
        query = (
            select(runs.c.repo, runs.c.review, func.count())
            .where(runs.c.created_at >= since, runs.c.review.is_not(None))
            .group_by(runs.c.repo, runs.c.review)
        )
        counts: dict[str, Counter[str]] = {}
        async with self.engine.begin() as conn:
            for repo, verdict, number in await conn.execute(query):
                counts.setdefault(repo, Counter())[verdict] += int(number)
        return counts
