"""`honk doctor`'s checks of the web side: HONK_URL (every run page link) and sign-in with
GitHub (the App's OAuth client, the session key)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from app.cli.doctor_check import FAIL, PASS, WARN, Check
from app.config import Settings, WebSettings


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
