"""Steering a fleet from its page: the commands' forms (Continue, Pause, Resume, Stop, Retry
failed, Roll back) and Merge all green, as the person with their own token
(app/fleet/merge.py); each for who may steer it, each form carrying the session's CSRF token."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp_session import get_session

from app.fleet.merge import merge_green
from app.fleet.requests import FleetCommand, FleetError, command
from app.fleet_models import Fleet, FleetRepo
from app.services import Services
from app.web.pages.access import ACCESS
from app.web.pages.fleet_access import may_steer, readable, visible_fleet
from app.web.pages.fleet_view import NOTICE, render_fleet
from app.web.signin import CSRF_FIELD, Viewer, csrf_ok

log = logging.getLogger(__name__)


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
    return await render_fleet(request, viewer, fresh, shown, notice=notice, report=report)


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


def _wake(services: Services) -> Callable[[], None]:
    """The conductor's wake-up (a process without workers runs none: a worker process's
    conductor finds the change at its next poll)."""
    return services.conductor.wake
