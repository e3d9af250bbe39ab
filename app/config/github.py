"""GitHub's settings: the App, its webhooks, its OAuth client, the label that starts a run,
and how fast Honk writes to GitHub (the pacer's limits)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from app.config.declare import Getter, Group, setting
from app.config.parse import (
    GITHUB_API_URL,
    GITHUB_URL,
    ConfigError,
    number,
    optional_int,
    optional_path,
    optional_text,
    private_key,
    share,
    text,
    whole,
)
from app.config.parse import url as http_url


@dataclass(frozen=True)
class GitHubSettings(Group):
    """The App, its webhooks, its OAuth client, and how fast Honk writes to GitHub."""

    section = "GitHub"

    app_id: int | None = setting(
        "APP_ID", optional_int, None, "the GitHub App's id (the set-up page writes it)"
    )
    private_key: str | None = setting(
        "PRIVATE_KEY",
        optional_text,
        None,
        (
            "the App's PEM private key, inline; a literal `\\n` stands for a newline (the set-up"
            " writes it this way, one line)"
        ),
        secret=True,
    )
    # Kept even when PRIVATE_KEY wins, so the sandbox can hide the file wherever it is.
    private_key_path: Path | None = setting(
        "PRIVATE_KEY_PATH",
        optional_path,
        None,
        (
            "a file holding the PEM key instead; `PRIVATE_KEY` wins when both are set. Either "
            "way the file never shows inside the sandbox"
        ),
    )
    webhook_secret: str | None = setting(
        "WEBHOOK_SECRET",
        optional_text,
        None,
        "verifies `X-Hub-Signature-256`; without it every webhook is refused",
        secret=True,
    )
    webhook_path: str = setting(
        "WEBHOOK_PATH", text, "/api/github/webhooks", "where GitHub's webhooks are received"
    )
    api_url: str = setting(
        "GITHUB_API_URL",
        http_url,
        GITHUB_API_URL,
        "GitHub Enterprise Server: `https://HOST/api/v3`",
        flat="github_api_url",
    )
    url: str = setting(
        "GITHUB_URL",
        http_url,
        GITHUB_URL,
        "the web host (the set-up, sign-in, noreply e-mail addresses)",
        flat="github_url",
    )
    client_id: str | None = setting(
        "GITHUB_CLIENT_ID",
        optional_text,
        None,
        (
            "the App's OAuth client, for signing in to the run pages and connecting GitHub from"
            " Slack (the set-up writes it)"
        ),
        flat="github_client_id",
    )
    client_secret: str | None = setting(
        "GITHUB_CLIENT_SECRET",
        optional_text,
        None,
        "that client's secret (the set-up writes it)",
        secret=True,
        flat="github_client_secret",
    )
    label: str = setting(
        "HONK_LABEL",
        text,
        "honk",
        ("the label that starts a run (a repository's `label:` names one more that does, there)"),
        section="The service",
    )
    # GitHub's secondary rate limits ask for about a second between content-creating requests.
    label_pause: float = setting(
        "HONK_LABEL_PAUSE",
        number(zero_ok=True),
        1.0,
        (
            "seconds between label writes when installing on an organization (GitHub's "
            "secondary rate limits)"
        ),
        section="The service",
    )
    # Paced per installation (app/github/pacing.py).
    writes_per_minute: int = setting(
        "HONK_GITHUB_WRITES_PER_MINUTE",
        whole(),
        60,
        (
            "content-creating requests (POST, PATCH, PUT, DELETE, GraphQL mutations) an "
            "installation may make in any minute (at least 1; GitHub allows about 80)"
        ),
        section="GitHub's rate limits",
        flat="github_writes_per_minute",
    )
    writes_per_hour: int = setting(
        "HONK_GITHUB_WRITES_PER_HOUR",
        whole(),
        450,
        "the same in any hour (at least 1; GitHub allows about 500)",
        section="GitHub's rate limits",
        flat="github_writes_per_hour",
    )
    writes_reserved: float = setting(
        "HONK_GITHUB_WRITES_RESERVED",
        share,
        0.25,
        (
            "the share of each minute and hour bulk work leaves to people and runs (half of it "
            "kept from runs for people's requests); from 0 up to, not including, 1"
        ),
        section="GitHub's rate limits",
        flat="github_writes_reserved",
    )
    primary_reserve: float = setting(
        "HONK_GITHUB_PRIMARY_RESERVE",
        share,
        0.10,
        (
            "the share of GitHub's primary limit (5,000 requests an hour) bulk work never "
            "spends: it waits for the reset; from 0 up to, not including, 1"
        ),
        section="GitHub's rate limits",
        flat="github_primary_reserve",
    )
    processes: int = setting(
        "HONK_PROCESSES",
        whole(),
        1,
        (
            "how many Honk processes (`honk serve` and `honk worker` alike) act for this App at"
            " once: each paces its writes to this share of the limits above"
        ),
        section="GitHub's rate limits",
    )

    def checked(self, get: Getter) -> GitHubSettings:
        key = private_key(get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH"))
        if self.app_id is not None and not key:
            raise ConfigError("PRIVATE_KEY or PRIVATE_KEY_PATH is required when APP_ID is set")
        return replace(self, private_key=key)

    @property
    def configured(self) -> bool:
        return self.app_id is not None and bool(self.private_key)

    @property
    def sign_in_configured(self) -> bool:
        return bool(self.client_id and self.client_secret)

    @property
    def graphql_url(self) -> str:
        """GitHub's GraphQL endpoint: /graphql beside the REST API (GHES: /api/graphql)."""
        api = self.api_url.rstrip("/")
        if api.endswith("/api/v3"):
            return api.removesuffix("/v3") + "/graphql"
        return api + "/graphql"
