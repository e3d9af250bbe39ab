"""GET /fleets and /fleets/<id> (live over Server-Sent Events) and GET /api/fleets/<id>: the
fleet as a person may see it, the repositories their own token can read (fleet_access.py),
shown as fleet_view.py says; the routes of its steering forms (fleet_steering.py) too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response
from cachetools import TTLCache

from app.fleet.requests import FleetCommand
from app.fleet_models import Fleet, FleetRepo
from app.web.pages import render
from app.web.pages.access import ACCESS, Access, NotSignedIn, viewer_or_sign_in
from app.web.pages.fleet_access import READ_CHECKS, WRITE_TTL, WRITES, readable, visible_fleet
from app.web.pages.fleet_steering import merge, steer
from app.web.pages.fleet_view import (
    FLEET_LABELS,
    NOTICE,
    counts_of,
    csrf_of,
    live_context,
    render_fleet,
    settled,
    title_of,
)
from app.web.pages.run_page import STREAMS
from app.web.signin import Viewer, sign_in_url

LIVE_POLL = 1.0  # seconds between looks at the fleet's version (any process may change it)
LOOKED_AT = 50  # recent fleets looked through for /fleets


def add_routes(app: web.Application) -> None:
    app[WRITES] = TTLCache(maxsize=4096, ttl=WRITE_TTL)
    app.router.add_get("/fleets", fleets_list)
    app.router.add_get(r"/fleets/{fleet_id:\d+}", fleet_page)
    app.router.add_get(r"/fleets/{fleet_id:\d+}/live", stream)
    verbs = "|".join(c.value for c in FleetCommand)
    app.router.add_post(r"/fleets/{fleet_id:\d+}/{command:" + verbs + "}", steer)
    app.router.add_post(r"/fleets/{fleet_id:\d+}/merge", merge)
    app.router.add_get(r"/api/fleets/{fleet_id:\d+}", fleet_json)


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
        "fleets.html", viewer=viewer, csrf=await csrf_of(request, viewer), fleets=listed
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
    return await render_fleet(request, viewer, fleet, shown, notice=notice)


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
