"""The burndown's numbers and drawing (pure): what it counts as settled, whose transitions
it reads, and that its markup names itself and its axes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.fleet_models import FleetRepoState, FleetTransition
from app.web.pages.burndown import Point, series, svg

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
P, Q, R, F, M, S = (
    FleetRepoState.PLANNED,
    FleetRepoState.QUEUED,
    FleetRepoState.RUNNING,
    FleetRepoState.FAILED,
    FleetRepoState.MERGED,
    FleetRepoState.SKIPPED,
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_the_series_falls_as_repositories_settle_and_rises_when_one_is_retried() -> None:
    changes = [
        FleetTransition("a/one", P, at(0)),
        FleetTransition("a/two", P, at(0)),
        FleetTransition("a/three", S, at(0)),  # skipped at the start: settled at once
        FleetTransition("a/one", Q, at(1)),
        FleetTransition("a/one", R, at(2)),
        FleetTransition("a/one", F, at(5)),
        FleetTransition("a/hidden", F, at(6)),  # not the reader's: left out
        FleetTransition("a/two", M, at(7)),
        FleetTransition("a/one", P, at(8)),  # retried
    ]
    points = series(changes, {"a/one", "a/two", "a/three"}, now=at(10))
    assert points == [
        Point(at(0), 2),
        Point(at(5), 1),
        Point(at(7), 0),
        Point(at(8), 1),
        Point(at(10), 1),
    ]
    assert series([], {"a/one"}, now=at(3)) == [Point(at(3), 1)]


def test_the_drawing_is_a_labelled_image_with_its_axes() -> None:
    points = [Point(at(0), 40), Point(at(90), 12), Point(at(180), 0)]
    drawn = str(svg(points, 40))
    assert drawn.startswith("<svg ") and drawn.endswith("</svg>")
    assert 'role="img"' in drawn and 'aria-labelledby="burndown-title burndown-desc"' in drawn
    assert '<desc id="burndown-desc">40 repositories not yet settled at 09:00, ' in drawn
    assert "0 repositories at 12:00, of 40 repositories.</desc>" in drawn
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', drawn)
    assert ticks == ["0", "40", "20", "09:00", "12:00"]
    assert "time (UTC)" in drawn and "not settled" in drawn
    assert "style=" not in drawn and "<script" not in drawn  # the page's CSP allows neither
    one = str(svg([Point(at(0), 1)], 1))  # a single moment still draws
    assert "NaN" not in one and "inf" not in one
