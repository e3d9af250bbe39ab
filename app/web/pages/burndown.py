"""A fleet's burndown as inline SVG: how many of its repositories had not yet settled, over
time (pure: transitions in, markup out; no script, no library).

A repository is settled once its run ended, with a PR or without one (`FleetRepoState.settled`):
the line falls as the fleet converges and rises again when failed ones are retried. Every
number and time in the markup is Honk's own; nothing from a person or a model reaches it.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from app.fleet_models import FleetTransition

# The drawing's own units (the viewBox); the page scales it to its width, so text is sized
# for a phone's 390 px: 13 units on 400 read as about 12 px there.
WIDTH, HEIGHT = 400.0, 220.0
LEFT, RIGHT, TOP, BOTTOM = 44.0, 12.0, 14.0, 44.0  # room for the axes' labels
FONT = 13


@dataclass(frozen=True)
class Point:
    at: datetime
    open: int  # repositories not yet settled from `at` on


def series(
    transitions: Sequence[FleetTransition], repos: Collection[str], *, now: datetime
) -> list[Point]:
    """The burndown's steps for `repos` (others' transitions are left out): a point at each
    moment the count changed, and one at `now` to carry the last count to the present."""
    wanted = set(repos)
    settled: dict[str, bool] = {}
    count = len(wanted)  # a repository not yet seen is planned: open from the first moment
    points: list[Point] = []
    for change in transitions:
        if change.repo not in wanted:
            continue
        was, now_settled = settled.get(change.repo, False), change.state.settled
        settled[change.repo] = now_settled
        count += int(was) - int(now_settled)
        if points and points[-1].at == change.at:
            points[-1] = Point(change.at, count)
        elif not points or points[-1].open != count:
            points.append(Point(change.at, count))
    if not points:
        return [Point(now, len(wanted))]
    if now > points[-1].at:
        points.append(Point(now, points[-1].open))
    return points


def svg(points: Sequence[Point], total: int, *, label: str = "Burndown") -> Markup:
    """The step chart of `points` (y from 0 to `total`), with its axes, their labels and an
    accessible title and description."""
    total = max(total, 1)
    start, end = points[0].at, points[-1].at
    span = max((end - start).total_seconds(), 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * (at - start).total_seconds() / span

    def y(count: int) -> float:
        return TOP + plot_h * (1 - count / total)

    path = [f"M{x(points[0].at):.1f},{y(points[0].open):.1f}"]
    for before, point in itertools.pairwise(points):
        path.append(f"H{x(point.at):.1f}")  # the count held until it changed
        if point.open != before.open:
            path.append(f"V{y(point.open):.1f}")
    line = " ".join(path)
    area = f"{line} V{y(0):.1f} H{x(start):.1f} Z"
    first, last = points[0].open, points[-1].open
    description = (
        f"{_repos(first)} not yet settled at {_clock(start, span)}, "
        f"{_repos(last)} at {_clock(end, span)}, of {_repos(total)}."
    )
    middle = total // 2 if total >= 4 else None
    grid = [0, total] + ([middle] if middle else [])
    parts = [
        f'<svg class="burndown" id="burndown" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" '
        'role="img" aria-labelledby="burndown-title burndown-desc" '
        f'font-size="{FONT}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="burndown-title">{escape(label)}: repositories not yet settled over time'
        "</title>",
        f'<desc id="burndown-desc">{escape(description)}</desc>',
    ]
    for count in grid:
        parts.append(
            f'<line class="grid" x1="{LEFT:.1f}" x2="{WIDTH - RIGHT:.1f}" '
            f'y1="{y(count):.1f}" y2="{y(count):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6:.1f}" y="{y(count) + 4:.1f}" '
            f'text-anchor="end">{count}</text>'
        )
    parts += [
        f'<path class="area" d="{area}"/>',
        f'<path class="line" d="{line}" fill="none"/>',
        f'<line class="axis" x1="{LEFT:.1f}" x2="{LEFT:.1f}" y1="{TOP:.1f}" y2="{y(0):.1f}"/>',
        f'<line class="axis" x1="{LEFT:.1f}" x2="{WIDTH - RIGHT:.1f}" '
        f'y1="{y(0):.1f}" y2="{y(0):.1f}"/>',
        f'<text class="tick" x="{LEFT:.1f}" y="{y(0) + 16:.1f}">{_clock(start, span)}</text>',
        f'<text class="tick" x="{WIDTH - RIGHT:.1f}" y="{y(0) + 16:.1f}" text-anchor="end">'
        f"{_clock(end, span)}</text>",
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6:.1f}" '
        'text-anchor="middle">time (UTC)</text>',
        f'<text class="axis-label" transform="translate(12 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">not settled</text>',
        "</svg>",
    ]
    return Markup("".join(parts))  # built above from numbers and escaped text


def _clock(at: datetime, span: float) -> str:
    """A time on the axis: with its date when the chart spans more than a day, with seconds
    when it spans minutes."""
    utc = at.astimezone(UTC)
    if span > 86_400:
        return utc.strftime("%m-%d %H:%M")
    return utc.strftime("%H:%M" if span > 600 else "%H:%M:%S")  # minutes apart, or seconds


def _repos(count: int) -> str:
    return f"{count} repositor{'y' if count == 1 else 'ies'}"
