"""tools/store_call_sites.py: old flat store calls rewritten to the store's parts, once."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from app.store import Store
from app.store.database import Database
from app.store.engine import create_engine

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "store_call_sites.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_call_sites", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OLD = """\
run = await store.enqueue_run(new)
await self.store.add_step(run.id, "cloned")
found = await ctx.store.find_runs(repo=repo)
other.delivery_retry_delay = 0.05
value = await store_of(client).get_kv("installation", key)
rows = select(tables.run_events)
await store.runs.add_step(run.id, "already new")
"""
NEW = """\
run = await store.runs.enqueue(new)
await self.store.runs.add_step(run.id, "cloned")
found = await ctx.store.runs.find(repo=repo)
other.inbox.retry_delay = 0.05
value = await store_of(client).kv.get("installation", key)
rows = select(tables.run_events)
await store.runs.add_step(run.id, "already new")
"""


def test_old_calls_become_calls_on_parts_and_a_second_pass_changes_nothing() -> None:
    rewrite = tool().rewrite
    text, notes = rewrite(OLD)
    assert text == NEW
    assert "store.enqueue_run -> store.runs.enqueue" in notes and len(notes) == 5
    assert rewrite(text) == (NEW, [])


async def test_every_new_name_is_on_its_part() -> None:
    store = Store(Database(create_engine("sqlite+aiosqlite:///:memory:")))
    try:
        for old, (part, name) in tool().MAPPING.items():
            assert not hasattr(store, old), old
            target = getattr(getattr(store, part), name)
            assert inspect.iscoroutinefunction(target) or name == "retry_delay", (old, name)
    finally:
        await store.close()


def test_check_lists_without_writing(tmp_path: Path) -> None:
    source = tmp_path / "late.py"
    source.write_text(OLD)
    command = [sys.executable, str(TOOL), "--check", str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "store.get_kv -> " not in result.stdout
    assert "store_of(client).get_kv" not in result.stdout  # receivers are shown as matched
    assert f"{source}: ).get_kv -> ).kv.get" in result.stdout
    assert source.read_text() == OLD
    subprocess.run([sys.executable, str(TOOL), str(source)], check=True, timeout=60)
    assert source.read_text() == NEW
