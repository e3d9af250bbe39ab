"""GET /fleets and /fleets/<id> (live over Server-Sent Events), its JSON, and steering it.

The run pages' rules, repository by repository: a person signs in with GitHub, and sees of a
fleet only the repositories their own token can read (access.py's cached check); a fleet
with none they can read is the same 404 as no fleet. Counts, the burndown and the rows are
of those repositories only. Steering (Continue, Pause, Resume, Stop, Retry failed, Roll back)
is for the requester or a person with write access to the fleet issue's repository, each
form carrying the session's CSRF token; Merge all green merges as the person, with their own
token (app/fleet/merge.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response
from cachetools import TTLCache

from app.fleet.merge import GREEN, MergeReport, merge_green
from app.fleet.requests import ROLLBACK_REQUESTED, FleetCommand, FleetError, command
from app.fleet_models import Fleet, FleetRepo, FleetRepoState, FleetState
from app.log import describe_error
from app.run_requests import may_act
from app.services import Services
from app.web.pages import burndown, render
from app.web.pages.access import ACCESS, Access, NotSignedIn, viewer_or_sign_in
from app.web.pages.run_page import STREAMS
from app.web.signin import CSRF_FIELD, Viewer, csrf_ok, csrf_token, sign_in_url

log = logging.getLogger(__name__)

LIVE_POLL = 1.0  # seconds between looks at the fleet's version (any process may change it)
REFRESH_SECONDS = 15  # without JavaScript an active fleet's page reloads this often
READ_CHECKS = 16  # "can this person read it" asked of GitHub this many at a time
LOOKED_AT = 50  # recent fleets looked through for /fleets
WRITE_TTL = 60.0  # whether to show the steering forms; a POST always asks again
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
NOT_FOUND = "There is no fleet here, or you cannot see it."
NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<title>Not found · Honk</title><link rel="stylesheet" href="/assets/honk.css"></head>'
    f'<body><main><h1>Not found</h1><p>{NOT_FOUND}</p><p><a href="/fleets">Fleets you can see'
    "</a></p></main></body></html>\n"
)
# (login, repo) -> may steer, and why not: shown forms only; a POST asks GitHub again.
WRITES: web.AppKey[TTLCache[tuple[str, str], bool]] = web.AppKey("fleet_writes")


def add_routes(app: web.Application) -> None:
    app[WRITES] = TTLCache(maxsize=4096, ttl=WRITE_TTL)
    app.router.add_get("/fleets", fleets_list)
    app.router.add_get(r"/fleets/{fleet_id:\d+}", fleet_page)
    app.router.add_get(r"/fleets/{fleet_id:\d+}/live", stream)
    verbs = "|".join(c.value for c in FleetCommand)
    app.router.add_post(r"/fleets/{fleet_id:\d+}/{command:" + verbs + "}", steer)
    app.router.add_post(r"/fleets/{fleet_id:\d+}/merge", merge)
    app.router.add_get(r"/api/fleets/{fleet_id:\d+}", fleet_json)


# -- who sees what ---------------------------------------------------------------------


async def readable(access: Access, viewer: Viewer, repos: Sequence[FleetRepo]) -> list[FleetRepo]:
    """The repositories of `repos` this person's own token can read, in their order."""
    gate = asyncio.Semaphore(READ_CHECKS)

    async def one(name: str) -> bool:
        async with gate:
            return await access.can_read(viewer, name)

    flags = await asyncio.gather(*(one(repo.repo) for repo in repos))
    return [repo for repo, ok in zip(repos, flags, strict=True) if ok]


async def visible_fleet(
    request: web.Request, *, api: bool = False
) -> tuple[Viewer, Fleet, list[FleetRepo]]:
    """The fleet named in the path and the repositories of it this person can read; the
    same 404 as for no fleet when they can read none."""
    viewer = await viewer_or_sign_in(request, api=api)
    access = request.app[ACCESS]
    raw = request.match_info.get("fleet_id", "")
    fleet = await access.services.store.fleets.get(int(raw)) if raw.isdigit() else None
    shown: list[FleetRepo] = []
    if fleet is not None:
        try:
            shown = await readable(
                access, viewer, await access.services.store.fleets.repos(fleet.id)
            )
        except NotSignedIn:
            raise _signed_out(request, api=api) from None
    if fleet is None or not shown:
        raise not_found(api=api)
    return viewer, fleet, shown


def not_found(*, api: bool = False) -> web.HTTPNotFound:
    if api:
        return web.HTTPNotFound(text='{"error": "not found"}', content_type="application/json")
    return web.HTTPNotFound(text=NOT_FOUND_PAGE, content_type="text/html")


def _signed_out(request: web.Request, *, api: bool) -> web.HTTPException:
    if api:
        return web.HTTPUnauthorized(
            text='{"error": "GitHub refused the token"}', content_type="application/json"
        )
    return web.HTTPFound(sign_in_url(request))


async def may_steer(
    request: web.Request, viewer: Viewer, fleet: Fleet, *, cached: bool = True
) -> str | None:
    """None if this person may steer the fleet (its requester, or a writer of the fleet
    issue's repository through the write gate), else why not, in words for them."""
    if viewer.login.lower() == fleet.requested_by.lower():
        return None
    if not fleet.issue_repo:
        return f"Only @{fleet.requested_by}, who asked for this fleet, may steer it."
    services = request.app[ACCESS].services
    key = (viewer.login.lower(), fleet.issue_repo.lower())
    known = request.app[WRITES].get(key) if cached else None
    if known is not None:
        return None if known else _refusal(viewer, fleet)
    try:
        gh = await services.github.installation_client(fleet.installation_id)
        permission = await may_act(gh, fleet.issue_repo, viewer.login)
    except Exception as exc:  # the installation is gone, GitHub is down: no steering now
        log.warning(
            "could not check %s's permission on %s: %s",
            viewer.login,
            fleet.issue_repo,
            describe_error(exc),
        )
        return "GitHub could not say whether you may steer this fleet; try again."
    request.app[WRITES][key] = permission.allowed
    if permission.allowed:
        return None
    return permission.refusal("Steering this fleet", mention=False)


def _refusal(viewer: Viewer, fleet: Fleet) -> str:
    return (
        f"Steering this fleet needs write access to {fleet.issue_repo}, the repository of its "
        f"issue, or to be @{fleet.requested_by}, who asked for it."
    )


# -- what the page shows ---------------------------------------------------------------


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
        "csrf": await _csrf(request, viewer),
    }


async def _csrf(request: web.Request, viewer: Viewer) -> str:
    return csrf_token(await get_session(request)) if viewer.via == "session" else ""


# -- pages -------------------------------------------------------------------------------


async def fleets_list(request: web.Request) -> web.Response:
    """The recent fleets with at least one repository this person can read."""
    viewer = await viewer_or_sign_in(request)
    access = request.app[ACCESS]
    store = access.services.store
    listed = []
    try:
        for fleet in await store.fleets.find(limit=LOOKED_AT):
            if await _sees_any(access, viewer, await store.fleets.repos(fleet.id)):
                listed.append(
                    {"fleet": fleet, "title": title_of(fleet), "label": FLEET_LABELS[fleet.state]}
                )
    except NotSignedIn:
        raise web.HTTPFound(sign_in_url(request)) from None
    text = render.page(
        "fleets.html", viewer=viewer, csrf=await _csrf(request, viewer), fleets=listed
    )
    return render.html(text)


async def _sees_any(access: Access, viewer: Viewer, repos: Sequence[FleetRepo]) -> bool:
    """Whether the person can read one of `repos`, asking a few at a time, stopping at one."""
    for start in range(0, len(repos), READ_CHECKS):
        if await readable(access, viewer, repos[start : start + READ_CHECKS]):
            return True
    return False


async def fleet_page(request: web.Request) -> web.Response:
    viewer, fleet, shown = await visible_fleet(request)
    session = await get_session(request) if viewer.via == "session" else None
    notice = session.pop(NOTICE, None) if session is not None else None
    if not (isinstance(notice, dict) and notice.get("fleet") == fleet.id):
        notice = None
    return await _render(request, viewer, fleet, shown, notice=notice)


async def _render(
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


async def stream(request: web.Request) -> web.StreamResponse:
    """The changing part of the page again whenever the fleet's version moves."""
    viewer, fleet, shown = await visible_fleet(request)
    store = request.app[ACCESS].services.store
    raw = request.query.get("version", "")
    version = int(raw) if raw.isdigit() else -1
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)
    response: web.StreamResponse = web.Response(status=204)
    try:
        async with sse_response(request, ping_interval=15) as sse:
            response = sse
            while sse.is_connected():
                current = await store.fleets.get(fleet.id)
                if current is None:
                    break
                if current.version != version:
                    repos = await store.fleets.repos(fleet.id)
                    shown = await readable(request.app[ACCESS], viewer, repos)
                    if not shown:
                        break  # no longer allowed to read any of it
                    version = current.version
                    context = await live_context(request, viewer, current, shown)
                    html = await asyncio.to_thread(render.fragment, "fleet_live.html", **context)
                    message = {
                        "version": version,
                        "state": current.state.value,
                        "counts": {s.value: n for s, n in context["counts"].items()},
                        "html": str(html),
                    }
                    await sse.send(json.dumps(message), id=str(version), event="fleet")
                    if settled(current, shown):
                        await sse.send("{}", event="end")
                        break
                await asyncio.sleep(LIVE_POLL)
    except (ConnectionResetError, NotSignedIn):
        pass  # the page was closed, or the person's token stopped working
    finally:
        streams.discard(task)
    return response


async def fleet_json(request: web.Request) -> web.Response:
    """GET /api/fleets/<id>: the fleet and the repositories of it this person can read."""
    _viewer, fleet, shown = await visible_fleet(request, api=True)
    return web.json_response(describe(fleet, shown), headers={"Cache-Control": "no-store"})


def describe(fleet: Fleet, shown: Sequence[FleetRepo]) -> dict[str, Any]:
    return {
        "id": fleet.id,
        "request": fleet.request,
        "requested_by": fleet.requested_by,
        "origin": fleet.origin.value,
        "state": fleet.state.value,
        "state_reason": fleet.state_reason,
        "issue": fleet.issue,
        "canary_size": fleet.canary_size,
        "version": fleet.version,
        "created_at": _when(fleet.created_at),
        "finished_at": _when(fleet.finished_at),
        "counts": {s.value: n for s, n in counts_of(shown).items()},
        "repos": [
            {
                "repo": r.repo,
                "state": r.state.value,
                "reason": r.reason,
                "run_id": r.run_id,
                "pr_number": r.pr_number,
                "pr_url": r.pr_url,
                "runs": r.runs,
                "cost_usd": round(r.cost_usd, 4),
                "updated_at": _when(r.updated_at),
            }
            for r in shown
        ],
    }


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- steering ----------------------------------------------------------------------------


async def steer(request: web.Request) -> web.StreamResponse:
    """One of the fleet's commands, for a person who may steer it."""
    viewer, fleet, _shown = await _steering(request)
    asked = FleetCommand(request.match_info["command"])
    services = request.app[ACCESS].services
    try:
        said = await command(services.store, fleet.id, asked, by=viewer.login, wake=_wake(services))
    except FleetError as exc:
        log.info("fleet %s: %s refused for %s: %s", fleet.id, asked, viewer.login, exc)
        return await _told(request, viewer, fleet, str(exc), refused=True)
    log.info("fleet %s: %s by %s from the fleet page", fleet.id, asked, viewer.login)
    return await _told(request, viewer, fleet, said, refused=False)


async def merge(request: web.Request) -> web.StreamResponse:
    """Merge all green, as the person: their own token, GitHub's rules."""
    viewer, fleet, shown = await _steering(request)
    access = request.app[ACCESS]
    person = access.oauth.client(viewer.token, refresh=False)  # the session refreshed it
    report = await merge_green(
        access.services.store,
        fleet,
        person,
        by=viewer.login,
        repos=[r.repo for r in shown],  # never one this person cannot see
    )
    if viewer.via != "session":
        return web.json_response(
            {"merged": report.merged, "not_merged": [list(pair) for pair in report.not_merged]}
        )
    fresh = await access.services.store.fleets.get(fleet.id) or fleet
    shown = await readable(access, viewer, await access.services.store.fleets.repos(fleet.id))
    notice = {"fleet": fleet.id, "text": report.describe(), "refused": bool(report.not_merged)}
    return await _render(request, viewer, fresh, shown, notice=notice, report=report)


async def _steering(request: web.Request) -> tuple[Viewer, Fleet, list[FleetRepo]]:
    """The fleet, if this person may see it, may steer it, and the form carries this
    session's token."""
    viewer, fleet, shown = await visible_fleet(request)
    form = await request.post()
    if viewer.via == "session" and not csrf_ok(await get_session(request), form.get(CSRF_FIELD)):
        raise web.HTTPForbidden(text="This form has expired: reload the page and try again.\n")
    refusal = await may_steer(request, viewer, fleet, cached=False)
    if refusal is not None:
        raise web.HTTPForbidden(text=refusal + "\n")
    return viewer, fleet, shown


async def _told(
    request: web.Request, viewer: Viewer, fleet: Fleet, said: str, *, refused: bool
) -> web.StreamResponse:
    """The answer to a form: back to the page, which shows it once (a bearer gets JSON)."""
    if viewer.via != "session":
        return web.json_response({"said": said, "refused": refused}, status=409 if refused else 200)
    session = await get_session(request)
    session[NOTICE] = {"fleet": fleet.id, "text": said, "refused": refused}
    raise web.HTTPSeeOther(f"/fleets/{fleet.id}")


async def _sees_all(request: web.Request, fleet: Fleet, shown: Sequence[FleetRepo]) -> bool:
    every = await request.app[ACCESS].services.store.fleets.repos(fleet.id)
    return len(shown) == len(every)


def _no_wake() -> None:
    return None


def _wake(services: Services) -> Callable[[], None]:
    """The conductor's wake-up, when this process runs one (else it finds the change at its
    next poll)."""
    wake = getattr(services, "wake_fleets", None)
    return cast(Callable[[], None], wake) if callable(wake) else _no_wake
