"""One test command run by the outcome checks: in a sandbox over a scratch tree, offline, its
structured report read back from a folder of its own in the tree."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from app.review import reports
from app.review.reports import Results
from app.review.runners import NODE, Runner
from app.workspace.sandbox import Sandbox

OUTPUT_TAIL = 2000


async def run_suite(
    sandbox: Sandbox, tree: Path, runner: Runner, *, only: Sequence[str] = ()
) -> tuple[Results, float, str]:
    """Run `runner` in `tree` (offline) and read its report: (results, seconds, output tail)."""
    folder = f".honk-report-{secrets.token_hex(6)}"
    local = tree / folder
    await asyncio.to_thread(local.mkdir)
    visible = f"{sandbox.visible_root}/{folder}"
    helper = ""
    if runner.kind == NODE:
        await asyncio.to_thread((local / "reporter.mjs").write_text, reports.NODE_REPORTER)
        helper = f"{visible}/reporter.mjs"
    command = runner.invocation(f"{visible}/report", helper=helper, only=only)
    started = time.monotonic()
    try:
        result = await sandbox.run(command, offline=True)
        seconds = time.monotonic() - started
        raw = await asyncio.to_thread(_read_report, local / "report")
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_remove_tree, local)
    results = runner.read(raw, result.exit_code, root=sandbox.visible_root)
    if result.timed_out:
        results.why = results.why or "the run timed out"
    elif result.limit:
        results.why = results.why or result.limit
    return results, seconds, result.output[-OUTPUT_TAIL:]


def _read_report(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(reports.MAX_REPORT_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
