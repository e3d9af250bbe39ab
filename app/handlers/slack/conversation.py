"""What Slack's commands and buttons share: answering people, work after the answer, the gate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import aiohttp
import gidgethub
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.github.client import GitHubClient
from app.handlers.context import HandlerServices
from app.handlers.slack.identity import Identity, Who
from app.handlers.slack.parsing import Origin
from app.log import describe_error
from app.models import RepoRef, Run
from app.run_requests import may_act

log = logging.getLogger(__name__)

INSTALLATION_CACHE_SECONDS = 300
SHUTDOWN_GRACE = 5.0

UNKNOWN_RUN = "Honk no longer knows that run."
NOT_INSTALLED = "Honk is not installed on `{repo}` (or there is no such repository)."
UNMAPPED = (
    "Honk doesn't know who you are on GitHub: {why}. Connect your GitHub account with "
    "`/honk link` and ask again. Nothing was started."
)


# A stored Slack request's handler: (the Slack context, the stored request) -> done.
SlackHandler = Callable[["SlackContext", Mapping[str, Any]], Coroutine[Any, Any, None]]


class SlackRouter:
    """Slack's stored requests by kind ("command", "event", "interaction"), as gidgethub's
    Router is GitHub's events: each module registers its own handlers, and one router made
    of theirs is what the dispatcher asks (handlers/slack/__init__.py)."""

    def __init__(self, *others: SlackRouter) -> None:
        self._handlers: dict[str, SlackHandler] = {}
        for other in others:
            for kind, handler in other._handlers.items():
                self._add(kind, handler)

    def _add(self, kind: str, handler: SlackHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a second handler for Slack's {kind!r} requests")
        self._handlers[kind] = handler

    def register(self, kind: str) -> Callable[[SlackHandler], SlackHandler]:
        def adding(handler: SlackHandler) -> SlackHandler:
            self._add(kind, handler)
            return handler

        return adding

    def fetch(self, kind: str) -> SlackHandler | None:
        return self._handlers.get(kind)


@dataclass(frozen=True)
class Allowed:
    """A Slack user Honk works for on a repository."""

    gh: GitHubClient
    login: str
    installation_id: int


def marked(message_blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """A message's blocks with its buttons replaced by a note saying what was done."""
    kept = [b for b in message_blocks if b.get("type") != "actions"]
    return [*kept, ContextBlock(elements=[MarkdownTextObject(text=note)]).to_dict()]


async def run_of(ctx: SlackContext, action: Mapping[str, Any]) -> Run | None:
    """The run a button names: its value is the run id (go-live buttons: "<id>@<sha>")."""
    value = str(action.get("value") or "").partition("@")[0]
    return await ctx.store.runs.get(int(value)) if value.isdigit() else None


def unmapped_reason(who: Who, owner: str) -> str:
    if not who.email:
        return "your Slack profile shows no e-mail address"
    return (
        f"your Slack e-mail `{who.email}` is not the public e-mail of any member of `{owner}` "
        "on GitHub"
    )


@dataclass(kw_only=True)
class SlackContext(HandlerServices):
    """The services every Slack handler is given (those GitHub's handlers share, and Slack's
    own), and how to answer the person who asked."""

    session: aiohttp.ClientSession  # for response_url answers; its owner closes it
    identity: Identity
    wake_dispatcher: Callable[[], None] = lambda: None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _installations: TTLCache[str, int] = field(
        default_factory=lambda: TTLCache(maxsize=1024, ttl=INSTALLATION_CACHE_SECONDS)
    )

    def spawn(self, work: Coroutine[Any, Any, Any], origin: Origin | None) -> None:
        """Run `work` after Slack has its answer; a failure is logged and told to `origin`."""
        task = asyncio.create_task(self.guard(work, origin), name="honk-slack-request")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def guard(self, work: Coroutine[Any, Any, Any], origin: Origin | None) -> None:
        """Await `work`; a failure is logged and, when someone asked, told to them."""
        try:
            await work
        except Exception as exc:
            log.exception("Slack request %s failed", origin.request_id if origin else "")
            if origin is not None:
                await self.tell(origin, f"Honk could not do that: {describe_error(exc)}")

    async def close(self) -> None:
        """Let running requests finish for a moment, then cancel the rest."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def tell(
        self,
        origin: Origin,
        text: str,
        *,
        public: bool = False,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Answer the person who asked (only them, unless public); never raises."""
        try:
            if origin.response_url:
                webhook = AsyncWebhookClient(origin.response_url, session=self.session)
                answer = await webhook.send(
                    text=text,
                    blocks=blocks,
                    response_type="in_channel" if public else "ephemeral",
                    replace_original=False,
                )
                if answer.status_code >= 300:
                    log.warning("Slack's response_url answered %s", answer.status_code)
            elif public or origin.is_dm:
                await self.slack.client.chat_postMessage(
                    channel=origin.channel, thread_ts=origin.thread_root, text=text, blocks=blocks
                )
            else:
                await self.slack.client.chat_postEphemeral(
                    channel=origin.channel,
                    user=origin.user.id,
                    text=text,
                    blocks=blocks,
                    thread_ts=origin.thread_root,
                )
        except Exception as exc:
            log.warning("could not answer in Slack: %s", describe_error(exc))

    async def mark(
        self, channel: str, ts: str | None, message: Mapping[str, Any], note: str
    ) -> None:
        """Update a clicked message in place: its buttons gone, what happened said instead."""
        if not ts:
            return
        try:
            await self.slack.client.chat_update(
                channel=channel,
                ts=ts,
                text=str(message.get("text") or note),
                blocks=marked(list(message.get("blocks") or []), note),
            )
        except SlackApiError as exc:
            log.warning("could not update the clicked message: %s", describe_error(exc))

    async def mark_clicked(self, payload: Mapping[str, Any], note: str) -> None:
        """`mark` the message whose button `payload` reports."""
        message = payload.get("message") or {}
        channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get(
            "channel_id"
        )
        ts = (payload.get("container") or {}).get("message_ts") or message.get("ts")
        await self.mark(str(channel or ""), ts, message, note)

    async def authorize(
        self, origin: Origin, repo: str, installation_id: int | None = None
    ) -> Allowed | None:
        """Whether Honk works for this Slack user on `repo`; when not, they are told why."""
        if installation_id is None:
            installation_id = await self.installation_for(repo)
            if installation_id is None:
                await self.tell(origin, NOT_INSTALLED.format(repo=repo))
                return None
        gh = await self.github.installation_client(installation_id)
        owner = RepoRef.parse(repo).owner
        who = await self.identity.github_login(origin.user, gh, owner)
        if who.login is None:
            await self.tell(origin, UNMAPPED.format(why=unmapped_reason(who, owner)))
            return None
        permission = await may_act(gh, repo, who.login)
        if not permission.allowed:
            log.info("Slack user %s (%s) may not write to %s", origin.user.id, who.login, repo)
            await self.tell(
                origin,
                permission.refusal("Asking Honk", mention=False, then="Nothing was started."),
            )
            return None
        return Allowed(gh, who.login, installation_id)

    async def installation_for(self, repo: str) -> int | None:
        """The installation serving `repo` (asked with the App's JWT), or None."""
        key = repo.lower()
        if (cached := self._installations.get(key)) is not None:
            return cached
        ref = RepoRef.parse(repo)
        path = f"/repos/{quote(ref.owner, safe='')}/{quote(ref.name, safe='')}/installation"
        try:
            data = await self.github.app_client().getitem(path)
        except gidgethub.BadRequest as exc:
            if exc.status_code == HTTPStatus.NOT_FOUND:
                return None
            raise
        self._installations[key] = int(data["id"])
        return int(data["id"])
