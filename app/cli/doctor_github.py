"""`honk doctor`'s GitHub checks: the App's private key, its JWT at GET /app, each
installation's token and repositories, the webhook secret."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import gidgethub
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from app.cli.doctor_check import (
    FAIL,
    MIN_SECRET_CHARACTERS,
    MIN_SECRET_LENGTH,
    NEW_SECRET,
    PASS,
    SHOWN_REPOS,
    SKIP,
    WARN,
    Check,
)
from app.config import GitHubSettings, Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.log import redact


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


async def github_checks(
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
