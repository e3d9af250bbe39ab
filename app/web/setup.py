"""First-run setup: register the GitHub App from app.yml (App Manifest flow), write `.env`."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import gidgethub
import yaml
from aiohttp import web
from cachetools import TTLCache
from cryptography.fernet import Fernet

from app.config import ConfigError, Settings
from app.github.client import convert_manifest
from app.log import redact
from app.web.env_file import quoted, write_env_file

log = logging.getLogger(__name__)

CALLBACK_PATH = "/setup/callback"
START_PATH = "/setup/start"
STATE_TTL = 3600.0  # seconds a started registration may take on GitHub's side
# The keys setup writes (PRIVATE_KEY_PATH is dropped: it could shadow the new key).
ENV_KEYS = ("APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET", "GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")
SIGNIN_CALLBACK = "/signin/callback"  # app/web/signin.py: GitHub sends people back there
GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
HOST = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Honk set-up</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;
padding:0 1rem;overflow-wrap:anywhere}}code{{background:#f3f3f3;padding:0 .2em}}
pre{{background:#f3f3f3;padding:.5rem;white-space:pre-wrap;overflow-wrap:anywhere}}
input{{font-size:1rem;padding:.3em;max-width:100%}}
button{{font-size:1rem;padding:.4em 1em;min-height:44px}}li{{margin:.4rem 0}}</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""

WELCOME = """<p>Honk is not connected to GitHub yet. This registers a new GitHub App from
<code>app.yml</code>: GitHub asks you to confirm, then sends you back here and Honk writes
<code>APP_ID</code>, <code>PRIVATE_KEY</code>, <code>WEBHOOK_SECRET</code> and the App's
OAuth client (<code>GITHUB_CLIENT_ID</code>, <code>GITHUB_CLIENT_SECRET</code>, for signing in
to the run pages) into <code>{env_file}</code>.</p>
<p>Webhooks will be sent to <code>{webhook_url}</code>. If that is not the address GitHub can
reach, open this page through that address (a tunnel or your proxy) instead.</p>
<p>No public address yet? A tunnel gives Honk one for a first try. With
<a href="https://ngrok.com/download">ngrok</a> and a free account's token
(<code>ngrok config add-authtoken &lt;token&gt;</code>, once), this prints an
<code>https://</code> address to open this page at:</p>
<pre id="tunnel">{tunnel}</pre>
<form method="post" action="{start_path}">
<p><label>Organization (leave empty to register the App on your personal account)<br>
<input name="org" pattern="[A-Za-z0-9][A-Za-z0-9-]{{0,38}}" autocomplete="off"></label></p>
<p><label>App name (must be unique on {github_host})<br>
<input name="name" value="{name}" maxlength="34" required></label></p>
<p><button type="submit">Register the GitHub App on {github_host}</button></p>
</form>
"""

TO_GITHUB = """<p>Sending you to GitHub to create the App <b>{name}</b> on {owner}…</p>
<form id="manifest" method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<p><button type="submit">Continue to GitHub</button></p>
</form>
<script>document.getElementById("manifest").submit()</script>
"""

DONE = """<p>The GitHub App <a href="{app_url}">{name}</a> (id {app_id}) is registered and its
credentials are written to <code>{env_file}</code> (readable by its owner only).</p>
<h2>Next steps</h2>
<ol id="next-steps">
<li>{anthropic_step}</li>
<li>{url_step}</li>
<li><b>Restart Honk</b> (stop <code>honk serve</code> and start it again): settings are read
once at start, and every part of Honk (the GitHub client, the webhook check, the log
redactor, the workers) is built from them.</li>
<li><a href="{install_url}">Install the App</a> on the repositories Honk should work in.</li>
<li>Label an issue in one of them <code>{label}</code> (Honk adds the label to the
repositories when the App is installed). Honk comments on the issue at once with a link to
the run's page, where you watch the agent work; a pull request follows in a few
minutes.</li>
</ol>
"""
ANTHROPIC_STEP = """Put your Anthropic API key into <code>{env_file}</code>:
<pre>ANTHROPIC_API_KEY=sk-ant-…</pre>"""
ANTHROPIC_SET = "<code>ANTHROPIC_API_KEY</code> is set already."
URL_STEP = """Put the address people open Honk at into <code>{env_file}</code> too; the run
pages, sign-in and the links Honk leaves on GitHub and in Slack use it:
<pre>HONK_URL={base_url}</pre>"""
URL_SET = "<code>HONK_URL</code> is set already (<code>{honk_url}</code>)."
# Any tunnel will do; ngrok is the README's first run, so the page and the README agree.
TUNNEL = "ngrok http {port}"

ALREADY = """<p>Honk is already connected to a GitHub App: {why}.
Restart Honk if you have just registered it. To start over, remove <code>APP_ID</code>
from <code>{env_file}</code> and restart.</p>
"""


class SetupError(Exception):
    """A step of the set-up that cannot go on; the message is shown on the page."""


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
        return _page("Honk set-up", f"<p>{_h(exc)}</p>", status=500)
    body = WELCOME.format(
        env_file=_h(flow.env_file),
        webhook_url=_h(base + flow.settings.github.webhook_path),
        tunnel=_h(TUNNEL.format(port=listening_port(request, flow.settings))),
        start_path=START_PATH,
        name=_h(manifest.get("name") or "Honk"),
        github_host=_h(flow.settings.github.url.split("://", 1)[-1]),
    )
    return _page("Set up Honk", body)


async def start(request: web.Request) -> web.Response:
    """Hand the browser a form that posts the manifest to GitHub, with a fresh `state`."""
    flow = request.app[SETUP]
    if why := flow.configured_why():
        return _already(flow, why)
    form = await request.post()
    org = str(form.get("org") or "").strip()
    name = str(form.get("name") or "").strip()
    if org and not GITHUB_LOGIN.fullmatch(org):
        return _page(
            "Honk set-up", f"<p>{_h(org)} is not a GitHub organization name.</p>", status=400
        )
    try:
        manifest = await asyncio.to_thread(load_manifest, flow.manifest_path)
    except SetupError as exc:
        return _page("Honk set-up", f"<p>{_h(exc)}</p>", status=500)
    manifest = build_manifest(
        manifest, public_base_url(request), flow.settings.github.webhook_path, name=name or None
    )
    state = secrets.token_urlsafe(32)
    flow.states[state] = org
    body = TO_GITHUB.format(
        name=_h(manifest["name"]),
        owner=_h(f"the organization {org}" if org else "your personal account"),
        action=_h(manifest_form_action(flow.settings.github.url, org, state)),
        manifest=_h(json.dumps(manifest)),
    )
    return _page("Continue on GitHub", body)


async def callback(request: web.Request) -> web.Response:
    """GitHub sends the browser back with a code: trade it for the App's credentials."""
    flow = request.app[SETUP]
    code = request.query.get("code", "")
    state = request.query.get("state", "")
    if why := flow.configured_why():
        return _already(flow, why)
    if not state or flow.states.pop(state, None) is None:
        log.warning("set-up callback refused: unknown or expired state")
        return _page(
            "Honk set-up",
            '<p>This set-up link is unknown or has expired. <a href="/setup">Start again</a>.</p>',
            status=400,
        )
    if not code or len(code) > 200:
        return _page("Honk set-up", "<p>GitHub did not send a code.</p>", status=400)
    async with flow.lock:
        if why := flow.configured_why():
            return _already(flow, why)
        try:
            app = await _convert(flow.settings.github.api_url, code)
            await _save(flow.env_file, app, keep_session_key=bool(flow.settings.web.session_key))
        except SetupError as exc:
            log.error("set-up failed: %s", exc)
            return _page("Honk set-up failed", f"<p>{_h(exc)}</p>", status=502)
        flow.written_app_id = int(app["id"])
    log.info(
        "registered GitHub App %s (id %s); credentials written to %s; restart Honk",
        app.get("slug"),
        app["id"],
        flow.env_file,
    )
    app_url = str(app.get("html_url") or "")
    settings, env_file = flow.settings, _h(flow.env_file)
    honk_url = settings.web.url
    body = DONE.format(
        app_url=_h(app_url),
        name=_h(app.get("name") or app.get("slug") or "Honk"),
        app_id=int(app["id"]),
        env_file=env_file,
        install_url=_h(app_url.rstrip("/") + "/installations/new"),
        label=_h(settings.github.label),
        anthropic_step=(
            ANTHROPIC_SET
            if settings.agent.anthropic_api_key
            else ANTHROPIC_STEP.format(env_file=env_file)
        ),
        url_step=(
            URL_SET.format(honk_url=_h(honk_url))
            if honk_url
            else URL_STEP.format(env_file=env_file, base_url=_h(public_base_url(request)))
        ),
    )
    return _page("Honk is registered", body)


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


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """app.yml: the given path, else ./app.yml, else the one beside the package."""
    candidates = [path] if path else [Path("app.yml"), Path(__file__).parents[2] / "app.yml"]
    for candidate in candidates:
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text())
            except yaml.YAMLError as exc:
                raise SetupError(f"{candidate} is not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise SetupError(f"{candidate} is not a manifest (a mapping)")
            return data
    raise SetupError("app.yml (the GitHub App manifest) was not found")


def build_manifest(
    manifest: Mapping[str, Any], base_url: str, webhook_path: str, *, name: str | None = None
) -> dict[str, Any]:
    """The manifest with this server's webhook and redirect addresses filled in."""
    data = dict(manifest)
    if name:
        data["name"] = name
    hooks = dict(data.get("hook_attributes") or {})
    hooks["url"] = base_url + webhook_path
    hooks.setdefault("active", True)
    data["hook_attributes"] = hooks
    data["redirect_url"] = base_url + CALLBACK_PATH
    # Signing in with GitHub on the run pages: GitHub sends people back here.
    data["callback_urls"] = [base_url + SIGNIN_CALLBACK]
    return data


def manifest_form_action(github_url: str, org: str, state: str) -> str:
    """Where the manifest form posts: the personal or the organization's new-App page."""
    owner = f"/organizations/{quote(org, safe='')}" if org else ""
    return f"{github_url.rstrip('/')}{owner}/settings/apps/new?{urlencode({'state': state})}"


def env_values(app: Mapping[str, Any]) -> dict[str, str]:
    """The `.env` lines for a converted App: the key inline, newlines escaped, on one line.

    Inline rather than PRIVATE_KEY_PATH: one 0600 file holds every secret, nothing lands
    in the data directory beside the agent's checkouts, and a deployment copies it as one
    variable per line.
    """
    pem = str(app.get("pem") or "")
    secret = str(app.get("webhook_secret") or "")
    if "PRIVATE KEY-----" not in pem:
        raise SetupError("GitHub's answer has no private key")
    if not secret:
        raise SetupError("GitHub's answer has no webhook secret")
    values = {
        "APP_ID": str(int(app["id"])),
        "PRIVATE_KEY": quoted(pem.strip().replace("\r\n", "\n") + "\n"),
        "WEBHOOK_SECRET": quoted(secret),
    }
    if app.get("client_id") and app.get("client_secret"):  # sign-in with GitHub (run pages)
        values["GITHUB_CLIENT_ID"] = quoted(str(app["client_id"]))
        values["GITHUB_CLIENT_SECRET"] = quoted(str(app["client_secret"]))
    return values


def check_env_file(path: Path) -> None:
    """Read the file back the way `honk serve` will, so a bad write shows now."""
    try:
        settings = Settings.from_env(environ={}, env_file=path)
    except ConfigError as exc:
        raise SetupError(f"{path} was written but does not load: {exc}") from None
    if not settings.github.configured or not settings.github.webhook_secret:
        raise SetupError(f"{path} was written but does not hold the App's credentials")


def _already(flow: SetupFlow, why: str, *, status: int = 409) -> web.Response:
    body = ALREADY.format(why=_h(why), env_file=_h(flow.env_file))
    return _page("Honk is set up", body, status=status)


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=_h(title), body=body),
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
