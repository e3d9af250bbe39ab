"""What every handler is given besides the event and the GitHub client: the process's services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.ci.reporter import CiReporter
from app.config import Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.github.connections import GitHubConnections
from app.repo_config import ConfigCache, RepoConfig, load_repo_config
from app.slack.notify import SlackNotifier
from app.store import Store


@dataclass
class HandlerContext:
    settings: Settings
    store: Store
    github: GitHubApp
    slack: SlackNotifier
    ci: CiReporter
    # Called after a run is queued so an idle worker picks it up at once.
    wake_workers: Callable[[], None] = field(default=lambda: None)
    # .github/honk.yml parsed once per blob SHA; the process's one cache.
    config_cache: ConfigCache = field(default_factory=ConfigCache)
    # People's GitHub connections from Slack (forgotten when they revoke the App).
    connections: GitHubConnections | None = None

    async def config(self, gh: GitHubClient, repo: str, ref: str | None = None) -> RepoConfig:
        """The repository's `.github/honk.yml` over its org's default (RepoConfigError if bad).

        `ref` None reads the default branch as GitHub has it now, not as a payload recorded it.
        """
        return await load_repo_config(gh, repo, ref, self.config_cache)
