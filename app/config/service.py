"""The service's settings, each declared once: GitHub, Slack, the web side, the store, logs,
fleets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from app.config.declare import Getter, Group, setting
from app.config.parse import (
    GITHUB_API_URL,
    GITHUB_URL,
    SLACK_API_URL,
    ConfigError,
    database_url,
    fernet_key,
    number,
    one_of,
    optional_int,
    optional_path,
    optional_text,
    optional_url,
    path,
    private_key,
    share,
    slashed_url,
    text,
    whole,
)
from app.config.parse import (
    url as http_url,
)


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


@dataclass(frozen=True)
class SlackSettings(Group):
    section = "Slack"

    bot_token: str | None = setting(
        "SLACK_BOT_TOKEN",
        optional_text,
        None,
        "the Slack app's *Bot User OAuth Token* (`xoxb-…`)",
        secret=True,
        flat="slack_bot_token",
    )
    signing_secret: str | None = setting(
        "SLACK_SIGNING_SECRET",
        optional_text,
        None,
        "*Basic Information → Signing Secret*: verifies every request from Slack",
        secret=True,
        flat="slack_signing_secret",
    )
    channel: str | None = setting(
        "SLACK_CHANNEL",
        optional_text,
        None,
        "where runs started on GitHub report (`#honk` or a channel id)",
        flat="slack_channel",
    )
    api_url: str = setting(
        "SLACK_API_URL",
        slashed_url,
        SLACK_API_URL,
        "the Slack Web API's base URL",
        flat="slack_api_url",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token and self.channel)


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


@dataclass(frozen=True)
class StoreSettings(Group):
    """The data directory, the database, and the queue's workers and leases."""

    section = "Storage"

    data_dir: Path = setting(
        "HONK_DATA_DIR",
        path,
        Path(".honk"),
        "mirrors, the SQLite database, the key that names checkouts",
    )
    # Unset: honk.db in the data directory (filled in by `checked`).
    database_url: str = setting(
        "DATABASE_URL",
        database_url,
        "",
        (
            "the store; unset, `honk.db` in `HONK_DATA_DIR`. `postgresql://…` shares one queue "
            "between processes and machines ([scale-out.md](scale-out.md))"
        ),
        shown="`sqlite:///.honk/honk.db`",
    )
    retention_days: float = setting(
        "HONK_RETENTION_DAYS",
        number(),
        14.0,
        "finished deliveries older than this are removed (hourly); runs are kept",
    )
    workers: int = setting(
        "HONK_WORKERS",
        whole(0),
        2,
        (
            "concurrent runs in this process (0: `honk serve` only answers webhooks; `honk "
            "worker` runs at least 1)"
        ),
        section="The service",
    )
    # A worker renews every lease_seconds/3; a dead worker's run is claimed again after it.
    lease_seconds: float = setting(
        "HONK_LEASE_SECONDS",
        number(),
        60.0,
        (
            "how long a run's and a stored delivery's lease lasts, renewed every third of it: a"
            " dead process's runs and deliveries are taken over after this"
        ),
        section="The service",
    )
    poll_interval: float = setting(
        "HONK_POLL_INTERVAL",
        number(),
        1.0,
        (
            "seconds between looks at the store for work nothing woke this process for (another"
            " process's deliveries and runs)"
        ),
        section="The service",
    )

    def checked(self, get: Getter) -> StoreSettings:
        if self.database_url:
            return self
        return replace(self, database_url=f"sqlite+aiosqlite:///{self.data_dir / 'honk.db'}")


@dataclass(frozen=True)
class LogSettings(Group):
    section = "The service"

    level: str = setting(
        "LOG_LEVEL",
        one_of("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
        "INFO",
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`",
        flat="log_level",
    )
    format: str = setting(
        "LOG_FORMAT",
        one_of("auto", "json", "text"),
        "auto",
        "`json`, `text`, or `auto`: JSON lines when not on a terminal",
        flat="log_format",
    )


@dataclass(frozen=True)
class FleetSettings(Group):
    """How a fleet change is taken to its repositories: its canary, how many of its runs go at
    once, when it pauses itself, how large it may be (docs/fleet.md)."""

    section = "Fleet changes"

    canary_size: int = setting(
        "HONK_FLEET_CANARY",
        whole(1),
        1,
        "repositories a fleet tries first, before the requester says Continue (a request's "
        "`canary: N` wins)",
        flat="fleet_canary",
    )
    concurrency: int = setting(
        "HONK_FLEET_CONCURRENCY",
        whole(1),
        4,
        "runs of one fleet queued or working at once",
        flat="fleet_concurrency",
    )
    # Unset: half of this process's workers (at least 1), so ordinary runs keep workers free.
    max_runs: int | None = setting(
        "HONK_FLEET_MAX_RUNS",
        optional_int,
        None,
        (
            "runs of all fleets of one installation queued or working at once, so that an issue"
            " labelled during a fleet still finds a worker; unset, half of this process's"
            " workers (at least 1)"
        ),
        flat="fleet_max_runs",
    )
    pause_after: int = setting(
        "HONK_FLEET_PAUSE_AFTER",
        whole(1),
        3,
        "failures in a row after which a fleet pauses itself and says why",
        flat="fleet_pause_after",
    )
    max_repos: int = setting(
        "HONK_FLEET_MAX_REPOS",
        whole(1),
        500,
        "the most repositories one fleet may take; a larger selection leaves the rest out",
        flat="fleet_max_repos",
    )
    poll_seconds: float = setting(
        "HONK_FLEET_POLL_SECONDS",
        number(),
        5.0,
        (
            "seconds between the conductor's looks at its fleets when nothing woke it (a run"
            " of another process ended)"
        ),
        flat="fleet_poll_seconds",
    )

    def run_cap(self, workers: int) -> int:
        """Fleet runs in flight per installation: the setting, else half of `workers`."""
        return self.max_runs if self.max_runs is not None else max(1, workers // 2)
