"""`/honk link`: tie a Slack account to a GitHub login, proven by a comment only it could write."""

from __future__ import annotations

import gidgethub

from app.handlers.slack.conversation import NOT_INSTALLED, SlackContext
from app.handlers.slack.identity import LINK_COMMENT_SECONDS, LinkError
from app.handlers.slack.parsing import Command, Origin, comment_ref, github_login

LINK_HOWTO = (
    "To link your Slack account to GitHub `{login}`, comment `{code}` on any issue or pull "
    "request in a repository Honk is installed on, then send "
    "`/honk link confirm <link to that comment>` right away: the comment must be at most "
    "{minutes} minutes old and never edited, and the code expires in 30 minutes."
)
BAD_COMMENT_URL = (
    "Give the comment's link, like `{host}/owner/repo/issues/12#issuecomment-123` "
    "(the comment's menu: Copy link)."
)


async def on_link_command(ctx: SlackContext, command: Command, origin: Origin) -> None:
    """Show the link, start one (a one-time code to comment on GitHub), or confirm it."""
    if command.action == "show":
        login = await ctx.identity.linked(origin.user)
        await ctx.tell(
            origin,
            f"You are linked to GitHub `{login}`."
            if login
            else "You have no GitHub link; Honk matches your Slack e-mail instead.",
        )
    elif command.action == "start":
        login = github_login(command.text)
        if login is None:
            await ctx.tell(origin, f"`{command.text}` is not a GitHub login.")
            return
        code = await ctx.identity.start_link(origin.user, login)
        howto = LINK_HOWTO.format(login=login, code=code, minutes=LINK_COMMENT_SECONDS // 60)
        await ctx.tell(origin, howto)
    else:
        await confirm_link(ctx, command.text, origin)


async def on_unlink_command(ctx: SlackContext, origin: Origin) -> None:
    login = await ctx.identity.unlink(origin.user)
    await ctx.tell(origin, f"Unlinked from `{login}`." if login else "You had no GitHub link.")


async def confirm_link(ctx: SlackContext, url: str, origin: Origin) -> None:
    """The comment proves the GitHub side: only that account could have written it."""
    ref = comment_ref(url, ctx.settings.github_url)
    if ref is None:
        await ctx.tell(origin, BAD_COMMENT_URL.format(host=ctx.settings.github_url))
        return
    repo, comment_id = ref
    installation_id = await ctx.installation_for(repo)
    if installation_id is None:
        await ctx.tell(origin, NOT_INSTALLED.format(repo=repo))
        return
    gh = await ctx.github.installation_client(installation_id)
    try:
        comment = await gh.getitem(f"/repos/{repo}/issues/comments/{comment_id}")
    except gidgethub.BadRequest:
        await ctx.tell(origin, "Honk cannot see that comment.")
        return
    try:
        login = await ctx.identity.confirm_link(origin.user, comment)
    except LinkError as exc:
        await ctx.tell(origin, f"Not linked: {exc}.")
        return
    await ctx.tell(origin, f"Linked: Honk knows you as `{login}` on GitHub.")
