"""What every handler is given besides the event and the GitHub client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.config import Settings
from app.github.auth import GitHubApp
from app.repo_config import ConfigCache
from app.slack.notify import SlackNotifier
from app.store import Store


@dataclass
class HandlerContext:
    settings: Settings
    store: Store
    github: GitHubApp
    slack: SlackNotifier
    # Called after a run is queued so an idle worker picks it up at once.
    wake_workers: Callable[[], None] = field(default=lambda: None)
    # .github/honk.yml parsed once per blob SHA (a repository may name its own label).
    config_cache: ConfigCache = field(default_factory=ConfigCache)
