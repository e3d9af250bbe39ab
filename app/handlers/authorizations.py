"""A person revoked the App's authorization on GitHub: Honk forgets their tokens at once."""

from __future__ import annotations

import logging

from gidgethub import routing

from app.handlers.context import Context

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("github_app_authorization", action="revoked")
async def on_authorization_revoked(context: Context) -> None:
    """GitHub sends this to every App, unasked: `{"action": "revoked", "sender": {...}}`."""
    sender = context.sender
    if context.connections is None:
        return
    github_id = sender.get("id") if isinstance(sender.get("id"), int) else None
    login = str(sender.get("login") or "") or None
    await context.connections.forget_github_user(github_id=github_id, login=login)
