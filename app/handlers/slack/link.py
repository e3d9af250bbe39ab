"""`/honk link`: connect your GitHub account by signing in with GitHub (the App's own user
authorization); `/honk unlink` forgets it. The same offer is made to anyone who presses
Merge or Approve before Honk knows them on GitHub."""

from __future__ import annotations

from app.handlers.slack.conversation import SlackContext
from app.handlers.slack.parsing import Origin
from app.slack import card

NOT_SET_UP = (
    "Connecting GitHub from Slack is not set up on this Honk: its operator sets HONK_URL and "
    "the App's OAuth client (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET)."
)
OFFER = (
    "Connect your GitHub account: you sign in with GitHub and Honk keeps a token that acts "
    "as you, only for what you ask here (merging, approving). The link works once, for 15 "
    "minutes, and only for you."
)


async def on_link_command(ctx: SlackContext, origin: Origin) -> None:
    """Say who they are connected as, and give the Connect GitHub button (to connect or
    reconnect as someone else)."""
    login = await ctx.identity.connected(origin.user)
    now = f"You are connected to GitHub as `{login}`. " if login else ""
    await offer_connect(ctx, origin, now + OFFER)


async def on_unlink_command(ctx: SlackContext, origin: Origin) -> None:
    login = await ctx.identity.connected(origin.user)
    if ctx.connections is not None:
        await ctx.connections.forget(origin.user.key)
    await ctx.tell(
        origin,
        f"Disconnected from GitHub `{login}`: Honk forgot your token. (Revoke Honk under "
        "GitHub's Settings → Applications to end it there too.)"
        if login
        else "You were not connected to GitHub.",
    )


async def offer_connect(ctx: SlackContext, origin: Origin, why: str) -> None:
    """Only to `origin`'s person: a Connect GitHub button that comes back to this thread."""
    connections = ctx.connections
    if connections is None or not connections.configured or not ctx.settings.web.url:
        await ctx.tell(origin, f"{why}\n{NOT_SET_UP}")
        return
    pending = await connections.start(
        origin.user.key, origin.user.id, channel=origin.channel, thread_ts=origin.thread_root
    )
    url = f"{ctx.settings.web.url}/connect/{pending.nonce}"
    text, blocks = card.connect_prompt(url, why)
    await ctx.tell(origin, text, blocks=blocks)
