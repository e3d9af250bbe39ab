"""Who sees what of a fleet on the web: the repositories of it a person's own token can read
(a fleet with none is the same 404 as no fleet), and who may steer it (its requester, or a
writer of the fleet issue's repository through the write gate, cached for the forms shown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiohttp import web
from cachetools import TTLCache

from app.fleet_models import Fleet, FleetRepo
from app.log import describe_error
from app.run_requests import may_act
from app.web.pages.access import ACCESS, Access, NotSignedIn, viewer_or_sign_in
from app.web.signin import Viewer, sign_in_url

log = logging.getLogger(__name__)

READ_CHECKS = 16  # "can this person read it" asked of GitHub this many at a time
WRITE_TTL = 60.0  # whether to show the steering forms; a POST always asks again
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
