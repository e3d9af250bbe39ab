"""Settings from the environment and .env: defaults, parsing, one-line errors without secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import DEFAULT_MODEL, ConfigError, Settings


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=tmp_path / "missing.env")
    assert settings.web.port == 3000
    assert settings.github.webhook_path == "/api/github/webhooks"
    assert settings.github.api_url == "https://api.github.com"
    assert settings.slack.api_url == "https://slack.com/api/"
    assert settings.agent.model == DEFAULT_MODEL
    assert settings.github.label == "honk"
    assert settings.store.workers == 2
    assert settings.store.data_dir == Path(".honk")
    assert settings.store.database_url == "sqlite+aiosqlite:///.honk/honk.db"
    assert not settings.slack.enabled
    assert not settings.github.configured


def test_private_key_with_literal_newlines(private_key_pem: str) -> None:
    escaped = private_key_pem.strip().replace("\n", "\\n")
    settings = Settings.from_env({"APP_ID": "12", "PRIVATE_KEY": escaped}, env_file=None)
    assert settings.github.app_id == 12
    assert settings.github.private_key is not None
    assert settings.github.private_key.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert settings.github.configured


def test_private_key_path(tmp_path: Path, private_key_pem: str) -> None:
    key = tmp_path / "app.pem"
    key.write_text(private_key_pem)
    settings = Settings.from_env({"APP_ID": "1", "PRIVATE_KEY_PATH": str(key)}, env_file=None)
    assert settings.github.private_key == private_key_pem
    # The path is kept, so the sandbox can hide the file wherever it is.
    assert settings.github.private_key_path == key


def test_sandbox_limits_and_checkout_dir(tmp_path: Path) -> None:
    defaults = Settings.from_env({}, env_file=None)
    assert (defaults.sandbox.max_processes, defaults.sandbox.memory_mb) == (512, 4096)
    assert (defaults.sandbox.file_size_mb, defaults.sandbox.tmp_mb) == (1024, 512)
    assert (defaults.sandbox.disk_mb, defaults.agent.editor_max_file_mb) == (10240, 10)
    # Outside the data directory: the sandbox's mount table shows where checkouts are.
    assert defaults.sandbox.checkout_dir.name.startswith("honk-checkouts-")
    assert defaults.store.data_dir not in (
        defaults.sandbox.checkout_dir,
        *defaults.sandbox.checkout_dir.parents,
    )
    chosen = Settings.from_env(
        {
            "HONK_SANDBOX_MAX_PROCESSES": "64",
            "HONK_SANDBOX_MEMORY_MB": "256",
            "HONK_SANDBOX_FILE_SIZE_MB": "8",
            "HONK_SANDBOX_TMP_MB": "16",
            "HONK_SANDBOX_DISK_MB": "100",
            "HONK_EDITOR_MAX_FILE_MB": "2",
            "HONK_CHECKOUT_DIR": str(tmp_path / "co"),
        },
        env_file=None,
    )
    assert (chosen.sandbox.max_processes, chosen.sandbox.memory_mb) == (64, 256)
    assert (chosen.sandbox.file_size_mb, chosen.sandbox.tmp_mb) == (8, 16)
    assert (chosen.sandbox.disk_mb, chosen.agent.editor_max_file_mb) == (100, 2)
    assert chosen.sandbox.checkout_dir == tmp_path / "co"


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HONK_LABEL=from-file\nPORT=4000\nSLACK_CHANNEL=C1\n")
    settings = Settings.from_env({"PORT": "5000"}, env_file=env_file)
    assert settings.github.label == "from-file"
    assert settings.web.port == 5000
    assert settings.slack.channel == "C1"


def test_enterprise_urls_and_postgres_url() -> None:
    settings = Settings.from_env(
        {
            "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
            "DATABASE_URL": "postgresql://honk@db/honk",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
        },
        env_file=None,
    )
    assert settings.github.api_url == "https://ghe.example.com/api/v3"
    assert settings.store.database_url == "postgresql+asyncpg://honk@db/honk"
    assert settings.slack.api_url == "http://127.0.0.1:9/api/"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"APP_ID": "abc"}, "APP_ID"),
        ({"APP_ID": "1"}, "PRIVATE_KEY"),
        ({"APP_ID": "1", "PRIVATE_KEY_PATH": "/nonexistent/key.pem"}, "PRIVATE_KEY_PATH"),
        ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
        ({"PORT": "70000"}, "PORT"),
        ({"HONK_WORKERS": "many"}, "HONK_WORKERS"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"HONK_SANDBOX": "docker"}, "HONK_SANDBOX"),
        ({"HONK_SANDBOX_MAX_PROCESSES": "4"}, "HONK_SANDBOX_MAX_PROCESSES"),
        ({"HONK_SANDBOX_MEMORY_MB": "lots"}, "HONK_SANDBOX_MEMORY_MB"),
        ({"HONK_SANDBOX_FILE_SIZE_MB": "0"}, "HONK_SANDBOX_FILE_SIZE_MB"),
        ({"HONK_SANDBOX_TMP_MB": "-1"}, "HONK_SANDBOX_TMP_MB"),
        ({"HONK_SANDBOX_DISK_MB": "1.5"}, "HONK_SANDBOX_DISK_MB"),
        ({"HONK_EDITOR_MAX_FILE_MB": "5000"}, "HONK_EDITOR_MAX_FILE_MB"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env, env_file=None)


def test_unparseable_key_is_refused_without_printing_it() -> None:
    secret_body = "c2VjcmV0LWtleS1tYXRlcmlhbA"
    bad = f"-----BEGIN RSA PRIVATE KEY-----\\n{secret_body}\\n-----END RSA PRIVATE KEY-----"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"APP_ID": "1", "PRIVATE_KEY": bad}, env_file=None)
    assert "PRIVATE_KEY" in str(info.value)
    assert secret_body not in str(info.value)


def test_secrets_stay_out_of_repr(private_key_pem: str) -> None:
    settings = Settings.from_env(
        {
            "APP_ID": "1",
            "PRIVATE_KEY": private_key_pem,
            "WEBHOOK_SECRET": "whsec-abcdef",
            "SLACK_BOT_TOKEN": "xoxb-1-2-3",
        },
        env_file=None,
    )
    text = repr(settings)
    assert "whsec-abcdef" not in text and "xoxb-1-2-3" not in text and "PRIVATE KEY" not in text
    assert set(settings.secrets()) >= {"whsec-abcdef", "xoxb-1-2-3"}


def test_cli_reports_config_error_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.__main__ import main

    monkeypatch.setenv("APP_ID", "1")
    monkeypatch.setenv("PRIVATE_KEY_PATH", str(tmp_path / "nope.pem"))
    assert main(["--env-file", "", "migrate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"honk: configuration error: PRIVATE_KEY_PATH {tmp_path / 'nope.pem'} cannot be read: "
        "No such file or directory"
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HONK_MAX_TURNS": "0"}, "HONK_MAX_TURNS must be at least 1 (got 0)"),
        ({"PORT": "70000"}, "PORT must be between 0 and 65535 (got 70000)"),
        ({"PORT": "-1"}, "PORT must be between 0 and 65535 (got -1)"),
        (
            {"HONK_METRICS_PORT": "65536"},
            "HONK_METRICS_PORT must be between 0 and 65535 (got 65536)",
        ),
        ({"HONK_WORKERS": "many"}, "HONK_WORKERS must be a whole number (got 'many')"),
        ({"HONK_WORKERS": "-2"}, "HONK_WORKERS must be at least 0 (got -2)"),
        (
            {"HONK_SANDBOX_MAX_PROCESSES": "4"},
            "HONK_SANDBOX_MAX_PROCESSES must be at least 16 (got 4)",
        ),
        (
            {"HONK_EDITOR_MAX_FILE_MB": "5000"},
            "HONK_EDITOR_MAX_FILE_MB must be between 1 and 1024 (got 5000)",
        ),
        ({"HONK_OUTPUT_LIMIT": "10"}, "HONK_OUTPUT_LIMIT must be at least 1000 (got 10)"),
        ({"HONK_MAX_MINUTES": "0"}, "HONK_MAX_MINUTES must be more than 0 (got 0)"),
        ({"HONK_COMMAND_TIMEOUT": "-5"}, "HONK_COMMAND_TIMEOUT must be more than 0 (got -5)"),
        ({"HONK_LABEL_PAUSE": "-1"}, "HONK_LABEL_PAUSE must be 0 or more (got -1)"),
        ({"HONK_RETENTION_DAYS": "soon"}, "HONK_RETENTION_DAYS must be a number (got 'soon')"),
        ({"HONK_LEASE_SECONDS": "nan"}, "HONK_LEASE_SECONDS must be a finite number (got 'nan')"),
        ({"HONK_SANDBOX": "docker"}, "HONK_SANDBOX must be one of: bwrap, off (got 'docker')"),
        ({"HONK_MODEL_JUDGE": "maybe"}, "HONK_MODEL_JUDGE must be on or off (got 'maybe')"),
    ],
)
def test_range_errors_name_the_range_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, env_file=None)
    assert str(info.value) == message


def test_errors_never_echo_a_secret(tmp_path: Path) -> None:
    """Numbers and choices are echoed; a URL (credentials in it) or a key never is."""
    cases = [
        {"DATABASE_URL": "mysql://root:hunter2-secret@db/honk"},
        {"GITHUB_API_URL": "ftp://user:hunter2-secret@ghe.example"},
        {"HONK_SESSION_KEY": "hunter2-secret"},
        {"APP_ID": "1", "PRIVATE_KEY": "hunter2-secret"},
    ]
    for env in cases:
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env, env_file=None)
        assert "hunter2" not in str(info.value), env


def test_key_file_errors_name_the_path_and_the_reason_never_the_content(tmp_path: Path) -> None:
    missing = tmp_path / "keys" / "app.pem"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"APP_ID": "1", "PRIVATE_KEY_PATH": str(missing)}, env_file=None)
    assert str(info.value) == (
        f"PRIVATE_KEY_PATH {missing} cannot be read: No such file or directory"
    )
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"APP_ID": "1", "PRIVATE_KEY_PATH": str(tmp_path)}, env_file=None)
    assert str(info.value) == f"PRIVATE_KEY_PATH {tmp_path} cannot be read: Is a directory"
    not_a_key = tmp_path / "notes.txt"
    not_a_key.write_text("the-secret-content-42\n")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"APP_ID": "1", "PRIVATE_KEY_PATH": str(not_a_key)}, env_file=None)
    assert str(info.value) == f"PRIVATE_KEY_PATH {not_a_key} does not hold a PEM private key"
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJvZHk=\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"APP_ID": "1", "PRIVATE_KEY_PATH": str(broken)}, env_file=None)
    assert str(info.value) == f"PRIVATE_KEY_PATH {broken} cannot be parsed as a private key"
    assert "c2VjcmV0" not in str(info.value)


def test_run_page_settings() -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings = Settings.from_env(
        {
            "HONK_URL": "https://honk.example.com/",
            "GITHUB_CLIENT_ID": "Iv1.abc",
            "GITHUB_CLIENT_SECRET": "client-secret-123",
            "HONK_SESSION_KEY": key,
        },
        env_file=None,
    )
    assert settings.web.run_url(7) == "https://honk.example.com/runs/7"
    assert settings.github.sign_in_configured
    assert {"client-secret-123", key} <= set(settings.secrets())
    assert "client-secret-123" not in repr(settings) and key not in repr(settings)
    assert Settings.from_env({}, env_file=None).web.run_url(7) is None  # no HONK_URL, no links
    with pytest.raises(ConfigError, match="HONK_SESSION_KEY") as bad:
        Settings.from_env({"HONK_SESSION_KEY": "not-a-key"}, env_file=None)
    assert "not-a-key" not in str(bad.value)
    with pytest.raises(ConfigError, match="HONK_URL"):
        Settings.from_env({"HONK_URL": "honk.example.com"}, env_file=None)


def test_token_key_and_graphql_url() -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings = Settings.from_env({"HONK_TOKEN_KEY": key}, env_file=None)
    assert settings.web.token_key == key and key in settings.secrets() and key not in repr(settings)
    with pytest.raises(ConfigError, match="HONK_TOKEN_KEY") as bad:
        Settings.from_env({"HONK_TOKEN_KEY": "short"}, env_file=None)
    assert "short" not in str(bad.value)
    assert Settings().github.graphql_url == "https://api.github.com/graphql"
    ghes = Settings.from_env({"GITHUB_API_URL": "https://ghe.example/api/v3"}, env_file=None)
    assert ghes.github.graphql_url == "https://ghe.example/api/graphql"


def test_with_overrides_routes_flat_names_to_their_groups() -> None:
    base = Settings()
    changed = base.with_overrides(max_turns=3, sandbox="off", github_api_url="http://x.test")
    assert (changed.agent.max_turns, changed.sandbox.mode) == (3, "off")
    assert changed.github.api_url == "http://x.test"
    # The rest of each group, and the other groups, are as they were.
    assert changed.agent.max_tokens == base.agent.max_tokens and changed.web == base.web
    # A whole group may be given too.
    assert base.with_overrides(sandbox=changed.sandbox).sandbox.mode == "off"
    with pytest.raises(TypeError, match="no setting 'max_turn'"):
        base.with_overrides(max_turn=3)


def test_components_default_to_the_declared_defaults() -> None:
    from app.agent.results import AgentLimits
    from app.config import AgentSettings, GitHubSettings, SandboxSettings
    from app.github.pacing import PacingLimits
    from app.workspace.limits import SandboxLimits

    assert AgentLimits() == AgentLimits.from_settings(AgentSettings())
    assert SandboxLimits() == SandboxLimits.from_settings(SandboxSettings())
    assert PacingLimits() == PacingLimits.from_settings(GitHubSettings())


def test_every_secret_is_declared_as_one_and_kept_out_of_repr(private_key_pem: str) -> None:
    values = {
        "PRIVATE_KEY": private_key_pem,
        "WEBHOOK_SECRET": "whsec-1",
        "ANTHROPIC_API_KEY": "sk-ant-1",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "slsec-1",
        "HONK_METRICS_TOKEN": "metrics-1",
        "GITHUB_CLIENT_SECRET": "ghsec-1",
    }
    settings = Settings.from_env({"APP_ID": "1", **values}, env_file=None)
    assert sorted(settings.secrets()) == sorted(values.values())
    assert not any(value.strip() in repr(settings) for value in values.values())
