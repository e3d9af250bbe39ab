"""`honk doctor`: check a configuration for real, one line per check; non-zero exit on a failure."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import anthropic
import gidgethub
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from app.config import (
    AgentSettings,
    ConfigError,
    GitHubSettings,
    SandboxSettings,
    Settings,
    SlackSettings,
    StoreSettings,
    WebSettings,
)
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.log import configure_logging, redact
from app.store import Store
from app.workspace.cgroups import memory_cap, process_cap
from app.workspace.limits import SandboxLimits
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose
from app.workspace.toolchains import find_installed

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# A warning: Honk runs, with less (no run pages, a guessable secret); it does not fail.
MARKS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
ASCII_MARKS = {PASS: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
CHECK_TIMEOUT = 60.0  # seconds for any one check
# A webhook secret shorter than this, or of fewer distinct characters, is guessable.
MIN_SECRET_LENGTH = 20
MIN_SECRET_CHARACTERS = 8
NEW_SECRET = "python -c 'import secrets; print(secrets.token_hex(20))'"
ANTHROPIC_API_URL = "https://api.anthropic.com"
SHOWN_REPOS = 10  # repositories named per installation; the rest are counted
SLACK_TEST_MESSAGE = ":stethoscope: `honk doctor`: Honk can post in this channel."


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, WARN, FAIL or SKIP
    detail: str

    def line(self, ascii_only: bool = False) -> str:
        mark = (ASCII_MARKS if ascii_only else MARKS)[self.status]
        return f"{mark} {self.name}: {redact(self.detail)}"


def doctor_command(env_file: str | Path | None, out: TextIO | None = None) -> int:
    """The CLI entry: settings from the environment and `env_file`, then every check."""
    out = out or sys.stdout
    try:
        settings = Settings.from_env(env_file=env_file)
    except ConfigError as exc:
        _print(out, Check("configuration", FAIL, str(exc)))
        return 1
    redact.add(*settings.secrets())
    # Warnings (a retried request) go to stderr, redacted; stdout holds only the checks.
    configure_logging("WARNING", "text")
    return asyncio.run(run_doctor(settings, out))


async def run_doctor(settings: Settings, out: TextIO) -> int:
    """Print every check in order, one line each; 0 when none failed (warnings pass), else 1."""
    failed = False

    def report(check: Check) -> None:
        nonlocal failed
        failed = failed or check.status == FAIL
        _print(out, check)

    github_api = _where(settings.github.api_url, "GITHUB_API_URL")
    slack_api = _where(settings.slack.api_url, "SLACK_API_URL")
    app_info: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        report(check_private_key(settings.github))
        github_ok = settings.github.configured
        github = _github_checks(settings, session, github_ok, app_info)
        for check in await _guarded("GitHub App", github, github_api):
            report(check)
        report(check_webhook_secret(settings.github))
        report(check_honk_url(settings.web))
        report(check_sign_in(settings, app_info.get("client_id")))
        report(await _one("Anthropic", check_anthropic(settings.agent)))
        for check in await _guarded("Slack", check_slack(settings.slack, session), slack_api):
            report(check)
        report(await _one("sandbox", check_sandbox(settings.sandbox)))
        report(await _one("toolchains", check_toolchains(settings.sandbox)))
        report(await _one("store", check_store(settings.store)))
    return 1 if failed else 0


def _print(out: TextIO, check: Check) -> None:
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "".join(MARKS.values()).encode(encoding)
        ascii_only = False
    except (LookupError, UnicodeEncodeError):
        ascii_only = True
    out.write(check.line(ascii_only) + "\n")
    out.flush()


async def _one(name: str, check: Awaitable[Check]) -> Check:
    return (await _guarded(name, _as_list(check)))[0]


async def _as_list(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _guarded(name: str, checks: Awaitable[list[Check]], where: str = "") -> list[Check]:
    """A check that raises or hangs fails with the reason instead of stopping the doctor.

    `where`: the host the checks talk to and its setting, named when it cannot be reached.
    """
    try:
        return await asyncio.wait_for(checks, CHECK_TIMEOUT)
    except TimeoutError:
        late = f"{where} gave " if where else ""
        return [Check(name, FAIL, f"{late}no answer within {CHECK_TIMEOUT:.0f} s")]
    except Exception as exc:
        if where and (why := unreachable(exc)):
            return [Check(name, FAIL, f"cannot reach {where}: {why}")]
        return [Check(name, FAIL, f"{type(exc).__name__}: {exc}")]


def unreachable(exc: BaseException) -> str | None:
    """Why a connection could not be made, in the OS's words ("Connection refused", "Name or
    service not known"), when that is what `exc` or an exception behind it says; else None."""
    seen: BaseException | None = exc
    for _ in range(10):  # causes chain; a cycle is not followed for ever
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror):
            return seen.strerror or "the name does not resolve"
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            return f"the TLS certificate is not trusted ({seen.certificate_error})"
        if isinstance(seen, aiohttp.ClientConnectorError):
            seen = seen.os_error
            continue
        if isinstance(seen, TimeoutError):
            return "no answer (timed out)"
        if isinstance(seen, OSError) and seen.errno:
            # asyncio words a refused connection "Connect call failed (...)": the errno's
            # own name says it for people.
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


def _where(url: str, setting: str) -> str:
    """The host (and port, when not the scheme's) of `url`, and the setting that names it."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port} ({setting})" if parts.port else f"{host} ({setting})"


# --- GitHub ----------------------------------------------------------------------------


def check_private_key(github: GitHubSettings) -> Check:
    if github.app_id is None or not github.private_key:
        return Check(
            "private key",
            FAIL,
            "APP_ID and PRIVATE_KEY are not set: run `honk serve` and open its page to "
            "register the GitHub App",
        )
    try:
        key = load_pem_private_key(github.private_key.encode(), password=None)
    except (ValueError, TypeError):
        return Check("private key", FAIL, "PRIVATE_KEY is not a PEM private key that parses")
    if isinstance(key, rsa.RSAPrivateKey):
        kind = f"RSA {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        return Check("private key", FAIL, "an EC key: GitHub Apps sign their JWT with RSA")
    else:
        kind = type(key).__name__
    return Check("private key", PASS, f"parses ({kind}) for App {github.app_id}")


async def _github_checks(
    settings: Settings,
    session: aiohttp.ClientSession,
    configured: bool,
    app_info: dict[str, Any],
) -> list[Check]:
    """The App's JWT and installations; `app_info` receives what GET /app answered."""
    if not configured:
        skipped = "needs APP_ID and PRIVATE_KEY"
        return [Check("GitHub App", SKIP, skipped), Check("installations", SKIP, skipped)]
    github = GitHubApp(settings.github, session)
    app_client = _client(settings, session, lambda: _bearer(github))
    try:
        info = await app_client.getitem("/app")
        app_info.update(info)
    except gidgethub.HTTPException as exc:
        why = _github_reason(exc)
        return [
            Check(
                "GitHub App",
                FAIL,
                f"GET /app refused the JWT ({why}): APP_ID and the key "
                f"must belong to the same App on {settings.github.api_url}",
            ),
            Check("installations", SKIP, "needs an accepted JWT"),
        ]
    checks = [
        Check(
            "GitHub App",
            PASS,
            f"JWT accepted: {info.get('slug')} (id {info.get('id')}) "
            f"{info.get('html_url') or ''}".rstrip(),
        )
    ]
    installations = [i async for i in app_client.getiter("/app/installations?per_page=100")]
    if not installations:
        install = f"{info.get('html_url') or 'the App page'}/installations/new"
        return [*checks, Check("installations", FAIL, f"none yet: install the App at {install}")]
    for installation in installations:
        checks.append(await _installation_check(settings, session, app_client, installation))
    return checks


async def _installation_check(
    settings: Settings,
    session: aiohttp.ClientSession,
    app_client: GitHubClient,
    installation: dict[str, Any],
) -> Check:
    account = (installation.get("account") or {}).get("login", "?")
    name = f"installation {installation['id']} ({account})"
    if installation.get("suspended_at"):
        return Check(name, FAIL, f"suspended since {installation['suspended_at']}")
    try:
        token = await app_client.post(
            f"/app/installations/{int(installation['id'])}/access_tokens", data={}
        )
        redact.add(token["token"])
        client = _client(settings, session, lambda: _static(f"token {token['token']}"))
        repos = [
            r["full_name"]
            async for r in client.getiter(
                "/installation/repositories?per_page=100", iterable_key="repositories"
            )
        ]
    except gidgethub.HTTPException as exc:
        return Check(name, FAIL, f"cannot act as the installation ({_github_reason(exc)})")
    shown = ", ".join(repos[:SHOWN_REPOS])
    more = f" and {len(repos) - SHOWN_REPOS} more" if len(repos) > SHOWN_REPOS else ""
    selection = installation.get("repository_selection", "?")
    count = f"{len(repos)} repositor{'y' if len(repos) == 1 else 'ies'}"
    return Check(name, PASS, f"{selection}: {count}" + (f": {shown}{more}" if repos else ""))


def _client(
    settings: Settings, session: aiohttp.ClientSession, auth: Callable[[], Awaitable[str]]
) -> GitHubClient:
    # One retry with a short wait: the doctor reports, it does not ride out an outage.
    return GitHubClient(
        session, base_url=settings.github.api_url, authorization=auth, max_retries=1, max_wait=5.0
    )


async def _bearer(github: GitHubApp) -> str:
    return f"Bearer {github.jwt()}"


async def _static(value: str) -> str:
    return value


def _github_reason(exc: gidgethub.HTTPException) -> str:
    return f"HTTP {int(exc.status_code)}: {str(exc) or exc.status_code.phrase}"


def check_webhook_secret(github: GitHubSettings) -> Check:
    secret = github.webhook_secret
    if not secret:
        return Check("webhook secret", FAIL, "WEBHOOK_SECRET is not set: every webhook is refused")
    weak = None
    if len(secret) < MIN_SECRET_LENGTH:
        weak = f"short ({len(secret)} character{'s' if len(secret) != 1 else ''})"
    elif len(set(secret)) < MIN_SECRET_CHARACTERS:
        weak = f"of only {len(set(secret))} distinct characters"
    if weak:
        return Check(
            "webhook secret",
            WARN,
            f"WEBHOOK_SECRET is {weak}: whoever guesses it can send Honk webhooks; set it "
            f"to {MIN_SECRET_LENGTH} or more random characters ({NEW_SECRET}), and the same "
            "in the GitHub App's webhook settings",
        )
    return Check("webhook secret", PASS, f"set; webhooks verified at {github.webhook_path}")


def check_honk_url(web: WebSettings) -> Check:
    """HONK_URL: where people reach Honk; every link to a run page is built from it."""
    url = web.url
    if not url:
        return Check(
            "HONK_URL",
            WARN,
            "not set: comments and Slack messages carry no links to run pages, and "
            "connecting GitHub from Slack is off; set HONK_URL to the address people reach "
            "Honk at, e.g. https://honk.example.com",
        )
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_local(parts.hostname or ""):
        return Check(
            "HONK_URL",
            WARN,
            f"{url} is plain http: sign-in cookies cross the network unencrypted; "
            "serve Honk over https",
        )
    return Check("HONK_URL", PASS, f"run pages at {url}/runs (not fetched)")


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_sign_in(settings: Settings, app_client_id: object = None) -> Check:
    """The App's OAuth client (sign-in with GitHub): without it run pages answer 503.

    `app_client_id`: the client id GitHub gave for the App (GET /app), when it answered.
    """
    client_id, secret = settings.github.client_id, settings.github.client_secret
    setup = "Honk's set-up writes them into .env, or copy them from the GitHub App's settings"
    if not client_id and not secret:
        return Check(
            "sign-in",
            WARN,
            "GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are not set: run pages answer 503 "
            f"and nobody can sign in; {setup}",
        )
    if not client_id or not secret:
        missing, given = (
            ("GITHUB_CLIENT_SECRET", "GITHUB_CLIENT_ID")
            if client_id
            else ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET")
        )
        return Check(
            "sign-in",
            FAIL,
            f"{missing} is not set ({given} is): run pages answer 503; {setup}",
        )
    if isinstance(app_client_id, str) and app_client_id and app_client_id != client_id:
        return Check(
            "sign-in",
            FAIL,
            f"GITHUB_CLIENT_ID {client_id} is not this App's client ({app_client_id}): "
            "signing in would fail",
        )
    if not settings.web.session_key:
        return Check(
            "sign-in",
            WARN,
            f"client {client_id} set; HONK_SESSION_KEY is not: everyone is signed out at "
            "each restart, and other processes cannot read the sessions",
        )
    matched = " (the App's own)" if app_client_id == client_id else ""
    return Check("sign-in", PASS, f"client {client_id}{matched}; sessions keyed")


# --- Anthropic, Slack, sandbox, store --------------------------------------------------


async def check_anthropic(agent: AgentSettings) -> Check:
    """A token count: authenticated and free, and it also proves the model name exists."""
    if not agent.anthropic_api_key:
        return Check("Anthropic", FAIL, "ANTHROPIC_API_KEY is not set")
    client = anthropic.AsyncAnthropic(
        api_key=agent.anthropic_api_key,
        base_url=agent.anthropic_base_url,
        max_retries=1,
        timeout=anthropic.Timeout(30.0, connect=10.0),
    )
    try:
        counted = await client.messages.count_tokens(
            model=agent.model, messages=[{"role": "user", "content": "honk doctor"}]
        )
    except anthropic.APIStatusError as exc:
        return Check("Anthropic", FAIL, f"HTTP {exc.status_code}: {_anthropic_reason(exc)}")
    except anthropic.APIConnectionError as exc:
        where = _where(agent.anthropic_base_url or ANTHROPIC_API_URL, "ANTHROPIC_BASE_URL")
        why = unreachable(exc) or type(exc).__name__
        return Check("Anthropic", FAIL, f"cannot reach {where}: {why}")
    finally:
        await client.close()
    return Check(
        "Anthropic",
        PASS,
        f"key accepted; model {agent.model} counted {counted.input_tokens} tokens",
    )


def _anthropic_reason(exc: anthropic.APIStatusError) -> str:
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    kind, message = error.get("type"), error.get("message")
    return f"{kind}: {message}" if kind and message else str(exc.message)


async def check_slack(slack: SlackSettings, session: aiohttp.ClientSession) -> list[Check]:
    """auth.test, then a real chat.postMessage: only posting proves the bot can post there
    (the chat:write scope, channel membership, an archived or misspelt channel)."""
    if not slack.bot_token:
        return [Check("Slack", SKIP, "SLACK_BOT_TOKEN is not set: notifications are off")]
    client = AsyncWebClient(
        token=slack.bot_token, base_url=slack.api_url, session=session, timeout=20
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return [Check("Slack", FAIL, f"auth.test failed: {_slack_reason(exc)}")]
    checks = [Check("Slack", PASS, f"auth.test passed: @{auth.get('user')} in {auth.get('team')}")]
    channel = slack.channel
    if not channel:
        checks.append(Check("Slack channel", FAIL, "SLACK_CHANNEL is not set"))
        return checks
    try:
        await client.chat_postMessage(channel=channel, text=SLACK_TEST_MESSAGE)
    except SlackApiError as exc:
        checks.append(
            Check("Slack channel", FAIL, f"cannot post to {channel}: {_slack_reason(exc)}")
        )
        return checks
    checks.append(Check("Slack channel", PASS, f"posted a test message to {channel}"))
    return checks


def _slack_reason(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or f"HTTP {getattr(exc.response, 'status_code', '?')}")


async def check_sandbox(sandbox: SandboxSettings) -> Check:
    if sandbox.mode == "off":
        return Check("sandbox", SKIP, "HONK_SANDBOX=off: agent commands run unsandboxed (unsafe)")
    problem = await Sandbox.check(sandbox.mode)
    if problem:
        return Check("sandbox", FAIL, problem)
    if shutil.which("socat") is None:
        return Check("sandbox", FAIL, "socat is missing: sandboxes reach Honk's network proxy "
                     "through it (apt-get install socat)")  # fmt: skip
    cap = await asyncio.to_thread(process_cap)
    memory = await asyncio.to_thread(memory_cap, SandboxLimits.from_settings(sandbox))
    return Check(
        "sandbox",
        PASS,
        f"bwrap starts a sandbox; processes capped by {cap}; memory capped by {memory}; "
        "network via proxy",
    )


async def check_toolchains(sandbox: SandboxSettings) -> Check:
    """The toolchains Honk found on this host (language, version, source, path); a
    HONK_TOOLCHAIN_PATHS root that holds none, or a default that matches none, warns."""
    found = await find_installed(sandbox)
    listed = "; ".join(t.describe() + (", the host's default" if t.default else "") for t in found)
    problems = [
        f"HONK_TOOLCHAIN_PATHS: {language}={path} holds no {language} toolchain"
        for language, path in sandbox.toolchain_paths
        if not any(t.source == "setting" and f"{t.bin_dir}/".startswith(f"{path}/") for t in found)
    ]
    problems += choose(found, defaults=dict(sandbox.toolchain_defaults)).notes
    if problems:
        return Check(
            "toolchains", WARN, " ".join(problems) + (f" Found: {listed}" if found else "")
        )
    if not found:
        return Check("toolchains", PASS, "none found besides the system's PATH")
    return Check("toolchains", PASS, f"{len(found)} found: {listed}")


async def check_store(settings: StoreSettings) -> Check:
    url = make_url(settings.database_url)
    redact.add(url.password if isinstance(url.password, str) else None)
    where = url.render_as_string(hide_password=True)
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    try:
        store = await Store.open(settings.database_url)
    except Exception as exc:
        if url.host and (why := unreachable(exc)):
            server = f"{url.host}:{url.port}" if url.port else url.host
            return Check("store", FAIL, f"cannot reach {server} (DATABASE_URL): {why}")
        return Check("store", FAIL, f"{where}: {type(exc).__name__}: {exc}"[:500])
    try:
        ok = await store.ping()
    finally:
        await store.close()
    if not ok:
        return Check("store", FAIL, f"{where}: migrated but does not answer")
    return Check("store", PASS, f"{where}: schema up to date")
