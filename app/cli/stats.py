"""`honk stats`: the review's verdicts per repository over a period; veto and recovery rates.

`outcome` counts runs the tests' outcome checks stopped (app/review), apart from `vetoed` (the
checks of the diff or the model judge)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TextIO

from app.config import StoreSettings
from app.models import ReviewVerdict
from app.store import Store

COLUMNS = (
    ReviewVerdict.APPROVED,
    ReviewVerdict.VETOED,
    ReviewVerdict.OUTCOME,
    ReviewVerdict.RECOVERED,
    ReviewVerdict.UNAVAILABLE,
    ReviewVerdict.SKIPPED,
)
EXPLAINED = (
    "vetoed: by the checks of the diff or the model judge; outcome: stopped by what the tests "
    "did (Honk's runs of them before and after the change);\n"
    "veto rate: runs stopped at first (vetoed + outcome + recovered) of those the review "
    "decided (approved + vetoed + outcome + recovered);\nrecovery rate: runs whose second "
    "attempt was approved (recovered) of those stopped at first."
)


async def stats_command(settings: StoreSettings, days: int, out: TextIO) -> int:
    """Print the table for runs created in the last `days` days."""
    since = datetime.now(UTC) - timedelta(days=days)
    store = await Store.open(settings.database_url)
    try:
        counts = await store.stats.review_counts(since)
    finally:
        await store.close()
    out.write(render_stats(counts, days, since))
    return 0


def rates(counts: Counter[str]) -> tuple[float | None, float | None]:
    """(veto rate, recovery rate); None where nothing was there to count."""
    vetoed_first = (
        counts[ReviewVerdict.VETOED]
        + counts[ReviewVerdict.OUTCOME]
        + counts[ReviewVerdict.RECOVERED]
    )
    decided = counts[ReviewVerdict.APPROVED] + vetoed_first
    veto = vetoed_first / decided if decided else None
    recovery = counts[ReviewVerdict.RECOVERED] / vetoed_first if vetoed_first else None
    return veto, recovery


def render_stats(counts: dict[str, Counter[str]], days: int, since: datetime) -> str:
    period = f"last {days} day{'s' if days != 1 else ''} (since {since:%Y-%m-%d %H:%M} UTC)"
    if not counts:
        return f"No reviewed runs in the {period}.\n"
    header = ("repository", "runs", *COLUMNS, "veto rate", "recovery rate")
    rows = [_row(repo, counts[repo]) for repo in sorted(counts)]
    if len(counts) > 1:
        rows.append(_row("all", sum(counts.values(), Counter())))
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = [f"Review verdicts, {period}:", ""]
    for row in (header, *rows):
        cells = [
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join([*lines, "", EXPLAINED, ""])


def _row(name: str, counts: Counter[str]) -> tuple[str, ...]:
    veto, recovery = rates(counts)
    return (
        name,
        str(sum(counts[c] for c in COLUMNS)),
        *(str(counts[c]) for c in COLUMNS),
        _percent(veto),
        _percent(recovery),
    )


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"
