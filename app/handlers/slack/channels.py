"""`/honk repo`: a channel's default repository, so `/honk <what to do>` is enough there."""

from __future__ import annotations

from typing import Any

from app.handlers.slack.conversation import SlackContext
from app.handlers.slack.parsing import Command, Origin
from app.store import Store
from app.store.kv import Namespace, mapping

# channel id -> {"repo", "set_by"}
_CHANNEL_REPOS: Namespace[dict[str, Any]] = Namespace(
    "slack_channel_repo", owner=__name__, decode=mapping
)


async def channel_repo(store: Store, channel: str) -> str | None:
    """The channel's default repository, if someone set one."""
    record = await _CHANNEL_REPOS.get(store, channel)
    return record.get("repo") if record else None


async def on_repo_command(ctx: SlackContext, command: Command, origin: Origin) -> None:
    """Show, set or clear the channel's repository."""
    if command.action == "show":
        repo = await channel_repo(ctx.store, origin.channel)
        await ctx.tell(
            origin,
            f"This channel's repository is `{repo}`."
            if repo
            else "This channel has no default repository: `/honk repo owner/repo` sets one.",
        )
        return
    if command.action == "clear":
        await _CHANNEL_REPOS.delete(ctx.store, origin.channel)
        await ctx.tell(
            origin, f"<@{origin.user.id}> removed this channel's repository.", public=True
        )
        return
    repo = str(command.repo)
    # Only someone Honk works for there may point a channel at a repository.
    allowed = await ctx.authorize(origin, repo)
    if allowed is None:
        return
    await _CHANNEL_REPOS.put(ctx.store, origin.channel, {"repo": repo, "set_by": allowed.login})
    await ctx.tell(
        origin,
        f"<@{origin.user.id}> set this channel's repository to `{repo}`: "
        "`/honk <what to do>` now asks Honk there.",
        public=True,
    )
