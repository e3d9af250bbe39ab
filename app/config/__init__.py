"""Settings: the one place that reads the environment (and `.env`).

Each setting is declared once (`setting(env=..., parse=..., default=..., doc=...)`) in its
group's module: app/config/github.py, slack.py, web.py, store.py, log.py and fleet.py (the
service's), app/config/run.py (the agent, the review, the sandbox, its network). `Settings`
(app/config/settings.py) holds the groups; app/config/docs.py writes the tables of
docs/configuration.md from the same declarations (`python -m app.config --markdown`).
"""

from app.config.fleet import FleetSettings
from app.config.github import GitHubSettings
from app.config.log import LogSettings
from app.config.parse import (
    DEFAULT_MODEL,
    GITHUB_API_URL,
    GITHUB_URL,
    SLACK_API_URL,
    TOOLCHAIN_ENV,
    TOOLCHAIN_LANGUAGES,
    ConfigError,
    default_checkout_dir,
)
from app.config.run import AgentSettings, NetworkSettings, ReviewSettings, SandboxSettings
from app.config.settings import GROUPS, Settings
from app.config.slack import SlackSettings
from app.config.store import StoreSettings
from app.config.web import WebSettings

__all__ = [
    "DEFAULT_MODEL",
    "GITHUB_API_URL",
    "GITHUB_URL",
    "GROUPS",
    "SLACK_API_URL",
    "TOOLCHAIN_ENV",
    "TOOLCHAIN_LANGUAGES",
    "AgentSettings",
    "ConfigError",
    "FleetSettings",
    "GitHubSettings",
    "LogSettings",
    "NetworkSettings",
    "ReviewSettings",
    "SandboxSettings",
    "Settings",
    "SlackSettings",
    "StoreSettings",
    "WebSettings",
    "default_checkout_dir",
]
