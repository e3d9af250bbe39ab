"""`store.fleets`: fleet changes, their repositories and each repository's transitions.

Every change of a fleet or of one of its repositories bumps the fleet's `version`, so its
reporters (the fleet issue's summary, the Slack summary, the page) know whether there is
anything new to show; `reported_version` is what they last showed. A fleet is leased to
one process's conductor at a time, as runs are to workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update

from app.fleet_models import (
    Fleet,
    FleetOrigin,
    FleetRepo,
    FleetRepoState,
    FleetState,
    FleetTarget,
    FleetTransition,
    NewFleet,
)
from app.store.database import Part, StoreError, shielded, utcnow
from app.store.fleet_rows import fetch_fleet, fetch_repo, thread_columns, to_fleet, to_repo
from app.store.tables import fleet_repos, fleet_transitions, fleets

# What update() may change; the state goes through set_state (compare-and-set).
FLEET_FIELDS = frozenset(
    {
        "summary_comment_id",
        "slack_thread",
        "slack_summary_ts",
        "reported_version",
        "issue_repo",
        "issue_number",
        "canary_size",
    }
)
# Changes that are the reporters' own bookkeeping: they do not make the fleet newer.
_QUIET_FIELDS = frozenset({"summary_comment_id", "slack_summary_ts", "reported_version"})
REPO_FIELDS = frozenset({"reason", "run_id", "pr_number", "pr_url", "head_sha", "cost_usd"})


class Fleets(Part):
    """`store.fleets`: each method one short transaction."""

    @shielded
    async def create(self, new: NewFleet, targets: Sequence[FleetTarget]) -> Fleet:
        """Store a planned fleet with its targets (in order; skipped ones with their reason)."""
        if len({t.repo for t in targets}) != len(targets):
            raise StoreError("a fleet names each repository once")
        now = utcnow()
        values = {
            "installation_id": new.installation_id,
            "requested_by": new.requested_by,
            "request": new.request,
            "selection": new.selection,
            "origin": FleetOrigin(new.origin).value,
            "canary_size": new.canary_size,
            "state": FleetState.PLANNED.value,
            "issue_repo": new.issue_repo,
            "issue_number": new.issue_number,
            "milestones": [],
            "version": 1,
            "reported_version": 0,
            "created_at": now,
            "updated_at": now,
        } | thread_columns(new.slack_thread)
        async with self.db.begin() as conn:
            fleet_id = await conn.scalar(insert(fleets).values(values).returning(fleets.c.id))
            rows = [
                {
                    "fleet_id": fleet_id,
                    "repo": target.repo,
                    "position": position,
                    "state": (
                        FleetRepoState.SKIPPED if target.skipped else FleetRepoState.PLANNED
                    ).value,
                    "reason": target.skipped,
                    "updated_at": now,
                }
                for position, target in enumerate(targets)
            ]
            if rows:
                await conn.execute(insert(fleet_repos), rows)
                await conn.execute(
                    insert(fleet_transitions),
                    [
                        {"fleet_id": fleet_id, "repo": r["repo"], "state": r["state"], "at": now}
                        for r in rows
                    ],
                )
            fleet = await fetch_fleet(conn, fleet_id)
        assert fleet is not None  # just inserted, in this transaction
        return fleet

    @shielded
    async def get(self, fleet_id: int) -> Fleet | None:
        async with self.db.begin() as conn:
            return await fetch_fleet(conn, fleet_id)

    @shielded
    async def find(
        self,
        *,
        installation_id: int | None = None,
        issue_repo: str | None = None,
        issue_number: int | None = None,
        requested_by: str | None = None,
        states: Sequence[FleetState] | None = None,
        limit: int = 50,
    ) -> list[Fleet]:
        """Fleets matching every given filter, newest first."""
        filters = {
            "installation_id": installation_id,
            "issue_repo": issue_repo,
            "issue_number": issue_number,
            "requested_by": requested_by,
        }
        query = select(fleets).where(
            *(fleets.c[k] == v for k, v in filters.items() if v is not None)
        )
        if states is not None:
            query = query.where(fleets.c.state.in_([FleetState(s).value for s in states]))
        async with self.db.begin() as conn:
            rows = (await conn.execute(query.order_by(fleets.c.id.desc()).limit(limit))).all()
        return [to_fleet(row) for row in rows]

    @shielded
    async def update(self, fleet_id: int, /, **fields: Any) -> Fleet:
        """Change the fleet's reporting fields (FLEET_FIELDS); the state goes by set_state."""
        unknown = set(fields) - FLEET_FIELDS
        if unknown:
            raise StoreError(f"not a fleet field update() changes: {sorted(unknown)}")
        values = dict(fields)
        if "slack_thread" in values:
            values |= thread_columns(values.pop("slack_thread"))
        async with self.db.begin() as conn:
            if not set(fields) <= _QUIET_FIELDS:
                values |= {"version": fleets.c.version + 1, "updated_at": utcnow()}
            await conn.execute(update(fleets).where(fleets.c.id == fleet_id).values(values))
            fleet = await fetch_fleet(conn, fleet_id)
        if fleet is None:
            raise StoreError(f"no fleet {fleet_id}")
        return fleet

    @shielded
    async def set_state(
        self,
        fleet_id: int,
        state: FleetState,
        reason: str | None = None,
        *,
        expect: Sequence[FleetState] | None = None,
    ) -> Fleet | None:
        """Move the fleet to `state` (with its reason for people); None if it was not in one
        of `expect` (another process or person moved it first)."""
        now = utcnow()
        values: dict[str, Any] = {
            "state": FleetState(state).value,
            "state_reason": reason,
            "version": fleets.c.version + 1,
            "updated_at": now,
            "finished_at": now if FleetState(state).ended else None,
        }
        scope = fleets.c.id == fleet_id
        if expect is not None:
            scope = and_(scope, fleets.c.state.in_([FleetState(s).value for s in expect]))
        async with self.db.begin() as conn:
            changed = await conn.execute(update(fleets).where(scope).values(values))
            if changed.rowcount == 0:
                if await fetch_fleet(conn, fleet_id) is None:
                    raise StoreError(f"no fleet {fleet_id}")
                return None
            return await fetch_fleet(conn, fleet_id)

    @shielded
    async def announce(self, fleet_id: int, milestone: str) -> bool:
        """Mark `milestone` as announced; False if it already was (say it once only)."""
        async with self.db.begin() as conn:
            fleet = await fetch_fleet(conn, fleet_id)
            if fleet is None:
                raise StoreError(f"no fleet {fleet_id}")
            if milestone in fleet.milestones:
                return False
            await conn.execute(
                update(fleets)
                .where(fleets.c.id == fleet_id)
                .values(milestones=[*fleet.milestones, milestone])
            )
            return True

    @shielded
    async def repos(
        self, fleet_id: int, *, states: Sequence[FleetRepoState] | None = None
    ) -> list[FleetRepo]:
        """The fleet's repositories in the selection's order (only those in `states`)."""
        query = select(fleet_repos).where(fleet_repos.c.fleet_id == fleet_id)
        if states is not None:
            query = query.where(fleet_repos.c.state.in_([FleetRepoState(s).value for s in states]))
        async with self.db.begin() as conn:
            rows = (await conn.execute(query.order_by(fleet_repos.c.position))).all()
        return [to_repo(row) for row in rows]

    @shielded
    async def repo(self, fleet_id: int, repo: str) -> FleetRepo | None:
        async with self.db.begin() as conn:
            return await fetch_repo(conn, fleet_id, repo)

    @shielded
    async def of_run(self, run_id: int) -> FleetRepo | None:
        """The fleet repository whose latest run is `run_id`, if any."""
        query = select(fleet_repos).where(fleet_repos.c.run_id == run_id).limit(1)
        async with self.db.begin() as conn:
            row = (await conn.execute(query)).first()
        return to_repo(row) if row else None

    @shielded
    async def of_pr(self, repo: str, pr_number: int) -> FleetRepo | None:
        """The fleet repository whose PR this is, if any (the newest fleet's)."""
        query = (
            select(fleet_repos)
            .where(fleet_repos.c.repo == repo, fleet_repos.c.pr_number == pr_number)
            .order_by(fleet_repos.c.fleet_id.desc())
            .limit(1)
        )
        async with self.db.begin() as conn:
            row = (await conn.execute(query)).first()
        return to_repo(row) if row else None

    @shielded
    async def set_repo(
        self,
        /,
        fleet_id: int,
        repo: str,
        state: FleetRepoState,
        *,
        expect: Sequence[FleetRepoState] | None = None,
        queued: bool = False,
        **fields: Any,
    ) -> FleetRepo | None:
        """Move one repository to `state` with the given REPO_FIELDS; a new state is kept as
        a transition. `queued` counts a run queued for it. None if it was not in `expect`."""
        unknown = set(fields) - REPO_FIELDS
        if unknown:
            raise StoreError(f"not a fleet repository field: {sorted(unknown)}")
        now = utcnow()
        async with self.db.begin() as conn:
            before = await fetch_repo(conn, fleet_id, repo)
            if before is None:
                raise StoreError(f"no repository {repo} in fleet {fleet_id}")
            if expect is not None and before.state not in expect:
                return None
            values: dict[str, Any] = fields | {"state": FleetRepoState(state).value}
            values["updated_at"] = now
            if queued:
                values["runs"] = fleet_repos.c.runs + 1
            await conn.execute(
                update(fleet_repos)
                .where(fleet_repos.c.fleet_id == fleet_id, fleet_repos.c.repo == repo)
                .values(values)
            )
            if before.state != state:
                await conn.execute(
                    insert(fleet_transitions).values(
                        fleet_id=fleet_id, repo=repo, state=FleetRepoState(state).value, at=now
                    )
                )
            await conn.execute(
                update(fleets)
                .where(fleets.c.id == fleet_id)
                .values(version=fleets.c.version + 1, updated_at=now)
            )
            return await fetch_repo(conn, fleet_id, repo)

    @shielded
    async def counts(self, fleet_id: int) -> dict[FleetRepoState, int]:
        """How many of the fleet's repositories are in each state (every state named)."""
        return await self._repo_counts(fleet_repos.c.fleet_id == fleet_id)

    @shielded
    async def open_repo_counts(self) -> dict[FleetRepoState, int]:
        """How many repositories of the fleets not ended are in each state, in one query:
        the `/metrics` gauge."""
        open_states = [state.value for state in FleetState if not state.ended]
        open_fleets = select(fleets.c.id).where(fleets.c.state.in_(open_states))
        return await self._repo_counts(fleet_repos.c.fleet_id.in_(open_fleets))

    async def _repo_counts(self, scope: ColumnElement[bool]) -> dict[FleetRepoState, int]:
        query = select(fleet_repos.c.state, func.count()).where(scope).group_by(fleet_repos.c.state)
        async with self.db.begin() as conn:
            found = {FleetRepoState(state): n for state, n in await conn.execute(query)}
        return {state: found.get(state, 0) for state in FleetRepoState}

    @shielded
    async def transitions(self, fleet_id: int) -> list[FleetTransition]:
        """Every state each repository entered, oldest first."""
        query = (
            select(fleet_transitions)
            .where(fleet_transitions.c.fleet_id == fleet_id)
            .order_by(fleet_transitions.c.id)
        )
        async with self.db.begin() as conn:
            rows = (await conn.execute(query)).all()
        return [FleetTransition(row.repo, FleetRepoState(row.state), row.at) for row in rows]

    @shielded
    async def claim(self, owner: str, lease_seconds: float, *, limit: int = 20) -> list[Fleet]:
        """Lease to `owner` the fleets with work whose lease is free, expired or its own: those
        not ended, and ended ones whose summaries are behind (`version > reported_version`:
        their last runs, merges, a roll back still to tell or do)."""
        now = utcnow()
        until = now + timedelta(seconds=lease_seconds)
        open_states = [s.value for s in FleetState if not s.ended]
        free = or_(
            fleets.c.lease_owner.is_(None),
            fleets.c.lease_owner == owner,
            fleets.c.lease_expires_at < now,
        )
        work = or_(fleets.c.state.in_(open_states), fleets.c.version > fleets.c.reported_version)
        async with self.db.begin() as conn:
            query = select(fleets.c.id).where(work, free)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(await conn.scalars(query.order_by(fleets.c.id).limit(limit)))
            if not ids:
                return []
            await conn.execute(
                update(fleets)
                .where(fleets.c.id.in_(ids), free)
                .values(lease_owner=owner, lease_expires_at=until)
            )
            query = select(fleets).where(fleets.c.id.in_(ids), fleets.c.lease_owner == owner)
            rows = (await conn.execute(query.order_by(fleets.c.id))).all()
        return [to_fleet(row) for row in rows]

    @shielded
    async def count_by_state(self) -> dict[FleetState, int]:
        """How many fleets are in each state (every state named): the `/metrics` gauge."""
        query = select(fleets.c.state, func.count()).group_by(fleets.c.state)
        async with self.db.begin() as conn:
            found = {FleetState(state): n for state, n in await conn.execute(query)}
        return {state: found.get(state, 0) for state in FleetState}

    @shielded
    async def release(self, fleet_id: int, owner: str) -> None:
        """Give a fleet's lease back (the conductor stopping)."""
        async with self.db.begin() as conn:
            await conn.execute(
                update(fleets)
                .where(fleets.c.id == fleet_id, fleets.c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
