"""Who sees a run: a person whose own GitHub token can read its repository (asked of GitHub,
remembered for minutes); who steers it: the same write gate as on GitHub and in Slack."""

from __future__ import annotations

import hashlib
import logging

import gidgethub
from aiohttp import web
from cachetools import TTLCache

from app.github.oauth import GitHubOAuth
from app.log import describe_error
from app.models import Run
from app.run_requests import Permission, may_act
from app.services import Services
from app.web.signin import SIGN_IN, Viewer, sign_in_url

log = logging.getLogger(__name__)

READ_TTL = 300.0  # "can this token read that repository", remembered for five minutes
WRITE_TTL = 60.0  # whether to show the steering forms; a POST always asks again
NOT_FOUND = "There is no run here, or you cannot see it."
NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<title>Not found · Honk</title><link rel="stylesheet" href="/assets/honk.css"></head>'
    f'<body><main><h1>Not found</h1><p>{NOT_FOUND}</p><p><a href="/runs">Runs you can see</a>'
    "</p></main></body></html>\n"
)


class NotSignedIn(Exception):
    """The visitor must sign in first (pages) or send a token (the API)."""


class Access:
    """The read and write checks for one process, with their caches."""

    def __init__(self, services: Services, oauth: GitHubOAuth) -> None:
        self.services = services
        self.oauth = oauth
        self._reads: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=16384, ttl=READ_TTL)
        self._writes: TTLCache[tuple[str, str], Permission] = TTLCache(maxsize=4096, ttl=WRITE_TTL)

    async def can_read(self, viewer: Viewer, repo: str) -> bool:
        """GET /repos/{repo} with the person's own token: 200 reads, 404 (or 403) does not."""
        key = (_digest(viewer.token.access_token), repo.lower())
        if (known := self._reads.get(key)) is not None:
            return known
        try:
            # Never refreshed here: the session refreshed it, and keeps the new refresh token.
            await self.oauth.client(viewer.token, refresh=False).getitem(f"/repos/{repo}")
            readable = True
        except gidgethub.BadRequest as exc:
            if exc.status_code == 401:
                raise NotSignedIn() from None
            readable = False
        self._reads[key] = readable
        return readable

    async def can_write(
        self, viewer: Viewer, run: Run, *, cached: bool = True
    ) -> Permission | None:
        """The write gate (run_requests.may_act) with the run's installation; None if GitHub
        could not say. Cached for a minute to show the forms; a POST asks again."""
        key = (viewer.login.lower(), run.repo.lower())
        if cached and (known := self._writes.get(key)) is not None:
            return known
        try:
            gh = await self.services.github.installation_client(run.installation_id)
            permission = await may_act(gh, run.repo, viewer.login)
        except Exception as exc:  # the installation is gone, GitHub is down: no steering
            reason = describe_error(exc)
            log.warning("could not check %s's permission on %s: %s", viewer.login, run.repo, reason)
            return None
        self._writes[key] = permission
        return permission


ACCESS = web.AppKey("access", Access)


async def viewer_or_sign_in(request: web.Request, *, api: bool = False) -> Viewer:
    """The person asking; a page sends a visitor to sign in, the API answers 401."""
    viewer = await request.app[SIGN_IN].viewer(request)
    if viewer is not None:
        return viewer
    if api:
        raise web.HTTPUnauthorized(
            text='{"error": "sign in, or send your GitHub token as a bearer"}',
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="honk"'},
        )
    if not request.app[SIGN_IN].oauth.configured:
        raise web.HTTPServiceUnavailable(
            text="Sign-in with GitHub is not configured: set GITHUB_CLIENT_ID and "
            "GITHUB_CLIENT_SECRET (Honk's set-up writes them into .env).\n"
        )
    raise web.HTTPFound(sign_in_url(request))


async def visible_run(request: web.Request, *, api: bool = False) -> tuple[Viewer, Run]:
    """The run named in the path, if this person may see it; else the same 404 as no run."""
    viewer = await viewer_or_sign_in(request, api=api)
    raw = request.match_info.get("run_id", "")
    run = await request.app[ACCESS].services.store.runs.get(int(raw)) if raw.isdigit() else None
    try:
        readable = run is not None and await request.app[ACCESS].can_read(viewer, run.repo)
    except NotSignedIn:
        if api:
            raise web.HTTPUnauthorized(
                text='{"error": "GitHub refused the token"}', content_type="application/json"
            ) from None
        raise web.HTTPFound(sign_in_url(request)) from None
    if run is None or not readable:
        raise not_found(api=api)
    return viewer, run


def not_found(*, api: bool = False) -> web.HTTPNotFound:
    """One answer for a run that does not exist and a run this person cannot see."""
    if api:
        return web.HTTPNotFound(text='{"error": "not found"}', content_type="application/json")
    return web.HTTPNotFound(text=NOT_FOUND_PAGE, content_type="text/html")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
