"""`honk doctor`: check a configuration for real, one line per check; non-zero exit on a failure."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import anthropic
import gidgethub
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from app.config import ConfigError, Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.log import configure_logging, redact
from app.store import Store
from app.workspace.limits import SandboxLimits, memory_cap, process_cap
from app.workspace.sandbox import Sandbox

PASS, FAIL, SKIP = "pass", "fail", "skip"
MARKS = {PASS: "✓", FAIL: "✗", SKIP: "-"}
ASCII_MARKS = {PASS: "ok", FAIL: "FAIL", SKIP: "skip"}
CHECK_TIMEOUT = 60.0  # seconds for any one check
SHOWN_REPOS = 10  # repositories named per installation; the rest are counted
SLACK_TEST_MESSAGE = ":stethoscope: `honk doctor`: Honk can post in this channel."


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, FAIL or SKIP
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
    """Print every check in order, one line each; 0 when none failed, 1 otherwise."""
    failed = False

    def report(check: Check) -> None:
        nonlocal failed
        failed = failed or check.status == FAIL
        _print(out, check)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        report(check_private_key(settings))
        github_ok = settings.github_configured
        for check in await _guarded("GitHub App", _github_checks(settings, session, github_ok)):
            report(check)
        report(check_webhook_secret(settings))
        report(await _one("Anthropic", check_anthropic(settings)))
        for check in await _guarded("Slack", check_slack(settings, session)):
            report(check)
        report(await _one("sandbox", check_sandbox(settings)))
        report(await _one("store", check_store(settings)))
    return 1 if failed else 0


def _print(out: TextIO, check: Check) -> None:
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "✓✗".encode(encoding)
        ascii_only = False
    except (LookupError, UnicodeEncodeError):
        ascii_only = True
    out.write(check.line(ascii_only) + "\n")
    out.flush()


async def _one(name: str, check: Awaitable[Check]) -> Check:
    return (await _guarded(name, _as_list(check)))[0]


async def _as_list(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _guarded(name: str, checks: Awaitable[list[Check]]) -> list[Check]:
    """A check that raises or hangs fails with the reason instead of stopping the doctor."""
    try:
        return await asyncio.wait_for(checks, CHECK_TIMEOUT)
    except TimeoutError:
        return [Check(name, FAIL, f"no answer within {CHECK_TIMEOUT:.0f} s")]
    except Exception as exc:
        return [Check(name, FAIL, f"{type(exc).__name__}: {exc}")]


# --- GitHub ----------------------------------------------------------------------------


def check_private_key(settings: Settings) -> Check:
    if settings.app_id is None or not settings.private_key:
        return Check(
            "private key",
            FAIL,
            "APP_ID and PRIVATE_KEY are not set: run `honk serve` and open its page to "
            "register the GitHub App",
        )
    try:
        key = load_pem_private_key(settings.private_key.encode(), password=None)
    except (ValueError, TypeError):
        return Check("private key", FAIL, "PRIVATE_KEY is not a PEM private key that parses")
    if isinstance(key, rsa.RSAPrivateKey):
        kind = f"RSA {key.key_size} bits"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        return Check("private key", FAIL, "an EC key: GitHub Apps sign their JWT with RSA")
    else:
        kind = type(key).__name__
    return Check("private key", PASS, f"parses ({kind}) for App {settings.app_id}")


async def _github_checks(
    settings: Settings, session: aiohttp.ClientSession, configured: bool
) -> list[Check]:
    if not configured:
        skipped = "needs APP_ID and PRIVATE_KEY"
        return [Check("GitHub App", SKIP, skipped), Check("installations", SKIP, skipped)]
    github = GitHubApp(settings, session)
    app_client = _client(settings, session, lambda: _bearer(github))
    try:
        info = await app_client.getitem("/app")
    except gidgethub.HTTPException as exc:
        why = _github_reason(exc)
        return [
            Check(
                "GitHub App",
                FAIL,
                f"GET /app refused the JWT ({why}): APP_ID and the key "
                f"must belong to the same App on {settings.github_api_url}",
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
        session, base_url=settings.github_api_url, authorization=auth, max_retries=1, max_wait=5.0
    )


async def _bearer(github: GitHubApp) -> str:
    return f"Bearer {github.jwt()}"


async def _static(value: str) -> str:
    return value


def _github_reason(exc: gidgethub.HTTPException) -> str:
    return f"HTTP {int(exc.status_code)}: {str(exc) or exc.status_code.phrase}"


def check_webhook_secret(settings: Settings) -> Check:
    secret = settings.webhook_secret
    if not secret:
        return Check("webhook secret", FAIL, "WEBHOOK_SECRET is not set: every webhook is refused")
    if len(secret) < 16:
        return Check("webhook secret", PASS, f"set, but short ({len(secret)} characters)")
    return Check("webhook secret", PASS, f"set; webhooks verified at {settings.webhook_path}")


# --- Anthropic, Slack, sandbox, store --------------------------------------------------


async def check_anthropic(settings: Settings) -> Check:
    """A token count: authenticated and free, and it also proves the model name exists."""
    if not settings.anthropic_api_key:
        return Check("Anthropic", FAIL, "ANTHROPIC_API_KEY is not set")
    client = anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_retries=1,
        timeout=anthropic.Timeout(30.0, connect=10.0),
    )
    try:
        counted = await client.messages.count_tokens(
            model=settings.model, messages=[{"role": "user", "content": "honk doctor"}]
        )
    except anthropic.APIStatusError as exc:
        return Check("Anthropic", FAIL, f"HTTP {exc.status_code}: {_anthropic_reason(exc)}")
    except anthropic.APIConnectionError as exc:
        return Check("Anthropic", FAIL, f"cannot reach the API: {type(exc).__name__}")
    finally:
        await client.close()
    return Check(
        "Anthropic",
        PASS,
        f"key accepted; model {settings.model} counted {counted.input_tokens} tokens",
    )


def _anthropic_reason(exc: anthropic.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    kind, message = error.get("type"), error.get("message")
    return f"{kind}: {message}" if kind and message else str(exc.message)


async def check_slack(settings: Settings, session: aiohttp.ClientSession) -> list[Check]:
    """auth.test, then a real chat.postMessage: only posting proves the bot can post there
    (the chat:write scope, channel membership, an archived or misspelt channel)."""
    if not settings.slack_bot_token:
        return [Check("Slack", SKIP, "SLACK_BOT_TOKEN is not set: notifications are off")]
    client = AsyncWebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, session=session, timeout=20
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return [Check("Slack", FAIL, f"auth.test failed: {_slack_reason(exc)}")]
    checks = [Check("Slack", PASS, f"auth.test passed: @{auth.get('user')} in {auth.get('team')}")]
    channel = settings.slack_channel
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


async def check_sandbox(settings: Settings) -> Check:
    if settings.sandbox == "off":
        return Check("sandbox", SKIP, "HONK_SANDBOX=off: agent commands run unsandboxed (unsafe)")
    problem = await Sandbox.check(settings.sandbox)
    if problem:
        return Check("sandbox", FAIL, problem)
    if shutil.which("socat") is None:
        return Check("sandbox", FAIL, "socat is missing: sandboxes reach Honk's network proxy "
                     "through it (apt-get install socat)")  # fmt: skip
    cap = await asyncio.to_thread(process_cap)
    memory = await asyncio.to_thread(memory_cap, SandboxLimits.from_settings(settings))
    return Check(
        "sandbox",
        PASS,
        f"bwrap starts a sandbox; processes capped by {cap}; memory capped by {memory}; "
        "network via proxy",
    )


async def check_store(settings: Settings) -> Check:
    url = make_url(settings.database_url)
    redact.add(url.password if isinstance(url.password, str) else None)
    where = url.render_as_string(hide_password=True)
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    try:
        store = await Store.open(settings.database_url)
    except Exception as exc:
        return Check("store", FAIL, f"{where}: {type(exc).__name__}: {exc}"[:500])
    try:
        ok = await store.ping()
    finally:
        await store.close()
    if not ok:
        return Check("store", FAIL, f"{where}: migrated but does not answer")
    return Check("store", PASS, f"{where}: schema up to date")
