"""The runs table is the work queue: one active run per issue, serial keys, leases, cancels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import ACTIVE_STATES, Run, RunKind, RunState, SlackThread, Usage
from app.store.database import Part, StoreError, shielded, utcnow
from app.store.run_rows import fetch_run, load_steps, thread_columns, to_run
from app.store.tables import USAGE_COLUMNS, run_steps, runs

UPDATABLE_FIELDS = frozenset(
    {
        "branch",
        "base_branch",
        "pr_number",
        "pr_url",
        "head_sha",
        "tracking_comment_id",
        "slack_thread",
        "error",
        "round",
        "instructions",
        "issue_number",
        "review",
    }
)
_NO_LEASE = {"lease_owner": None, "lease_expires_at": None}


@dataclass
class NewRun:
    repo: str
    installation_id: int
    kind: RunKind = RunKind.ISSUE
    issue_number: int | None = None
    pr_number: int | None = None
    branch: str | None = None
    base_branch: str | None = None
    requested_by: str | None = None
    instructions: str = ""
    delivery_id: str | None = None
    slack_thread: SlackThread | None = None
    round: int = 0
    tracking_comment_id: int | None = None
    fleet_id: int | None = None

    @classmethod
    def follow_up(
        cls,
        origin: Run,
        *,
        kind: RunKind,
        requested_by: str | None,
        instructions: str,
        round: int = 0,
        delivery_id: str | None = None,
    ) -> NewRun:
        """Another run on `origin`'s branch and PR, reporting in its Slack thread."""
        return cls(
            repo=origin.repo,
            installation_id=origin.installation_id,
            kind=kind,
            issue_number=origin.issue_number,
            pr_number=origin.pr_number,
            branch=origin.branch,
            base_branch=origin.base_branch,
            requested_by=requested_by,
            instructions=instructions,
            delivery_id=delivery_id,
            slack_thread=origin.slack_thread,
            round=round,
            fleet_id=origin.fleet_id,
        )

    def row(self) -> dict[str, Any]:
        """The runs table's columns for this run (the Slack thread is two columns)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return values | thread_columns(values.pop("slack_thread"))


class RunQueue(Part):
    """`store.runs`: queued, claimed under a worker's lease, renewed, finished; found by
    what they did."""

    @shielded
    async def enqueue(self, new: NewRun) -> Run | None:
        """Queue a run; None for an ISSUE or FLEET run when its issue (or its fleet's
        repository) already has an active run."""
        now = utcnow()
        kind = RunKind(new.kind)
        try:
            async with self.db.begin() as conn:
                key = await _serial_key(conn, new)
                if kind in (RunKind.ISSUE, RunKind.FLEET) and key is not None:
                    active = select(runs.c.id).where(
                        runs.c.serial_key == key, runs.c.state.in_(ACTIVE_STATES)
                    )
                    if await conn.scalar(active.limit(1)) is not None:
                        return None
                values = new.row() | {
                    "kind": kind.value,
                    "state": RunState.QUEUED.value,
                    "serial_key": key,
                    "created_at": now,
                    "updated_at": now,
                }
                run_id = await conn.scalar(insert(runs).values(values).returning(runs.c.id))
                return await fetch_run(conn, run_id)
        except IntegrityError:
            # Another process enqueued for the same issue between our check and insert:
            # the partial unique index uq_runs_active_issue refused the second one.
            return None

    @shielded
    async def claim(self, worker_id: str, lease_seconds: float) -> Run | None:
        """The oldest claimable run, now RUNNING under this worker's lease; attempts += 1."""
        now = utcnow()
        async with self.db.begin() as conn:
            # A cancel requested of a worker that died or let go of the run ends it here.
            await conn.execute(
                update(runs)
                .where(runs.c.cancel_requested, _waiting(now))
                .values(**_NO_LEASE, state=RunState.CANCELLED, finished_at=now, updated_at=now)
            )
            # SKIP LOCKED lets PostgreSQL workers pass over a row another worker is claiming;
            # SQLite ignores FOR UPDATE, but its BEGIN IMMEDIATE already serializes claims.
            run_id = await conn.scalar(
                select(runs.c.id)
                .where(_claimable(now))
                .order_by(runs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if run_id is None:
                return None
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    state=RunState.RUNNING,
                    attempts=runs.c.attempts + 1,
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    started_at=func.coalesce(runs.c.started_at, now),
                    updated_at=now,
                )
            )
            return await fetch_run(conn, run_id)

    @shielded
    async def renew_lease(self, run_id: int, worker_id: str, lease_seconds: float) -> bool:
        now = utcnow()
        async with self.db.begin() as conn:
            result = await conn.execute(
                update(runs)
                .where(_held(run_id, worker_id))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
            )
        return result.rowcount == 1

    @shielded
    async def release(self, run_id: int, worker_id: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(runs)
                .where(_held(run_id, worker_id))
                .values(**_NO_LEASE, state=RunState.QUEUED, updated_at=utcnow())
            )

    @shielded
    async def get(self, run_id: int) -> Run | None:
        async with self.db.begin() as conn:
            return await fetch_run(conn, run_id)

    @shielded
    async def update(self, /, run_id: int, **fields: Any) -> Run:
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise StoreError(f"run fields that cannot be updated: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {**fields, "updated_at": utcnow()}
        if "slack_thread" in values:
            values |= thread_columns(values.pop("slack_thread"))
        number = fields.get("issue_number") or fields.get("pr_number")
        if number is not None:
            # A run queued without an issue (e.g. from Slack) joins its issue's queue once known.
            values["serial_key"] = func.coalesce(
                runs.c.serial_key, runs.c.repo.concat(f"#{number}")
            )
        return await self._change_run(run_id, values)

    @shielded
    async def save(self, /, run: Run, **fields: Any) -> None:
        """update, and the same fields set on `run` in memory: the two never drift."""
        stored = await self.update(run.id, **fields)
        for name in fields:
            setattr(run, name, getattr(stored, name))

    @shielded
    async def add_step(self, run_id: int, name: str, detail: str = "") -> None:
        now = utcnow()
        async with self.db.begin() as conn:
            await _touch(conn, run_id, now)
            await conn.execute(
                insert(run_steps).values(run_id=run_id, name=name, detail=detail, at=now)
            )

    @shielded
    async def add_usage(self, run_id: int, usage: Usage) -> Usage:
        added = usage.to_dict()
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id)
                    .values(**{c: runs.c[c] + added[c] for c in USAGE_COLUMNS}, updated_at=utcnow())
                    .returning(*(runs.c[c] for c in USAGE_COLUMNS))
                )
            ).first()
        if row is None:
            raise StoreError(f"no run {run_id}")
        return Usage.from_dict(dict(row._mapping))

    @shielded
    async def finish(self, run_id: int, state: RunState, *, error: str | None = None) -> Run:
        if state.active:
            raise StoreError(f"finish needs a final state, not {state}")
        now = utcnow()
        values: dict[str, Any] = dict(_NO_LEASE, state=state, finished_at=now, updated_at=now)
        if error is not None:
            values["error"] = error
        return await self._change_run(run_id, values)

    @shielded
    async def request_cancel(self, run_id: int) -> Run:
        async with self.db.begin() as conn:
            await _cancel(conn, runs.c.id == run_id)
            run = await fetch_run(conn, run_id)
        if run is None:
            raise StoreError(f"no run {run_id}")
        return run

    @shielded
    async def find(
        self,
        *,
        repo: str | None = None,
        issue_number: int | None = None,
        pr_number: int | None = None,
        head_sha: str | None = None,
        branch: str | None = None,
        installation_id: int | None = None,
        requested_by: str | None = None,
        fleet_id: int | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs matching every given filter, newest first."""
        filters = {
            "requested_by": requested_by,
            "repo": repo,
            "issue_number": issue_number,
            "pr_number": pr_number,
            "head_sha": head_sha,
            "branch": branch,
            "installation_id": installation_id,
            "fleet_id": fleet_id,
        }
        query = select(runs).where(*(runs.c[k] == v for k, v in filters.items() if v is not None))
        if states is not None:
            query = query.where(runs.c.state.in_(list(states)))
        async with self.db.begin() as conn:
            rows = (await conn.execute(query.order_by(runs.c.id.desc()).limit(limit))).all()
            steps = await load_steps(conn, [row.id for row in rows])
        return [to_run(row, steps.get(row.id, [])) for row in rows]

    @shielded
    async def newest(self, /, **filters: Any) -> Run | None:
        """The newest run matching `filters` (those of find), or None."""
        found = await self.find(**filters, limit=1)
        return found[0] if found else None

    @shielded
    async def cancel_all(self, *, installation_id: int, repos: Sequence[str] | None = None) -> int:
        """Cancel an installation's queued runs and ask its running ones to stop; how many."""
        scope = runs.c.installation_id == installation_id
        if repos is not None:
            scope = and_(scope, runs.c.repo.in_(list(repos)))
        async with self.db.begin() as conn:
            return await _cancel(conn, scope)

    async def _change_run(self, run_id: int, values: dict[str, Any]) -> Run:
        async with self.db.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(values))
            run = await fetch_run(conn, run_id)
        if run is None:
            raise StoreError(f"no run {run_id}")
        return run


# -- queue rules ----------------------------------------------------------------------------


def _waiting(now: datetime) -> ColumnElement[bool]:
    """QUEUED, or RUNNING under the lease of a worker that died."""
    return or_(
        runs.c.state == RunState.QUEUED,
        and_(runs.c.state == RunState.RUNNING, runs.c.lease_expires_at < now),
    )


def _held(run_id: int, worker_id: str) -> ColumnElement[bool]:
    return and_(
        runs.c.id == run_id, runs.c.state == RunState.RUNNING, runs.c.lease_owner == worker_id
    )


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Waiting, and first in line for its serial key.

    Runs sharing a serial key go one at a time, oldest first: a run waits while an older run
    with its key is still active, or while any run with its key holds a live lease.
    """
    other = runs.alias("other")
    ahead = exists().where(
        other.c.serial_key == runs.c.serial_key,
        other.c.id != runs.c.id,
        other.c.state.in_(ACTIVE_STATES),
        or_(other.c.id < runs.c.id, other.c.lease_expires_at >= now),
    )
    return and_(_waiting(now), ~ahead)


async def _serial_key(conn: AsyncConnection, new: NewRun) -> str | None:
    """owner/name#N of the issue; for a PR, the key of the earliest run on that PR; a fleet's
    first run in a repository, owner/name@fleet-F."""
    if new.issue_number is not None:
        return f"{new.repo}#{new.issue_number}"
    if new.pr_number is None:
        return f"{new.repo}@fleet-{new.fleet_id}" if new.fleet_id is not None else None
    earlier = await conn.scalar(
        select(runs.c.serial_key)
        .where(
            runs.c.repo == new.repo,
            runs.c.pr_number == new.pr_number,
            runs.c.serial_key.is_not(None),
        )
        .order_by(runs.c.id)
        .limit(1)
    )
    return earlier or f"{new.repo}#{new.pr_number}"


async def _cancel(conn: AsyncConnection, scope: ColumnElement[bool]) -> int:
    """Queued runs in scope are cancelled now; running ones get cancel_requested."""
    now = utcnow()
    cancelled = await conn.execute(
        update(runs)
        .where(scope, runs.c.state == RunState.QUEUED)
        .values(state=RunState.CANCELLED, finished_at=now, updated_at=now)
    )
    flagged = await conn.execute(
        update(runs)
        .where(scope, runs.c.state == RunState.RUNNING, ~runs.c.cancel_requested)
        .values(cancel_requested=True, updated_at=now)
    )
    return cancelled.rowcount + flagged.rowcount


async def _touch(conn: AsyncConnection, run_id: int, now: datetime) -> None:
    result = await conn.execute(update(runs).where(runs.c.id == run_id).values(updated_at=now))
    if result.rowcount != 1:
        raise StoreError(f"no run {run_id}")
