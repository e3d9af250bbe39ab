"""Slack's front door: every kind of stored Slack request, one module per kind, one router."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.handlers.slack import buttons, commands
from app.handlers.slack.conversation import SlackContext, SlackRouter

log = logging.getLogger(__name__)

router = SlackRouter(commands.router, buttons.router)


async def on_stored_request(ctx: SlackContext, stored: Mapping[str, Any]) -> None:
    """A stored Slack request (a delivery of event `commands.SLACK_EVENT`), to its handler;
    the dispatcher calls this, once per request, in whichever process claims it."""
    kind = str(stored.get("kind") or "")
    handler = router.fetch(kind)
    if handler is None:
        log.warning("a stored Slack request of an unknown kind %r; dropped", kind[:40])
        return
    await handler(ctx, stored)


__all__ = ["on_stored_request", "router"]
