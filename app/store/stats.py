"""Counts over the runs table for reports (`honk stats`)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select

from app.store.database import Part, shielded
from app.store.tables import runs


class RunStats(Part):
    """`store.stats`: read-only counts; one query each."""

    @shielded
    async def review_counts(self, since: datetime) -> dict[str, Counter[str]]:
        """Per repository, how many runs created since `since` had each review verdict."""
        query = (
            select(runs.c.repo, runs.c.review, func.count())
            .where(runs.c.created_at >= since, runs.c.review.is_not(None))
            .group_by(runs.c.repo, runs.c.review)
        )
        counts: dict[str, Counter[str]] = {}
        async with self.db.engine.begin() as conn:
            for repo, verdict, number in await conn.execute(query):
                counts.setdefault(repo, Counter())[verdict] += int(number)
        return counts

    @shielded
    async def runs_by_state(self) -> dict[str, int]:
        """How many runs there are in each state."""
        async with self.db.begin() as conn:
            rows = await conn.execute(select(runs.c.state, func.count()).group_by(runs.c.state))
            return {str(state): int(count) for state, count in rows}
