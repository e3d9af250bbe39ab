"""What every handler is given: one `Context` per delivery, over the process's services.

`HandlerServices` is what GitHub's and Slack's handlers share (the process's store, GitHub
App, Slack client, connections, the one `.github/honk.yml` cache); `GitHubServices` adds
what only GitHub's events need (CI's reporter), and Slack's `SlackContext`
(handlers/slack/conversation.py) adds what only Slack's requests need. A GitHub delivery
is handled with a `Context`, as Probot's: the event, a client authenticated for it, the
services, and helpers (`repo`, `sender`, `is_bot`, `config()`, `comment()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gidgethub import sansio

from app.ci.reporter import CiReporter
from app.config import Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.github.connections import GitHubConnections
from app.github.users import is_bot
from app.repo_config import ConfigCache, RepoConfig, load_repo_config
from app.slack.notify import SlackNotifier
from app.store import Store


def _no_wake() -> None:
    return None


@dataclass(kw_only=True)
class HandlerServices:
    """The process's services every handler may use, GitHub's and Slack's alike."""

    settings: Settings
    store: Store
    github: GitHubApp
    slack: SlackNotifier
    # People's GitHub connections from Slack (forgotten when they revoke the App).
    connections: GitHubConnections | None = None
    # Called after a run is queued so an idle worker picks it up at once.
    wake_workers: Callable[[], None] = _no_wake
    # Called after a fleet is asked for or steered, so this process's conductor acts at once.
    wake_fleets: Callable[[], None] = _no_wake
    # .github/honk.yml parsed once per blob SHA; the process's one cache.
    config_cache: ConfigCache = field(default_factory=ConfigCache)

    async def config(self, gh: GitHubClient, repo: str, ref: str | None = None) -> RepoConfig:
        """The repository's `.github/honk.yml` over its org's default (RepoConfigError if bad).

        `ref` None reads the default branch as GitHub has it now, not as a payload recorded it.
        """
        return await load_repo_config(gh, repo, ref, self.config_cache)


@dataclass(kw_only=True)
class GitHubServices(HandlerServices):
    """The services GitHub's event handlers use: the shared ones, and CI's reporter."""

    ci: CiReporter


@dataclass(frozen=True)
class Context:
    """One GitHub delivery being handled: its event, a client for it, the services."""

    event: sansio.Event
    gh: GitHubClient  # the installation's client (the App's for installation events)
    services: GitHubServices

    # -- the delivery ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The event's name (`issues`, `issue_comment`, ...)."""
        return self.event.event

    @property
    def delivery_id(self) -> str:
        return self.event.delivery_id

    @property
    def payload(self) -> Mapping[str, Any]:
        """The delivery's JSON as GitHub sent it; a handler `cast`s it to its event's TypedDict
        (app/github/payloads.py)."""
        data: Mapping[str, Any] = self.event.data
        return data

    @property
    def repo(self) -> str:
        """The repository the event is about, `owner/name` (KeyError for events without one)."""
        return str(self.payload["repository"]["full_name"])

    @property
    def sender(self) -> Mapping[str, Any]:
        """Who caused the event (`{}` when the payload names nobody)."""
        sender: Mapping[str, Any] = self.payload.get("sender") or {}
        return sender

    @property
    def is_bot(self) -> bool:
        """Whether the sender is a bot (Honk itself included): bots never start or steer a run."""
        return is_bot(self.sender)

    @property
    def installation_id(self) -> int:
        return int(self.payload["installation"]["id"])

    @property
    def number(self) -> int:
        """The number of the issue or pull request the event is on (KeyError if none)."""
        subject = self.payload.get("issue") or self.payload.get("pull_request")
        if subject is None:
            raise KeyError("the event is on no issue or pull request")
        return int(subject["number"])

    # -- helpers -----------------------------------------------------------------------------

    async def config(self, ref: str | None = None) -> RepoConfig:
        """The event's repository's `.github/honk.yml` (see HandlerServices.config)."""
        return await self.services.config(self.gh, self.repo, ref)

    async def comment(self, body: str) -> dict[str, Any]:
        """Comment on the event's issue or pull request, paced as every write of the client
        (at the priority the caller set with `writes_at`)."""
        return await self.gh.comment(self.repo, self.number, body)

    # -- the services, by their names ----------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def github(self) -> GitHubApp:
        return self.services.github

    @property
    def slack(self) -> SlackNotifier:
        return self.services.slack

    @property
    def ci(self) -> CiReporter:
        return self.services.ci

    @property
    def connections(self) -> GitHubConnections | None:
        return self.services.connections

    def wake_workers(self) -> None:
        self.services.wake_workers()
