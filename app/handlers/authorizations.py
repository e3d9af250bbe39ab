"""A person revoked the App's authorization on GitHub: Honk forgets their tokens at once."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from app.github.client import GitHubClient
from app.handlers.context import HandlerContext

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("github_app_authorization", action="revoked")
async def on_authorization_revoked(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    """GitHub sends this to every App, unasked: `{"action": "revoked", "sender": {...}}`."""
    sender = event.data.get("sender") or {}
    if ctx.connections is None:
        return
    github_id = sender.get("id") if isinstance(sender.get("id"), int) else None
    login = str(sender.get("login") or "") or None
    await ctx.connections.forget_github_user(github_id=github_id, login=login)
