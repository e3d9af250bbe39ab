"""The buttons of a fleet's Slack summary (posted by the conductor, app/fleet/summary.py):
Continue, Pause, Resume, Stop, Retry failed and Roll back steer the fleet through
app/fleet/requests.py for its requester or a writer of the fleet issue's repository;
*Merge all green* merges as the person, with their own GitHub token."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from app.fleet.merge import MergeReport, merge_green
from app.fleet.requests import FleetCommand, FleetError, command
from app.fleet.summary import (
    CONTINUE_ACTION,
    MERGE_GREEN_ACTION,
    PAUSE_ACTION,
    RESUME_ACTION,
    RETRY_ACTION,
    ROLLBACK_ACTION,
    STOP_ACTION,
)
from app.fleet_models import Fleet
from app.handlers.slack.conversation import SlackContext, unmapped_reason
from app.handlers.slack.link import offer_connect
from app.handlers.slack.parsing import Origin
from app.models import RepoRef
from app.run_requests import may_act
from app.slack import blocks

log = logging.getLogger(__name__)

# The buttons of a fleet's summary message (app/fleet/summary.py); each one's value is the
# fleet's id. Its View fleet button is a link: Slack opens it, Honk only acknowledges.
COMMANDS = {
    CONTINUE_ACTION: FleetCommand.CONTINUE,
    PAUSE_ACTION: FleetCommand.PAUSE,
    RESUME_ACTION: FleetCommand.RESUME,
    STOP_ACTION: FleetCommand.STOP,
    RETRY_ACTION: FleetCommand.RETRY,
    ROLLBACK_ACTION: FleetCommand.ROLLBACK,
}
ACTIONS = frozenset({*COMMANDS, MERGE_GREEN_ACTION})

UNKNOWN_FLEET = "Honk no longer knows that fleet."
WHO_ARE_YOU = (
    "Honk doesn't know who you are on GitHub: {why}. Connect your GitHub account with "
    "`/honk link`, then press the button again."
)
REQUESTER_ONLY = (
    "Fleet {fleet_id} is steered by `{requester}` on GitHub, who asked for it; you are `{login}`."
)
CONNECT_FIRST = (
    "To merge as yourself, connect your GitHub account first: Honk merges with your own "
    "GitHub permissions (branch protection applies), never its own. Then press "
    "*Merge all green* again."
)


async def on_action(
    ctx: SlackContext, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    """A button of a fleet's summary: Merge all green as the person, the rest through the
    gate (the requester, or write access to the fleet issue's repository)."""
    del payload  # the summary is the conductor's to edit, not the click's
    value = str(action.get("value") or "")
    fleet = await ctx.store.fleets.get(int(value)) if value.isdigit() else None
    if fleet is None:
        await ctx.tell(origin, UNKNOWN_FLEET)
        return
    action_id = str(action.get("action_id") or "")
    if action_id == MERGE_GREEN_ACTION:
        await merge_all_green(ctx, fleet, origin)
        return
    login = await may_steer(ctx, origin, fleet)
    if login is None:
        return
    try:
        said = await command(
            ctx.store, fleet.id, COMMANDS[action_id], by=login, wake=ctx.wake_fleets
        )
    except FleetError as exc:
        said = str(exc)
    log.info("%s on fleet %s by %s from Slack: %s", action_id, fleet.id, login, said)
    await ctx.tell(origin, said)


async def may_steer(ctx: SlackContext, origin: Origin, fleet: Fleet) -> str | None:
    """The person's GitHub login when they may steer the fleet; else None, and they are told."""
    gh = await ctx.github.installation_client(fleet.installation_id)
    owner = await _owner_of(ctx, fleet)
    who = await ctx.identity.github_login(origin.user, gh, owner)
    if who.login is None:
        await ctx.tell(origin, WHO_ARE_YOU.format(why=unmapped_reason(who, owner)))
        return None
    if who.login.lower() == fleet.requested_by.lower():
        return who.login
    if fleet.issue_repo is None:
        said = REQUESTER_ONLY.format(
            fleet_id=fleet.id, requester=fleet.requested_by, login=who.login
        )
        await ctx.tell(origin, said)
        return None
    permission = await may_act(gh, fleet.issue_repo, who.login)
    if not permission.allowed:
        then = f"`{fleet.requested_by}`, who asked for it, may steer it too."
        await ctx.tell(
            origin, permission.refusal(f"Steering fleet {fleet.id}", mention=False, then=then)
        )
        return None
    return who.login


async def _owner_of(ctx: SlackContext, fleet: Fleet) -> str:
    """The account whose members' e-mail may name the person: the fleet issue's, else the
    owner of its first repository."""
    if fleet.issue_repo:
        return RepoRef.parse(fleet.issue_repo).owner
    repos = await ctx.store.fleets.repos(fleet.id)
    return RepoRef.parse(repos[0].repo).owner if repos else fleet.requested_by


async def merge_all_green(ctx: SlackContext, fleet: Fleet, origin: Origin) -> None:
    """Every green fleet PR, merged as the person with their own token (none: connect first)."""
    found = await ctx.connections.client(origin.user.key) if ctx.connections else None
    if found is None:
        await offer_connect(ctx, origin, CONNECT_FIRST)
        return
    connection, gh = found
    report = await merge_green(
        ctx.store, fleet, gh, by=connection.login, config_cache=ctx.config_cache
    )
    merged, refused = len(report.merged), len(report.not_merged)
    log.info("fleet %s: %s merged %d PRs, %d not", fleet.id, connection.login, merged, refused)
    await ctx.tell(origin, merge_said(fleet, report, connection.login))


def merge_said(fleet: Fleet, report: MergeReport, login: str) -> str:
    if not report.merged and not report.not_merged:
        return f"Fleet {fleet.id} has no green pull request to merge."
    named = ", ".join(f"`{blocks.escape(repo)}`" for repo in report.merged)
    head = f"Merged {len(report.merged)} pull requests of fleet {fleet.id}"
    head += f" as `{blocks.escape(login)}`"
    lines = [f"{head}: {named}" if named else f"{head}."]
    if report.not_merged:
        lines.append(f"Not merged ({len(report.not_merged)}):")
        lines += [f"• `{blocks.escape(r)}`: {blocks.escape(why)}" for r, why in report.not_merged]
    return blocks.clip("\n".join(lines), 3000)
