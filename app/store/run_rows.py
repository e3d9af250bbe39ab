"""The runs table's rows as `Run`s (with their steps), and a Slack thread as two columns."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import Run, RunKind, RunState, SlackThread, Step, Usage
from app.store.tables import USAGE_COLUMNS, run_steps, runs

_PLAIN_RUN_FIELDS = [
    f.name
    for f in dataclasses.fields(Run)
    if f.name not in ("kind", "state", "usage", "steps", "slack_thread")
]


async def fetch_run(conn: AsyncConnection, run_id: int | None) -> Run | None:
    row = (await conn.execute(select(runs).where(runs.c.id == run_id))).first()
    if row is None:
        return None
    return to_run(row, (await load_steps(conn, [row.id])).get(row.id, []))


async def load_steps(conn: AsyncConnection, run_ids: list[int]) -> dict[int, list[Step]]:
    steps: dict[int, list[Step]] = {}
    if run_ids:
        query = select(run_steps).where(run_steps.c.run_id.in_(run_ids)).order_by(run_steps.c.id)
        for row in await conn.execute(query):
            steps.setdefault(row.run_id, []).append(Step(row.name, row.at, row.detail))
    return steps


def thread_columns(thread: SlackThread | None) -> dict[str, str | None]:
    return {
        "slack_channel": thread.channel if thread else None,
        "slack_ts": thread.ts if thread else None,
    }


def to_run(row: Row[Any], steps: list[Step]) -> Run:
    data = row._mapping
    channel, ts = data["slack_channel"], data["slack_ts"]
    return Run(
        kind=RunKind(data["kind"]),
        state=RunState(data["state"]),
        slack_thread=SlackThread(channel, ts) if channel and ts else None,
        usage=Usage.from_dict({c: data[c] for c in USAGE_COLUMNS}),
        steps=steps,
        **{name: data[name] for name in _PLAIN_RUN_FIELDS},
    )
