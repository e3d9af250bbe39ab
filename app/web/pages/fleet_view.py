"""What a fleet's page shows, for one person: its counts, burndown, rows and the steering
forms its state offers (the changing part, fleet_live.html, that the live stream sends again),
and the whole page rendered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from app.fleet.merge import GREEN, MergeReport
from app.fleet.requests import ROLLBACK_REQUESTED, FleetCommand
from app.fleet_models import Fleet, FleetRepo, FleetRepoState, FleetState
from app.web.pages import burndown, render
from app.web.pages.access import ACCESS
from app.web.pages.fleet_access import may_steer
from app.web.signin import Viewer, csrf_token

REFRESH_SECONDS = 15  # without JavaScript an active fleet's page reloads this often
NOTICE = "fleet_notice"  # the session's one-line answer to the last steering form
TITLE_MAX = 120

REPO_LABELS = {
    FleetRepoState.PLANNED: "Planned",
    FleetRepoState.QUEUED: "Queued",
    FleetRepoState.RUNNING: "Working",
    FleetRepoState.PR_OPEN: "PR open",
    FleetRepoState.CI_GREEN: "CI green",
    FleetRepoState.CI_RED: "CI red",
    FleetRepoState.APPROVED: "Approved",
    FleetRepoState.MERGED: "Merged",
    FleetRepoState.CLOSED: "Closed",
    FleetRepoState.VETOED: "Vetoed",
    FleetRepoState.FAILED: "Failed",
    FleetRepoState.SKIPPED: "Skipped",
}
FLEET_LABELS = {
    FleetState.PLANNED: "Planned",
    FleetState.CANARY: "Trying the canary",
    FleetState.WAITING: "Waiting for Continue",
    FleetState.RUNNING: "Running",
    FleetState.PAUSED: "Paused",
    FleetState.STOPPED: "Stopped",
    FleetState.DONE: "Done",
}
# The forms, in the order shown: (command, button, the fleet states that offer it).
COMMAND_BUTTONS: tuple[tuple[FleetCommand, str], ...] = (
    (FleetCommand.CONTINUE, "Continue"),
    (FleetCommand.PAUSE, "Pause"),
    (FleetCommand.RESUME, "Resume"),
    (FleetCommand.RETRY, "Retry failed"),
    (FleetCommand.STOP, "Stop"),
    (FleetCommand.ROLLBACK, "Roll back"),
)
DANGER = frozenset({FleetCommand.STOP, FleetCommand.ROLLBACK})


def counts_of(repos: Sequence[FleetRepo]) -> dict[FleetRepoState, int]:
    """How many of `repos` are in each state (every state named, in the page's order)."""
    counts = dict.fromkeys(FleetRepoState, 0)
    for repo in repos:
        counts[repo.state] += 1
    return counts


def title_of(fleet: Fleet) -> str:
    """The request's first line, short enough for a heading."""
    first = next((line.strip() for line in fleet.request.splitlines() if line.strip()), "")
    first = first or f"Fleet {fleet.id}"
    return first if len(first) <= TITLE_MAX else first[: TITLE_MAX - 1].rstrip() + "…"


def offered(fleet: Fleet, counts: dict[FleetRepoState, int]) -> list[FleetCommand]:
    """The commands the fleet's state allows now (the requests module refuses the rest)."""
    state = fleet.state
    allowed = {
        FleetCommand.CONTINUE: state in (FleetState.PLANNED, FleetState.CANARY, FleetState.WAITING),
        FleetCommand.PAUSE: state.active or state is FleetState.WAITING,
        FleetCommand.RESUME: state is FleetState.PAUSED,
        FleetCommand.RETRY: state is not FleetState.STOPPED
        and any(counts[s] for s in FleetRepoState if s.failed),
        FleetCommand.STOP: not state.ended,
        FleetCommand.ROLLBACK: ROLLBACK_REQUESTED not in fleet.milestones
        and (not state.ended or any(counts[s] for s in FleetRepoState if s.has_pr)),
    }
    return [c for c, _label in COMMAND_BUTTONS if allowed[c]]


def settled(fleet: Fleet, repos: Sequence[FleetRepo]) -> bool:
    """Nothing more happens here without a person: the fleet ended and no PR is open."""
    return fleet.state.ended and not any(
        r.state.has_pr or r.state.in_flight or r.state.waiting for r in repos
    )


async def live_context(
    request: web.Request, viewer: Viewer, fleet: Fleet, shown: Sequence[FleetRepo]
) -> dict[str, Any]:
    """What the changing part of the page shows (fleet_live.html), for this person."""
    services = request.app[ACCESS].services
    counts = counts_of(shown)
    transitions = await services.store.fleets.transitions(fleet.id)
    end = fleet.finished_at if fleet.state.ended and fleet.finished_at else datetime.now(UTC)
    points = burndown.series(transitions, {r.repo for r in shown}, now=end)
    refusal = await may_steer(request, viewer, fleet)
    github = services.settings.github.url
    return {
        "fleet": fleet,
        "fleet_label": FLEET_LABELS[fleet.state],
        "counts": counts,
        "labels": REPO_LABELS,
        "total": len(shown),
        "settled_count": sum(n for s, n in counts.items() if s.settled),
        "green": sum(counts[s] for s in GREEN),
        "chart": burndown.svg(points, len(shown)),
        "rows": [
            {
                "repo": r.repo,
                "url": f"{github}/{r.repo}",
                "state": r.state.value,
                "label": REPO_LABELS[r.state],
                "reason": r.reason,
                "run": f"/runs/{r.run_id}" if r.run_id else None,
                "run_id": r.run_id,
                "pr": r.pr_url,
                "pr_number": r.pr_number,
                "runs": r.runs,
                "cost": f"${r.cost_usd:.2f}" if r.cost_usd else None,
            }
            for r in shown
        ],
        "steer": refusal is None,
        "commands": [
            {"value": c.value, "label": label, "danger": c in DANGER}
            for c, label in COMMAND_BUTTONS
            if c in offered(fleet, counts)
        ],
        "csrf": await csrf_of(request, viewer),
    }


async def csrf_of(request: web.Request, viewer: Viewer) -> str:
    return csrf_token(await get_session(request)) if viewer.via == "session" else ""


async def render_fleet(
    request: web.Request,
    viewer: Viewer,
    fleet: Fleet,
    shown: Sequence[FleetRepo],
    *,
    notice: dict[str, Any] | None = None,
    report: MergeReport | None = None,
) -> web.Response:
    context = await live_context(request, viewer, fleet, shown)
    context |= {
        "viewer": viewer,
        "title": title_of(fleet),
        "notice": notice,
        "report": report,
        "live": not settled(fleet, shown),
        # The selection as written names repositories: shown only to who can read them all.
        "selection": fleet.selection if await _sees_all(request, fleet, shown) else "",
        "refresh": REFRESH_SECONDS,
    }
    return render.html(await asyncio.to_thread(render.page, "fleet.html", **context))


async def _sees_all(request: web.Request, fleet: Fleet, shown: Sequence[FleetRepo]) -> bool:
    every = await request.app[ACCESS].services.store.fleets.repos(fleet.id)
    return len(shown) == len(every)
