"""Settings: the one place that reads the environment (and `.env`).

Each setting is declared once (`setting(env=..., parse=..., default=..., doc=...)`) in its
group: app/config/service.py (GitHub, Slack, the web side, the store, logs, fleets) and
app/config/run.py (the agent, the review, the sandbox, its network). `Settings`
(app/config/settings.py) holds the groups; app/config/docs.py writes the tables of
docs/configuration.md from the same declarations (`python -m app.config --markdown`).
"""

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
from app.config.service import (
    FleetSettings,
    GitHubSettings,
    LogSettings,
    SlackSettings,
    StoreSettings,
    WebSettings,
)
from app.config.settings import GROUPS, Settings

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
