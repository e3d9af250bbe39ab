"""The fleet tables' rows as `Fleet`s and `FleetRepo`s, and a fleet's Slack thread as two
columns (as `run_rows` is for runs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.fleet_models import Fleet, FleetOrigin, FleetRepo, FleetRepoState, FleetState
from app.models import SlackThread
from app.store.tables import fleet_repos, fleets


def thread_columns(thread: SlackThread | None) -> dict[str, str | None]:
    return {
        "slack_channel": thread.channel if thread else None,
        "slack_ts": thread.ts if thread else None,
    }


async def fetch_fleet(conn: AsyncConnection, fleet_id: int | None) -> Fleet | None:
    row = (await conn.execute(select(fleets).where(fleets.c.id == fleet_id))).first()
    return to_fleet(row) if row else None


async def fetch_repo(conn: AsyncConnection, fleet_id: int, repo: str) -> FleetRepo | None:
    query = select(fleet_repos).where(
        fleet_repos.c.fleet_id == fleet_id, fleet_repos.c.repo == repo
    )
    row = (await conn.execute(query)).first()
    return to_repo(row) if row else None


def to_fleet(row: Row[Any]) -> Fleet:
    data = row._mapping
    channel, ts = data["slack_channel"], data["slack_ts"]
    return Fleet(
        id=data["id"],
        installation_id=data["installation_id"],
        requested_by=data["requested_by"],
        request=data["request"],
        selection=data["selection"],
        origin=FleetOrigin(data["origin"]),
        canary_size=data["canary_size"],
        state=FleetState(data["state"]),
        state_reason=data["state_reason"],
        issue_repo=data["issue_repo"],
        issue_number=data["issue_number"],
        summary_comment_id=data["summary_comment_id"],
        slack_thread=SlackThread(channel, ts) if channel and ts else None,
        slack_summary_ts=data["slack_summary_ts"],
        milestones=list(data["milestones"] or []),
        version=data["version"],
        reported_version=data["reported_version"],
        lease_owner=data["lease_owner"],
        lease_expires_at=data["lease_expires_at"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        finished_at=data["finished_at"],
    )


def to_repo(row: Row[Any]) -> FleetRepo:
    data = row._mapping
    return FleetRepo(
        fleet_id=data["fleet_id"],
        repo=data["repo"],
        position=data["position"],
        state=FleetRepoState(data["state"]),
        reason=data["reason"],
        run_id=data["run_id"],
        pr_number=data["pr_number"],
        pr_url=data["pr_url"],
        head_sha=data["head_sha"],
        runs=data["runs"],
        cost_usd=float(data["cost_usd"] or 0),
        updated_at=data["updated_at"],
    )
