"""Settings: the one place that reads the environment (and `.env`)."""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlparse

from dotenv import dotenv_values

from app.network_policy import Cap, NetworkSettingError, Presets, is_preset_name, parse_items

DEFAULT_MODEL = "claude-sonnet-4-6"
GITHUB_API_URL = "https://api.github.com"
GITHUB_URL = "https://github.com"
SLACK_API_URL = "https://slack.com/api/"
# The languages whose toolchains Honk finds on its host (app/workspace/toolchains.py).
TOOLCHAIN_LANGUAGES = ("rust", "node", "go", "java", "python", "maven", "gradle")
# Where version managers keep their toolchains when not in their default place under HOME:
# read only to find toolchains, never passed to a sandbox.
TOOLCHAIN_ENV = (
    "RUSTUP_HOME",
    "NVM_DIR",
    "FNM_DIR",
    "VOLTA_HOME",
    "SDKMAN_DIR",
    "PYENV_ROOT",
    "MISE_DATA_DIR",
    "ASDF_DATA_DIR",
)
_VERSION_SPEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/*-]{0,63}")


class ConfigError(ValueError):
    """A setting is missing or wrong: one line naming the variable and what it must be.

    It may echo a value that is not a secret (a number, a choice, a path), never a secret's.
    """


@dataclass(frozen=True)
class Settings:
    """Everything Honk is configured with. Secrets are kept out of `repr`."""

    app_id: int | None = None
    private_key: str | None = field(default=None, repr=False)
    # Kept so the sandbox can hide the file wherever it is.
    private_key_path: Path | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    github_api_url: str = GITHUB_API_URL
    github_url: str = GITHUB_URL
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str | None = None
    model: str = DEFAULT_MODEL
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_channel: str | None = None
    slack_api_url: str = SLACK_API_URL
    data_dir: Path = Path(".honk")
    database_url: str = ""
    label: str = "honk"
    workers: int = 2
    host: str = "0.0.0.0"
    port: int = 3000
    webhook_path: str = "/api/github/webhooks"
    # The sandbox: "bwrap" (default) or "off" (unsafe, explicit opt-out).
    sandbox: str = "bwrap"
    sandbox_ro_paths: tuple[str, ...] = ()
    # The Python the sandbox offers (a prefix holding bin/python3: an installation or a
    # venv); None: the installation Honk's own venv was made from (sys.base_prefix).
    sandbox_python: Path | None = None
    # More toolchain roots (language, path) besides those found on the host, the version
    # each language gets when a repository declares none (language, version), and where
    # version managers keep theirs (TOOLCHAIN_ENV's variables that are set).
    toolchain_paths: tuple[tuple[str, str], ...] = ()
    toolchain_defaults: tuple[tuple[str, str], ...] = ()
    toolchain_env: tuple[tuple[str, str], ...] = ()
    # Per sandboxed command (docs/security.md, "The sandbox"): tasks, data segment per process,
    # any one file, /tmp and /dev/shm each, and how much the checkout's work tree may hold.
    sandbox_max_processes: int = 512
    sandbox_memory_mb: int = 4096
    sandbox_file_size_mb: int = 1024
    sandbox_tmp_mb: int = 512
    sandbox_disk_mb: int = 10240
    # What repositories may let their sandboxes reach (`network:`, `setup_network:`): hosts,
    # presets or "*"; None: every preset and no other host. And the operator's own presets
    # (replacing a built-in one, e.g. PyPI by a mirror), name -> entries.
    network_allow: tuple[str, ...] | None = None
    network_presets: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The editor tool reads and writes files up to this size.
    editor_max_file_mb: int = 10
    # Per-run checkouts, under opaque names: the sandbox's mount table shows this path.
    checkout_dir: Path = field(default_factory=lambda: default_checkout_dir())
    # Package caches kept across runs per repository (workspace/caches.py): their total, MiB
    # (0: off), and where (None: data_dir/caches).
    cache_max_mb: int = 10240
    cache_dir: Path | None = None
    # Agent limits; a repository's .github/honk.yml may lower them (repo_config.run_limits).
    max_turns: int = 40
    max_minutes: float = 30.0
    max_tokens: int = 3_000_000
    command_timeout: float = 600.0
    output_limit: int = 30_000
    ci_repair_rounds: int = 2
    # The review before a PR (app/runs/review.py): the judge's model, whether it runs by
    # default, whether a repository may turn the deterministic checks off, the diff it sees.
    review_model: str = DEFAULT_MODEL
    model_judge: bool = True
    review_checks_optional: bool = False
    review_diff_chars: int = 60_000
    # Whether a repository may turn the review's outcome checks off (`review: {outcome: off}`).
    review_outcome_optional: bool = False
    # Pause between label writes when installing on an org: GitHub's secondary rate
    # limits ask for about a second between content-creating requests.
    label_pause: float = 1.0
    # GitHub's limits, paced per installation (app/github/pacing.py): content-creating
    # requests a minute and an hour (GitHub allows about 80 and 500), the share of each
    # window bulk work leaves to people and runs, the share of the primary budget (5,000
    # requests an hour) bulk work never spends, and how many processes split the budget.
    github_writes_per_minute: int = 60
    github_writes_per_hour: int = 450
    github_writes_reserved: float = 0.25
    github_primary_reserve: float = 0.10
    processes: int = 1
    # Queue leases: a worker renews every lease_seconds/3; a dead worker's run is
    # claimed again once its lease has run out.
    lease_seconds: float = 60.0
    poll_interval: float = 1.0
    # /metrics: with this bearer token on the main port, and/or unauthenticated on a port of
    # its own bound to loopback (0: none).
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int = 0
    # Finished deliveries older than this are removed in the background; runs are kept.
    retention_days: float = 14.0
    log_level: str = "INFO"
    log_format: str = "auto"  # auto | json | text
    env_file: Path | None = None
    # The run pages: where people reach Honk (every link is built from it), the App's own
    # OAuth client (sign-in with GitHub) and the key of the encrypted session cookie.
    honk_url: str | None = None
    github_client_id: str | None = None
    github_client_secret: str | None = field(default=None, repr=False)
    session_key: str | None = field(default=None, repr=False)
    # Encrypts people's GitHub tokens at rest (Slack user -> GitHub); HONK_SESSION_KEY if unset.
    token_key: str | None = field(default=None, repr=False)

    @property
    def github_configured(self) -> bool:
        return self.app_id is not None and bool(self.private_key)

    @property
    def package_cache_dir(self) -> Path:
        """Where package caches are kept across runs: HONK_CACHE_DIR, else in the data dir."""
        return self.cache_dir or self.data_dir / "caches"

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_channel)

    @property
    def sign_in_configured(self) -> bool:
        return bool(self.github_client_id and self.github_client_secret)

    @property
    def github_graphql_url(self) -> str:
        """GitHub's GraphQL endpoint: /graphql beside the REST API (GHES: /api/graphql)."""
        api = self.github_api_url.rstrip("/")
        if api.endswith("/api/v3"):
            return api.removesuffix("/v3") + "/graphql"
        return api + "/graphql"

    def run_url(self, run_id: int | None) -> str | None:
        """The run's page, or None while HONK_URL (where people reach Honk) is not set."""
        if not self.honk_url or run_id is None:
            return None
        return f"{self.honk_url}/runs/{int(run_id)}"

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        values = [
            self.private_key,
            self.webhook_secret,
            self.anthropic_api_key,
            self.slack_bot_token,
            self.slack_signing_secret,
            self.metrics_token,
            self.github_client_secret,
            self.session_key,
            self.token_key,
        ]
        return [v for v in values if v]

    def network_cap(self) -> Cap:
        """HONK_NETWORK_ALLOW over the presets (HONK_NETWORK_PRESETS included)."""
        return Cap(self.network_allow, Presets.with_overrides(dict(self.network_presets)))

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read settings from `environ` (default os.environ) over the values in `env_file`."""
        env: dict[str, str] = {}
        env_path = Path(env_file) if env_file else None
        if env_path is not None and env_path.is_file():
            try:
                values = dotenv_values(env_path)
            except OSError as exc:
                raise ConfigError(f"{env_path} cannot be read: {_reason(exc)}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{env_path} is not UTF-8 text") from None
            env.update({k: v for k, v in values.items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return cls._parse(env, env_path)

    @classmethod
    def _parse(cls, env: Mapping[str, str], env_path: Path | None) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else None

        data_dir = Path(get("HONK_DATA_DIR") or ".honk")
        model = get("HONK_MODEL") or DEFAULT_MODEL
        database_url = get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'honk.db'}"
        settings = cls(
            app_id=_int(get("APP_ID"), "APP_ID") if get("APP_ID") else None,
            private_key=_private_key(get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH")),
            # Kept even when PRIVATE_KEY wins: the file is a secret on disk all the same.
            private_key_path=_absolute(get("PRIVATE_KEY_PATH")),
            webhook_secret=get("WEBHOOK_SECRET"),
            github_api_url=_url(get("GITHUB_API_URL") or GITHUB_API_URL, "GITHUB_API_URL"),
            github_url=_url(get("GITHUB_URL") or GITHUB_URL, "GITHUB_URL"),
            anthropic_api_key=get("ANTHROPIC_API_KEY"),
            anthropic_base_url=(
                _url(base_url, "ANTHROPIC_BASE_URL")
                if (base_url := get("ANTHROPIC_BASE_URL"))
                else None
            ),
            model=model,
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_channel=get("SLACK_CHANNEL"),
            slack_api_url=_slash(_url(get("SLACK_API_URL") or SLACK_API_URL, "SLACK_API_URL")),
            data_dir=data_dir,
            database_url=_database_url(database_url),
            label=get("HONK_LABEL") or "honk",
            workers=_int(get("HONK_WORKERS") or "2", "HONK_WORKERS", minimum=0),
            host=get("HOST") or "0.0.0.0",
            port=_int(get("PORT") or "3000", "PORT", minimum=0, maximum=65535),
            webhook_path=get("WEBHOOK_PATH") or "/api/github/webhooks",
            sandbox=_choice(get("HONK_SANDBOX") or "bwrap", "HONK_SANDBOX", ("bwrap", "off")),
            sandbox_ro_paths=tuple(
                p for p in (get("HONK_SANDBOX_RO_PATHS") or "").split(os.pathsep) if p
            ),
            sandbox_python=_sandbox_python(get("HONK_SANDBOX_PYTHON")),
            toolchain_paths=_toolchain_pairs(get("HONK_TOOLCHAIN_PATHS"), "HONK_TOOLCHAIN_PATHS"),
            toolchain_defaults=_toolchain_pairs(
                get("HONK_TOOLCHAIN_DEFAULTS"), "HONK_TOOLCHAIN_DEFAULTS"
            ),
            toolchain_env=tuple(
                (name, value) for name in TOOLCHAIN_ENV if (value := get(name)) is not None
            ),
            sandbox_max_processes=_int(
                get("HONK_SANDBOX_MAX_PROCESSES") or "512", "HONK_SANDBOX_MAX_PROCESSES", 16
            ),
            sandbox_memory_mb=_int(
                get("HONK_SANDBOX_MEMORY_MB") or "4096", "HONK_SANDBOX_MEMORY_MB", 64
            ),
            sandbox_file_size_mb=_int(
                get("HONK_SANDBOX_FILE_SIZE_MB") or "1024", "HONK_SANDBOX_FILE_SIZE_MB", 1
            ),
            sandbox_tmp_mb=_int(get("HONK_SANDBOX_TMP_MB") or "512", "HONK_SANDBOX_TMP_MB", 1),
            sandbox_disk_mb=_int(get("HONK_SANDBOX_DISK_MB") or "10240", "HONK_SANDBOX_DISK_MB", 1),
            **_network(get("HONK_NETWORK_ALLOW"), get("HONK_NETWORK_PRESETS")),
            editor_max_file_mb=_int(
                get("HONK_EDITOR_MAX_FILE_MB") or "10", "HONK_EDITOR_MAX_FILE_MB", 1, 1024
            ),
            checkout_dir=Path(get("HONK_CHECKOUT_DIR") or default_checkout_dir()),
            cache_max_mb=_int(get("HONK_CACHE_MAX_MB") or "10240", "HONK_CACHE_MAX_MB", 0),
            cache_dir=_absolute(get("HONK_CACHE_DIR")),
            max_turns=_int(get("HONK_MAX_TURNS") or "40", "HONK_MAX_TURNS", minimum=1),
            max_minutes=_float(get("HONK_MAX_MINUTES") or "30", "HONK_MAX_MINUTES"),
            max_tokens=_int(get("HONK_MAX_TOKENS") or "3000000", "HONK_MAX_TOKENS", minimum=1),
            command_timeout=_float(get("HONK_COMMAND_TIMEOUT") or "600", "HONK_COMMAND_TIMEOUT"),
            output_limit=_int(
                get("HONK_OUTPUT_LIMIT") or "30000", "HONK_OUTPUT_LIMIT", minimum=1000
            ),
            ci_repair_rounds=_int(
                get("HONK_CI_REPAIR_ROUNDS") or "2", "HONK_CI_REPAIR_ROUNDS", minimum=0
            ),
            review_model=get("HONK_REVIEW_MODEL") or model,
            model_judge=_bool(get("HONK_MODEL_JUDGE") or "on", "HONK_MODEL_JUDGE"),
            review_checks_optional=_bool(
                get("HONK_REVIEW_CHECKS_OPTIONAL") or "off", "HONK_REVIEW_CHECKS_OPTIONAL"
            ),
            review_diff_chars=_int(
                get("HONK_REVIEW_DIFF_CHARS") or "60000", "HONK_REVIEW_DIFF_CHARS", minimum=1000
            ),
            review_outcome_optional=_bool(
                get("HONK_REVIEW_OUTCOME_OPTIONAL") or "off", "HONK_REVIEW_OUTCOME_OPTIONAL"
            ),
            label_pause=_float(get("HONK_LABEL_PAUSE") or "1", "HONK_LABEL_PAUSE", zero_ok=True),
            github_writes_per_minute=_int(
                get("HONK_GITHUB_WRITES_PER_MINUTE") or "60", "HONK_GITHUB_WRITES_PER_MINUTE"
            ),
            github_writes_per_hour=_int(
                get("HONK_GITHUB_WRITES_PER_HOUR") or "450", "HONK_GITHUB_WRITES_PER_HOUR"
            ),
            github_writes_reserved=_share(
                get("HONK_GITHUB_WRITES_RESERVED") or "0.25", "HONK_GITHUB_WRITES_RESERVED"
            ),
            github_primary_reserve=_share(
                get("HONK_GITHUB_PRIMARY_RESERVE") or "0.1", "HONK_GITHUB_PRIMARY_RESERVE"
            ),
            processes=_int(get("HONK_PROCESSES") or "1", "HONK_PROCESSES"),
            lease_seconds=_float(get("HONK_LEASE_SECONDS") or "60", "HONK_LEASE_SECONDS"),
            poll_interval=_float(get("HONK_POLL_INTERVAL") or "1", "HONK_POLL_INTERVAL"),
            metrics_token=get("HONK_METRICS_TOKEN"),
            metrics_port=_int(
                get("HONK_METRICS_PORT") or "0", "HONK_METRICS_PORT", minimum=0, maximum=65535
            ),
            retention_days=_float(get("HONK_RETENTION_DAYS") or "14", "HONK_RETENTION_DAYS"),
            log_level=_choice(
                (get("LOG_LEVEL") or "INFO").upper(),
                "LOG_LEVEL",
                ("DEBUG", "INFO", "WARNING", "ERROR"),
            ),
            log_format=_choice(get("LOG_FORMAT") or "auto", "LOG_FORMAT", ("auto", "json", "text")),
            env_file=env_path,
            honk_url=_url(url, "HONK_URL") if (url := get("HONK_URL")) else None,
            github_client_id=get("GITHUB_CLIENT_ID"),
            github_client_secret=get("GITHUB_CLIENT_SECRET"),
            session_key=_fernet_key(get("HONK_SESSION_KEY"), "HONK_SESSION_KEY"),
            token_key=_fernet_key(get("HONK_TOKEN_KEY"), "HONK_TOKEN_KEY"),
        )
        if settings.app_id is not None and not settings.private_key:
            raise ConfigError("PRIVATE_KEY or PRIVATE_KEY_PATH is required when APP_ID is set")
        return settings


class _Network(TypedDict):
    network_allow: tuple[str, ...] | None
    network_presets: tuple[tuple[str, tuple[str, ...]], ...]


def _network(allow: str | None, presets: str | None) -> _Network:
    """HONK_NETWORK_ALLOW ("pypi npm *.internal.example mirror.internal:3141", or "*") and
    HONK_NETWORK_PRESETS ("pypi=mirror.internal:3141; tools=a.example b.example")."""
    overrides: dict[str, tuple[str, ...]] = {}
    for part in (presets or "").split(";"):
        if not part.strip():
            continue
        name, sep, entries = part.partition("=")
        if not sep:
            raise ConfigError("HONK_NETWORK_PRESETS is a list of name=host,host separated by ;")
        overrides[name.strip().lower()] = tuple(entries.replace(",", " ").split())
    try:
        cap = Cap(
            parse_items((allow or "").replace(",", " ").split(), "HONK_NETWORK_ALLOW")
            if allow is not None
            else None,
            Presets.with_overrides(overrides),
        )
        for item in cap.items or ():
            if is_preset_name(item) and item not in cap.presets.items:
                cap.presets.rules(item)  # raises: not a preset
    except NetworkSettingError as exc:
        raise ConfigError(
            str(exc) if "HONK_" in str(exc) else f"HONK_NETWORK_ALLOW: {exc}"
        ) from None
    return {"network_allow": cap.items, "network_presets": tuple(overrides.items())}


def default_checkout_dir() -> Path:
    """Disk-backed temporary space outside the data directory, one directory per user."""
    base = Path("/var/tmp")
    if not base.is_dir():
        base = Path(tempfile.gettempdir())
    return base / f"honk-checkouts-{os.getuid()}"


def _sandbox_python(value: str | None) -> Path | None:
    """HONK_SANDBOX_PYTHON: the prefix of a Python installation or venv, not Honk's own venv."""
    if value is None:
        return None
    prefix = Path(value).absolute()
    interpreter = prefix / "bin" / "python3"
    if not (interpreter.is_file() and os.access(interpreter, os.X_OK)):
        raise ConfigError(
            f"HONK_SANDBOX_PYTHON: {interpreter} is not an executable; give the prefix of a "
            "Python installation or virtualenv (the directory that holds bin/python3)"
        )
    own = Path(sys.prefix).resolve()
    if sys.prefix != sys.base_prefix and own in (prefix.resolve(), *prefix.resolve().parents):
        raise ConfigError(
            f"HONK_SANDBOX_PYTHON: {prefix} is Honk's own virtualenv, whose packages the "
            "sandbox never shows; make a virtualenv for the sandbox, or leave it unset for "
            f"the Python Honk's venv was made from ({sys.base_prefix})"
        )
    return prefix


def _toolchain_pairs(value: str | None, name: str) -> tuple[tuple[str, str], ...]:
    """`lang=value` items, comma-separated: HONK_TOOLCHAIN_PATHS (absolute paths) and
    HONK_TOOLCHAIN_DEFAULTS (versions, one per language)."""
    pairs: list[tuple[str, str]] = []
    paths = name == "HONK_TOOLCHAIN_PATHS"
    what = "an absolute path" if paths else "a version"
    for item in (value or "").split(","):
        if not item.strip():
            continue
        language, sep, given = (part.strip() for part in item.partition("="))
        if not sep or not given:
            raise ConfigError(
                f"{name} is a list of language={what}, comma-separated (got {_shown(item.strip())})"
            )
        if language not in TOOLCHAIN_LANGUAGES:
            raise ConfigError(
                f"{name}: {_shown(language)} is not one of: {', '.join(TOOLCHAIN_LANGUAGES)}"
            )
        if paths and not given.startswith("/"):
            raise ConfigError(f"{name}: {language}={_shown(given)} is not an absolute path")
        if not paths:
            if not _VERSION_SPEC.fullmatch(given):
                raise ConfigError(f"{name}: {language}={_shown(given)} is not a version")
            if any(known == language for known, _ in pairs):
                raise ConfigError(f"{name} names {language} twice")
        pairs.append((language, (given.rstrip("/") or "/") if paths else given))
    return tuple(pairs)


def _absolute(value: str | None) -> Path | None:
    return Path(value).absolute() if value else None


def _int(value: str | None, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {_shown(value)})") from None
    if number < minimum or (maximum is not None and number > maximum):
        allowed = (
            f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        )
        raise ConfigError(f"{name} must be {allowed} (got {number})")
    return number


def _float(value: str, name: str, zero_ok: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {_shown(value)})") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number (got {_shown(value)})")
    if number < 0 or (number == 0 and not zero_ok):
        allowed = "0 or more" if zero_ok else "more than 0"
        raise ConfigError(f"{name} must be {allowed} (got {value.strip()})")
    return number


def _share(value: str, name: str) -> float:
    """A fraction from 0 up to, not including, 1 (a share that leaves something)."""
    number = _float(value, name, zero_ok=True)
    if number >= 1:
        raise ConfigError(f"{name} must be from 0 up to, not including, 1 (got {value.strip()})")
    return number


def _shown(value: str | None) -> str:
    """A non-secret value as given, quoted and cut short, for an error message."""
    text = value or ""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name} must be on or off (got {_shown(value)})")


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of: {', '.join(choices)} (got {_shown(value)})")
    return value


def _url(value: str, name: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return value.rstrip("/") if not value.endswith("/api/") else value


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _database_url(value: str) -> str:
    scheme = value.split(":", 1)[0]
    if scheme.startswith("postgresql") and "+" not in scheme:
        value = "postgresql+asyncpg" + value[len(scheme) :]
    elif scheme == "sqlite":
        value = "sqlite+aiosqlite" + value[len(scheme) :]
    if value.split(":", 1)[0] not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError("DATABASE_URL must be sqlite:// or postgresql://")
    return value


def _fernet_key(value: str | None, name: str) -> str | None:
    """A Fernet key (32 url-safe base64 bytes), as `honk serve`'s set-up writes it."""
    if value is None:
        return None
    from cryptography.fernet import Fernet

    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            f"{name} must be a Fernet key (32 url-safe base64-encoded bytes; "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())")'
        ) from None
    return value


def _private_key(literal: str | None, path: str | None) -> str | None:
    if literal:
        key = literal.replace("\\n", "\n").strip() + "\n"
    elif path:
        try:
            key = Path(path).read_text()
        except OSError as exc:
            # The path and the OS's reason say what to fix; the file's content is never shown.
            raise ConfigError(f"PRIVATE_KEY_PATH {path} cannot be read: {_reason(exc)}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"PRIVATE_KEY_PATH {path} is not a text (PEM) file") from None
    else:
        return None
    if "PRIVATE KEY-----" not in key:
        raise ConfigError(
            "PRIVATE_KEY is not a PEM private key"
            if literal
            else f"PRIVATE_KEY_PATH {path} does not hold a PEM private key"
        )
    # Parse once so a broken key stops start-up, not the first webhook.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "PRIVATE_KEY cannot be parsed"
            if literal
            else f"PRIVATE_KEY_PATH {path} cannot be parsed as a private key"
        ) from None
    return key


def _reason(exc: OSError) -> str:
    """The OS's words for why a file could not be used, e.g. "No such file or directory"."""
    return exc.strerror or type(exc).__name__
