"""First-run setup: register the GitHub App from app.yml (App Manifest flow), write `.env`.

The flow and its routes are here; the manifest and the credentials' lines are
app_manifest's, the pages setup_pages'."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import gidgethub
from aiohttp import web
from cachetools import TTLCache
from cryptography.fernet import Fernet

from app.config import Settings
from app.github.client import convert_manifest
from app.log import redact
from app.web.app_manifest import (
    CALLBACK_PATH,
    SetupError,
    build_manifest,
    check_env_file,
    env_values,
    load_manifest,
    manifest_form_action,
)
from app.web.env_file import write_env_file
from app.web.setup_pages import (
    ALREADY,
    ANTHROPIC_SET,
    ANTHROPIC_STEP,
    DONE,
    TO_GITHUB,
    TUNNEL,
    URL_SET,
    URL_STEP,
    WELCOME,
    escape,
    page,
)

log = logging.getLogger(__name__)

START_PATH = "/setup/start"
STATE_TTL = 3600.0  # seconds a started registration may take on GitHub's side
GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
HOST = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")


class SetupFlow:
    """Registration state: the `state` values handed out, and whether `.env` was written."""

    def __init__(self, settings: Settings, manifest_path: Path | None = None) -> None:
        self.settings = settings
        self.env_file = settings.env_file or Path(".env")
        self.manifest_path = manifest_path
        self.states: TTLCache[str, str] = TTLCache(maxsize=256, ttl=STATE_TTL)
        self.written_app_id: int | None = None
        self.lock = asyncio.Lock()

    def configured_why(self) -> str | None:
        if self.settings.github.configured:
            return f"APP_ID {self.settings.github.app_id} is set"
        if self.written_app_id is not None:
            return f"App {self.written_app_id} was registered by this process"
        return None


SETUP = web.AppKey("setup", SetupFlow)


def add_routes(app: web.Application, settings: Settings, *, manifest: Path | None = None) -> None:
    """`/setup/...`, and `/` itself while GitHub is not configured."""
    app[SETUP] = SetupFlow(settings, manifest)
    if not settings.github.configured:
        app.router.add_get("/", setup_page)
    app.router.add_get("/setup", setup_page)
    app.router.add_post(START_PATH, start)
    app.router.add_get(CALLBACK_PATH, callback)


async def setup_page(request: web.Request) -> web.Response:
    flow = request.app[SETUP]
    if why := flow.configured_why():
        return _already(flow, why, status=200)
    base = public_base_url(request)
    try:
        manifest = await asyncio.to_thread(load_manifest, flow.manifest_path)
    except SetupError as exc:
        return page("Honk set-up", f"<p>{escape(exc)}</p>", status=500)
    body = WELCOME.format(
        env_file=escape(flow.env_file),
        webhook_url=escape(base + flow.settings.github.webhook_path),
        tunnel=escape(TUNNEL.format(port=listening_port(request, flow.settings))),
        start_path=START_PATH,
        name=escape(manifest.get("name") or "Honk"),
        github_host=escape(flow.settings.github.url.split("://", 1)[-1]),
    )
    return page("Set up Honk", body)


async def start(request: web.Request) -> web.Response:
    """Hand the browser a form that posts the manifest to GitHub, with a fresh `state`."""
    flow = request.app[SETUP]
    if why := flow.configured_why():
        return _already(flow, why)
    form = await request.post()
    org = str(form.get("org") or "").strip()
    name = str(form.get("name") or "").strip()
    if org and not GITHUB_LOGIN.fullmatch(org):
        return page(
            "Honk set-up", f"<p>{escape(org)} is not a GitHub organization name.</p>", status=400
        )
    try:
        manifest = await asyncio.to_thread(load_manifest, flow.manifest_path)
    except SetupError as exc:
        return page("Honk set-up", f"<p>{escape(exc)}</p>", status=500)
    manifest = build_manifest(
        manifest, public_base_url(request), flow.settings.github.webhook_path, name=name or None
    )
    state = secrets.token_urlsafe(32)
    flow.states[state] = org
    body = TO_GITHUB.format(
        name=escape(manifest["name"]),
        owner=escape(f"the organization {org}" if org else "your personal account"),
        action=escape(manifest_form_action(flow.settings.github.url, org, state)),
        manifest=escape(json.dumps(manifest)),
    )
    return page("Continue on GitHub", body)


async def callback(request: web.Request) -> web.Response:
    """GitHub sends the browser back with a code: trade it for the App's credentials."""
    flow = request.app[SETUP]
    code = request.query.get("code", "")
    state = request.query.get("state", "")
    if why := flow.configured_why():
        return _already(flow, why)
    if not state or flow.states.pop(state, None) is None:
        log.warning("set-up callback refused: unknown or expired state")
        return page(
            "Honk set-up",
            '<p>This set-up link is unknown or has expired. <a href="/setup">Start again</a>.</p>',
            status=400,
        )
    if not code or len(code) > 200:
        return page("Honk set-up", "<p>GitHub did not send a code.</p>", status=400)
    async with flow.lock:
        if why := flow.configured_why():
            return _already(flow, why)
        try:
            app = await _convert(flow.settings.github.api_url, code)
            await _save(flow.env_file, app, keep_session_key=bool(flow.settings.web.session_key))
        except SetupError as exc:
            log.error("set-up failed: %s", exc)
            return page("Honk set-up failed", f"<p>{escape(exc)}</p>", status=502)
        flow.written_app_id = int(app["id"])
    log.info(
        "registered GitHub App %s (id %s); credentials written to %s; restart Honk",
        app.get("slug"),
        app["id"],
        flow.env_file,
    )
    app_url = str(app.get("html_url") or "")
    settings, env_file = flow.settings, escape(flow.env_file)
    honk_url = settings.web.url
    body = DONE.format(
        app_url=escape(app_url),
        name=escape(app.get("name") or app.get("slug") or "Honk"),
        app_id=int(app["id"]),
        env_file=env_file,
        install_url=escape(app_url.rstrip("/") + "/installations/new"),
        label=escape(settings.github.label),
        anthropic_step=(
            ANTHROPIC_SET
            if settings.agent.anthropic_api_key
            else ANTHROPIC_STEP.format(env_file=env_file)
        ),
        url_step=(
            URL_SET.format(honk_url=escape(honk_url))
            if honk_url
            else URL_STEP.format(env_file=env_file, base_url=escape(public_base_url(request)))
        ),
    )
    return page("Honk is registered", body)


async def _convert(api_url: str, code: str) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            app = await convert_manifest(session, api_url, code)
    except gidgethub.HTTPException as exc:
        raise SetupError(
            f"GitHub refused the registration code (HTTP {int(exc.status_code)}); "
            "codes are single-use and expire after an hour: start again."
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SetupError(f"GitHub could not be reached: {type(exc).__name__}") from None
    if not isinstance(app, dict):
        raise SetupError("GitHub's answer was not an App")
    # Whatever happens next, these must never reach a log line.
    redact.add(*(str(app.get(k) or "") for k in ("pem", "webhook_secret", "client_secret")))
    return app


async def _save(env_file: Path, app: Mapping[str, Any], *, keep_session_key: bool) -> None:
    values = env_values(app)
    if not keep_session_key:  # the run pages' session cookie key, made once
        values["HONK_SESSION_KEY"] = Fernet.generate_key().decode()
    try:
        await asyncio.to_thread(write_env_file, env_file, values)
    except OSError as exc:
        # The App exists on GitHub now; its key cannot be shown here, but a new one can be
        # generated on the App's page.
        raise SetupError(
            f"The App was registered on GitHub, but {env_file} could not be written "
            f"({type(exc).__name__}: {exc.strerror or exc}). Fix that, then generate a new "
            f"private key on {app.get('html_url') or 'the App settings page'} and set APP_ID "
            f"{app.get('id')}, PRIVATE_KEY and WEBHOOK_SECRET by hand."
        ) from None
    await asyncio.to_thread(check_env_file, env_file)


def public_base_url(request: web.Request) -> str:
    """scheme://host as the browser sees it, behind a proxy too (X-Forwarded-Proto/Host)."""
    proto = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
    if proto not in ("http", "https"):
        proto = request.scheme
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    if not HOST.fullmatch(host):
        host = request.host
    return f"{proto}://{host}"


def listening_port(request: web.Request, settings: Settings) -> int:
    """The port this server accepted the request on (PORT, or --port), whatever the
    address the browser used (a tunnel's or a proxy's)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return settings.web.port


def _first(value: str | None) -> str:
    return (value or "").split(",", 1)[0].strip()


def _already(flow: SetupFlow, why: str, *, status: int = 409) -> web.Response:
    body = ALREADY.format(why=escape(why), env_file=escape(flow.env_file))
    return page("Honk is set up", body, status=status)
