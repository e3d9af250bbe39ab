"""The web side's settings: where Honk listens and where people reach it (every link is built
from it), the run pages' session and token keys, /metrics."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.declare import Group, setting
from app.config.parse import fernet_key, optional_text, optional_url, text, whole


@dataclass(frozen=True)
class WebSettings(Group):
    """Where Honk listens, where people reach it, its run pages' keys, and /metrics."""

    section = "The service"

    host: str = setting("HOST", text, "0.0.0.0", "the address `honk serve` listens on")
    port: int = setting(
        "PORT",
        whole(0, 65535),
        3000,
        (
            "the HTTP port (0 to 65535; `honk serve --port` overrides it); webhooks at "
            "`WEBHOOK_PATH`, health at `/healthz`"
        ),
    )
    # Every link is built from it.
    url: str | None = setting(
        "HONK_URL",
        optional_url,
        None,
        (
            "where people reach Honk, e.g. `https://honk.example.com`: every run link, the "
            "sign-in callback and Slack's *Connect GitHub* link are built from it (without it, "
            "no links to run pages are posted)"
        ),
        flat="honk_url",
    )
    session_key: str | None = setting(
        "HONK_SESSION_KEY",
        fernet_key,
        None,
        (
            "a Fernet key for the run pages' session cookie (the set-up writes one); unset, a "
            "key made per process: sessions end at a restart and are not shared between "
            "processes"
        ),
        secret=True,
    )
    # Encrypts people's GitHub tokens at rest (Slack user -> GitHub); HONK_SESSION_KEY if unset.
    token_key: str | None = setting(
        "HONK_TOKEN_KEY",
        fernet_key,
        None,
        (
            "a Fernet key that encrypts people's GitHub tokens connected from Slack (the "
            "`github_connections` table); unset, `HONK_SESSION_KEY`'s; without either, a key of"
            " the process, and connections are lost on restart"
        ),
        secret=True,
    )
    # With this bearer token on the main port, and/or on a loopback port of its own (0: none).
    metrics_token: str | None = setting(
        "HONK_METRICS_TOKEN",
        optional_text,
        None,
        "serves `/metrics` on the main port to `Authorization: Bearer <token>`",
        secret=True,
        section="Metrics",
    )
    metrics_port: int = setting(
        "HONK_METRICS_PORT",
        whole(0, 65535),
        0,
        "serves `/metrics` without a token on `127.0.0.1:<port>` only; 0: not at all",
        section="Metrics",
    )

    def run_url(self, run_id: int | None) -> str | None:
        """The run's page, or None while HONK_URL (where people reach Honk) is not set."""
        if not self.url or run_id is None:
            return None
        return f"{self.url}/runs/{int(run_id)}"

    def fleet_url(self, fleet_id: int | None) -> str | None:
        """The fleet's page, or None while HONK_URL is not set."""
        if not self.url or fleet_id is None:
            return None
        return f"{self.url}/fleets/{int(fleet_id)}"
