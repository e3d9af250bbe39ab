"""SlackNotifier: Honk's one Slack client; run threads, where an outage is logged, never raised."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from app import metrics
from app.config import SlackSettings
from app.log import describe_error
from app.models import SlackThread

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


def retry_handlers() -> list[AsyncRetryHandler]:
    """slack_sdk's own retries: a 429 waits for Retry-After (twice at most), a 5xx or reset once."""
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
        AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        AsyncServerErrorRetryHandler(max_retry_count=1),
    ]


class SlackNotifier:
    """Posts, threads and edits messages; every method returns None/False when Slack fails.

    `client` is the one AsyncWebClient of the process: the front door calls Slack through it
    too. Given a `session`, the client is built on it (its owner closes it); otherwise the
    notifier opens a session of its own on first use.
    """

    def __init__(
        self,
        settings: SlackSettings,
        client: AsyncWebClient | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._shared_session = session
        self._session: aiohttp.ClientSession | None = None
        self.enabled: bool = client is not None or settings.enabled
        if not self.enabled:
            log.info(
                "Slack notifications are off: SLACK_BOT_TOKEN and SLACK_CHANNEL are not both set"
            )

    async def start_thread(
        self, *, channel: str | None, text: str, blocks: list[dict[str, Any]]
    ) -> SlackThread | None:
        """Post a thread root; returns its (channel id, ts) to reply to and update it later."""
        target = self._channel(channel)
        if target is None:
            return None
        response = await self._attempt(
            "chat.postMessage",
            lambda client: client.chat_postMessage(
                channel=target, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            ),
        )
        if response is None:
            return None
        return SlackThread(str(response["channel"]), str(response["ts"]))

    async def reply(
        self, thread: SlackThread, *, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post in the thread; returns the reply's ts."""
        if not self.enabled:
            return None
        response = await self._attempt(
            "chat.postMessage",
            lambda client: client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return None if response is None else str(response["ts"])

    async def update(
        self, message: SlackThread, *, text: str, blocks: list[dict[str, Any]]
    ) -> bool:
        """Edit a message in place (a thread root's status); True when Slack took it."""
        if not self.enabled:
            return False
        response = await self._attempt(
            "chat.update",
            lambda client: client.chat_update(
                channel=message.channel, ts=message.ts, text=text, blocks=blocks
            ),
        )
        return response is not None

    async def post(
        self, *, channel: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post a message outside any thread; returns its ts."""
        target = self._channel(channel)
        if target is None:
            return None
        response = await self._attempt(
            "chat.postMessage",
            lambda client: client.chat_postMessage(
                channel=target, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
            ),
        )
        return None if response is None else str(response["ts"])

    async def permalink(self, message: SlackThread) -> str | None:
        """A link to the message (a run's thread root), for GitHub to point at."""
        if not self.enabled:
            return None
        response = await self._attempt(
            "chat.getPermalink",
            lambda client: client.chat_getPermalink(channel=message.channel, message_ts=message.ts),
        )
        link = None if response is None else response.get("permalink")
        return str(link) if link else None

    async def close(self) -> None:
        """Close the HTTP session this notifier opened (a client passed in stays its owner's)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None

    def _channel(self, channel: str | None) -> str | None:
        if not self.enabled:
            return None
        target = channel or self._settings.channel
        if not target:
            log.warning("Slack message not sent: no channel given and SLACK_CHANNEL is not set")
        return target

    @property
    def client(self) -> AsyncWebClient:
        """The Web API client, for calls that are answers to a person (they may raise)."""
        if self._client is None:
            session = self._shared_session
            if session is None:
                # One session for all calls, opened inside the running loop on first use.
                session = self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
                )
            self._client = AsyncWebClient(
                token=self._settings.bot_token,
                base_url=self._settings.api_url,
                timeout=TIMEOUT_SECONDS,
                session=session,
                retry_handlers=retry_handlers(),
            )
        return self._client

    async def _attempt(
        self, method: str, call: Callable[[AsyncWebClient], Awaitable[AsyncSlackResponse]]
    ) -> AsyncSlackResponse | None:
        try:
            response = await call(self.client)
        except Exception as error:  # a notification must never fail a run
            code = getattr(getattr(error, "response", None), "data", None)
            outcome = code.get("error") if isinstance(code, dict) else None
            metrics.slack_calls.labels(method, str(outcome or type(error).__name__)).inc()
            log.warning("Slack %s failed: %s", method, describe_error(error))
            return None
        metrics.slack_calls.labels(method, "ok").inc()
        return response
