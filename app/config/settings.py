"""Settings: the one place that reads the environment (and `.env`), as groups of settings
each declared once in its module (app/config/github.py, slack.py, web.py, store.py, log.py,
fleet.py; app/config/run.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import dotenv_values

from app.config.declare import Group, declared, read_group
from app.config.fleet import FleetSettings
from app.config.github import GitHubSettings
from app.config.log import LogSettings
from app.config.parse import ConfigError, _reason
from app.config.run import AgentSettings, NetworkSettings, ReviewSettings, SandboxSettings
from app.config.slack import SlackSettings
from app.config.store import StoreSettings
from app.config.web import WebSettings

# Settings' groups by field name, in the order their variables are read.
GROUPS: dict[str, type[Group]] = {
    "github": GitHubSettings,
    "agent": AgentSettings,
    "review": ReviewSettings,
    "sandbox": SandboxSettings,
    "network": NetworkSettings,
    "slack": SlackSettings,
    "web": WebSettings,
    "store": StoreSettings,
    "log": LogSettings,
    "fleet": FleetSettings,
}


def _flat_names() -> dict[str, tuple[str, str]]:
    """Each setting's flat name (`sandbox_memory_mb`) -> (its group, its field)."""
    names: dict[str, tuple[str, str]] = {}
    for group_name, group in GROUPS.items():
        for name, spec in declared(group):
            flat = spec.flat or name
            assert flat not in names, f"two settings are named {flat}"
            names[flat] = (group_name, name)
    return names


FLAT = _flat_names()


@dataclass(frozen=True)
class Settings:
    """Everything Honk is configured with, in groups: `settings.github.app_id`,
    `settings.sandbox.memory_mb`. A component takes the group it reads, not all of it.
    Secrets are kept out of `repr`."""

    github: GitHubSettings = field(default_factory=GitHubSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    web: WebSettings = field(default_factory=WebSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    log: LogSettings = field(default_factory=LogSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    env_file: Path | None = None

    @property
    def package_cache_dir(self) -> Path:
        """Where package caches are kept across runs: HONK_CACHE_DIR, else in the data dir."""
        return self.sandbox.cache_dir or self.store.data_dir / "caches"

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor: the settings declared `secret=True`."""
        values = []
        for group_name, group in GROUPS.items():
            for name, spec in declared(group):
                if spec.secret:
                    values.append(getattr(getattr(self, group_name), name))
        return [v for v in values if v]

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some settings changed, by flat name (`max_turns=3`,
        `github_api_url=...`, `sandbox="off"`) or a whole group (`github=GitHubSettings()`)."""
        groups: dict[str, dict[str, object]] = {}
        top: dict[str, object] = {}
        for name, value in changes.items():
            if name in FLAT and not isinstance(value, Group):  # sandbox="off": the setting
                group_name, field_name = FLAT[name]
                groups.setdefault(group_name, {})[field_name] = value
            elif name in GROUPS or name == "env_file":
                top[name] = value
            else:
                raise TypeError(f"Settings has no setting {name!r}")
        for group_name, values in groups.items():
            group: Group = getattr(self, group_name)
            top[group_name] = replace(group, **values)  # type: ignore[type-var]
        return replace(self, **top)  # type: ignore[arg-type]

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

        groups = {name: read_group(group, get) for name, group in GROUPS.items()}
        return cls(**groups, env_file=env_path)  # type: ignore[arg-type]
