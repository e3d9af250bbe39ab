"""A run's events in the store: numbered per run, redacted and bounded before they are stored,
kept across a restart and readable by another process (SQLite here, PostgreSQL as well)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.agent.results import AgentEvent
from app.log import redact
from app.models import RunState
from app.runs.events import RunEvents, split_diff
from app.store import Store
from app.store.tables import metadata
from tests.store.test_store import issue_run, some, store_fixture  # noqa: F401
from tests.store_child import running


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite file; tests/store/test_store_postgres.py runs these tests again on PostgreSQL."""
    return f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"


GITHUB_TOKEN = "ghs_" + "k3y" * 15  # token-shaped: redacted by its prefix, whatever its length
REGISTERED = "a-registered-secret-value-42"


def tool_done(output: str, turn: int = 1) -> AgentEvent:
    return AgentEvent("tool_done", turn, "bash", "cat .env", tool_id=f"t{turn}", output=output)


async def test_events_are_numbered_per_run_and_read_after_a_cursor(store: Store) -> None:
    first = some(await store.runs.enqueue(issue_run(1)))
    second = some(await store.runs.enqueue(issue_run(2)))
    for n in range(3):
        await store.events.add(first.id, "text", {"text": f"a{n}"}, size=3)
    await store.events.add(second.id, "phase", {"name": "checkout"})
    assert [e.seq for e in await store.events.read(first.id)] == [1, 2, 3]
    assert [e.data["text"] for e in await store.events.read(first.id, after=1, limit=1)] == ["a1"]
    assert [e.seq for e in await store.events.read(second.id)] == [1]
    assert [e.kind for e in await store.events.read(first.id, kinds=("phase",))] == []
    totals = await store.events.totals(first.id)
    assert (totals.count, totals.size, totals.last_seq) == (3, 9, 3)


async def test_concurrent_writers_never_share_a_number(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    await asyncio.gather(*(store.events.add(run.id, "turn", {"turn": n}) for n in range(20)))
    assert [e.seq for e in await store.events.read(run.id)] == list(range(1, 21))


async def test_secrets_never_reach_the_store(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    redact.add(REGISTERED)
    events = RunEvents(store, run.id)
    await events.agent(tool_done(f"GITHUB_TOKEN={GITHUB_TOKEN}\nAPI={REGISTERED}\n"))
    await events.agent(
        AgentEvent("tool", 2, "bash", "echo", tool_id="t2", tool_input={"command": GITHUB_TOKEN})
    )
    await events.diff(f"diff --git a/x b/x\n+++ b/x\n+token = '{GITHUB_TOKEN}'\n")
    stored = json.dumps([e.data for e in await store.events.read(run.id)])
    assert GITHUB_TOKEN not in stored and REGISTERED not in stored
    assert stored.count("[REDACTED]") == 4


async def test_a_long_transcript_is_bounded_with_a_note_of_what_was_cut(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    events = RunEvents(store, run.id, max_chars=5_000, max_events=1_000, max_field=1_000)
    await events.phase("agent")
    for turn in range(1, 21):
        await events.agent(tool_done("x" * 3_000, turn))  # each output cut to ~1,000 characters
    await events.finished(RunState.SUCCEEDED)
    stored = await store.events.read(run.id)
    kinds = [e.kind for e in stored]
    kept = [e for e in stored if e.kind == "tool_done"]
    assert 0 < len(kept) < 20
    assert all(len(e.data["output"]) < 1_200 and "characters" in e.data["output"] for e in kept)
    notes = [e.data["note"] for e in stored if e.kind == "truncated"]
    assert len(notes) == 2 and "limit" in notes[0]
    assert f"{20 - len(kept)} agent events" in notes[1]
    assert kinds[0] == "phase" and kinds[-1] == "finished"  # phases and the end are always kept
    totals = await store.events.totals(run.id)
    assert totals.size <= 5_000 + 2_000  # the bound, plus the notes and the end


async def test_a_run_claimed_again_carries_on_numbering_and_its_bound(store: Store) -> None:
    run = some(await store.runs.enqueue(issue_run(1)))
    first = RunEvents(store, run.id, max_chars=2_000)
    await first.agent(tool_done("y" * 1_500))
    again = RunEvents(store, run.id, max_chars=2_000)  # the next attempt, after a crash
    await again.agent(tool_done("z" * 1_500, turn=2))
    await again.phase("verify")
    assert [e.kind for e in await store.events.read(run.id)] == ["tool_done", "truncated", "phase"]


def test_a_diff_is_split_per_file_and_counted() -> None:
    diff = (
        "diff --git a/calc.py b/calc.py\nindex 1..2 100644\n--- a/calc.py\n+++ b/calc.py\n"
        "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n"
        "@@ -0,0 +1,2 @@\n+one\n+two\n"
    )
    files = split_diff(diff)["files"]
    assert [(f["path"], f["added"], f["removed"]) for f in files] == [
        ("calc.py", 1, 1),
        ("new.txt", 2, 0),
    ]
    assert files[0]["patch"].startswith("diff --git a/calc.py") and not files[0]["cut"]


@pytest.mark.slow
async def test_events_survive_a_restart_and_another_process_reads_them(store_url: str) -> None:
    writer = await Store.open(store_url)
    try:
        run = some(await writer.runs.enqueue(issue_run(1)))
        events = RunEvents(writer, run.id)
        await events.phase("agent", "starting")
        await events.agent(AgentEvent("text", 1, detail="I will fix add()."))
    finally:
        await writer.close()
    async with running("events", store_url, str(run.id)) as child:
        assert child.stdout is not None
        out, _ = await asyncio.wait_for(child.communicate(), timeout=60)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(e["seq"], e["kind"]) for e in lines] == [(1, "phase"), (2, "text")]
    assert lines[1]["data"]["text"] == "I will fix add()."


async def test_the_migrated_schema_is_the_tables_schema(store: Store) -> None:
    async with store.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert differences == []
