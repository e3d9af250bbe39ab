"""The run pages: GET /runs/<id> (live), /runs, steering forms, and their JSON API; the fleet
pages: GET /fleets/<id> (live), /fleets, steering forms, Merge all green, and its JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from app.config import Settings
from app.services import Services
from app.web import connect, signin
from app.web.pages import api, fleet_page, render, run_page, runs_list
from app.web.pages.access import ACCESS, Access
from app.web.pages.links import Links


def add_routes(app: web.Application, settings: Settings, services: web.AppKey[Services]) -> None:
    """Routes and the session middleware; the checks are built once the services are open."""
    signin.add_routes(app, settings)
    connect.add_routes(app, services)  # /connect/<nonce>: GitHub connected from Slack
    app[run_page.STREAMS] = set()

    async def pages_ctx(app: web.Application) -> AsyncIterator[None]:
        opened = app[services]
        app[signin.SIGN_IN] = signin.SignIn(settings, opened.session, opened.store)
        app[ACCESS] = Access(opened, app[signin.SIGN_IN].oauth)
        app[run_page.LINKS] = Links(opened)
        yield

    async def close_streams(app: web.Application) -> None:
        streams = app[run_page.STREAMS]
        for task in list(streams):
            task.cancel()
        await asyncio.sleep(0)

    app.cleanup_ctx.append(pages_ctx)  # after the services' own, so they are open here
    app.on_shutdown.append(close_streams)
    app.router.add_get("/assets/{name}", render.asset)
    app.router.add_get("/runs", runs_list.runs_list)
    app.router.add_get(r"/runs/{run_id:\d+}", run_page.run_page)
    app.router.add_get(r"/runs/{run_id:\d+}/live", run_page.stream)
    app.router.add_post(r"/runs/{run_id:\d+}/cancel", run_page.cancel)
    app.router.add_post(r"/runs/{run_id:\d+}/retry", run_page.retry)
    app.router.add_get(r"/api/runs/{run_id:\d+}", api.run_json)
    app.router.add_get(r"/api/runs/{run_id:\d+}/events", api.events_json)
    fleet_page.add_routes(app)  # /fleets, /fleets/<id> (+ /live, its forms), /api/fleets/<id>
