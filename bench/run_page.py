"""The run page's costs: recording an event as it happens, and rendering a run at its bound.

Recording (redact, bound, number, insert into SQLite) is set beside a bare insert of the same
event; rendering a transcript at the per-run bound beside rendering an empty run. The
targets: recording stays within a few milliseconds an event (a run records a few hundred),
and the largest page renders in well under the 10 s a phone without JavaScript waits.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from app.agent.results import AgentEvent
from app.models import Run, RunKind, RunState
from app.runs.events import MAX_RUN_CHARS, RunEvents
from app.store import NewRun, RunEvent, Store
from app.web.pages import render, run_summary, view

OUTPUT = "\n".join(f"line {n}: " + "x" * 60 for n in range(30))  # about 2 KB of output


async def recording(events: int) -> tuple[float, float]:
    """(median ms per recorded event, median ms per bare insert)."""
    with tempfile.TemporaryDirectory(prefix="honk-bench-") as tmp:
        store = await Store.open(f"sqlite+aiosqlite:///{Path(tmp) / 'honk.db'}")
        try:
            recorded = await store.runs.enqueue(NewRun(repo="bench/app", installation_id=1))
            bare = await store.runs.enqueue(NewRun(repo="bench/app", installation_id=1))
            assert recorded is not None and bare is not None
            log = RunEvents(store, recorded.id)
            with_bounds, plain = [], []
            for turn in range(events):
                event = AgentEvent(
                    "tool_done", turn, "bash", "seq", tool_id=f"t{turn}", output=OUTPUT
                )
                start = time.perf_counter()
                await log.agent(event)
                with_bounds.append(time.perf_counter() - start)
                start = time.perf_counter()
                await store.events.add(bare.id, "tool_done", {"output": OUTPUT})
                plain.append(time.perf_counter() - start)
        finally:
            await store.close()
    return statistics.median(with_bounds) * 1000, statistics.median(plain) * 1000


def rendering(events: int) -> tuple[float, float, int]:
    """(seconds for a run of `events` tool calls, seconds for an empty run, page bytes)."""
    now = datetime.now(UTC)
    times = {"created_at": now, "started_at": now, "finished_at": now, "updated_at": now}
    run = Run(1, "bench/app", 1, RunKind.ISSUE, RunState.SUCCEEDED, issue_number=1, **times)
    stored: list[RunEvent] = []
    for n in range(events):
        tool = {"turn": n, "id": f"t{n}", "name": "bash", "detail": "seq"}
        tool["input"] = {"command": "seq 30"}
        stored.append(RunEvent(2 * n + 1, "tool", now, tool))
        stored.append(RunEvent(2 * n + 2, "tool_done", now, {**tool, "output": OUTPUT}))

    def page(of: list[RunEvent]) -> str:
        made = view.entries(of)
        links = {"repo": "", "issue": None, "pr": None, "check": None, "slack": None}
        return render.page(
            "run.html",
            viewer=None,
            csrf="",
            run=run,
            s=run_summary.summary(run, "claude-sonnet-4-6"),
            links=links,
            steer=False,
            transcript=made,
            verification=None,
            diff=None,
            reviews=[],
            network=[],
            last_seq=len(of),
            refresh=10,
        )

    start = time.perf_counter()
    big = page(stored)
    full = time.perf_counter() - start
    start = time.perf_counter()
    page([])
    empty = time.perf_counter() - start
    return full, empty, len(big)


async def main(quick: bool = False) -> None:
    per_event, bare = await recording(100 if quick else 500)
    print("run page: recording an agent event (2 KB of output) into SQLite")
    print(f"  redacted, bounded, numbered  {per_event:6.2f} ms")
    print(f"  bare insert (baseline)       {bare:6.2f} ms")
    # The per-run bound lets about MAX_RUN_CHARS / 2.2 KB tool results through.
    events = 100 if quick else MAX_RUN_CHARS // 2200
    full, empty, size = await asyncio.to_thread(rendering, events)
    print(f"run page: rendering a run of {events} tool calls ({size / 1e6:.1f} MB of HTML)")
    print(f"  that run                     {full:6.3f} s")
    print(f"  an empty run (baseline)      {empty:6.3f} s")


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
