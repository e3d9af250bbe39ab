"""The review's deterministic checks on a large real diff, beside parsing it alone (unidiff).

The diff is git's, of the Python standard library's own test files with every tenth line
changed and a test skipped in each file: thousands of hunks, megabytes of text. The baseline,
measured in the same run, is `unidiff.PatchSet` on the same text; the checks read every line
of every hunk once more with the per-language patterns, and parse each changed Python file on
both sides (`ast`, app/review/tamper.py), which is where the skips are found.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unidiff import PatchSet

from app.runs.diff_checks import Change, check_change, check_diff, read_change
from app.workspace.checkout import Checkout

TARGET_SECONDS_PER_MB = 1.0  # the line checks of a 1 MB diff take under a second
# The parse checks read whole files on both sides: Python's own parse is their floor.
TARGET_TIMES_AST_PARSE = 3.0


def make_change(root: Path, quick: bool) -> tuple[Change, int]:
    source = (
        Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    )
    tests = sorted((source / "test").glob("test_*.py"))[: 60 if quick else 400]
    work = root / "work"
    work.mkdir()
    for path in tests:
        shutil.copy(path, work / path.name)

    def git(*args: str) -> str:
        command = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args]
        done = subprocess.run(
            command, cwd=work, check=True, capture_output=True, text=True, errors="replace"
        )
        return done.stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "tests")
    start = git("rev-parse", "HEAD").strip()
    for path in work.glob("test_*.py"):
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        for index in range(0, len(lines), 10):
            lines[index] = lines[index].rstrip("\n") + "  # changed\n"
        text = "".join(lines).replace(
            "    def test_", "    @unittest.skip('bench')\n    def test_", 1
        )
        path.write_text(text)
    checkout = Checkout(work, "b/b", "honk/bench", "main", "file:///dev/null", start_sha=start)
    return asyncio.run(read_change(checkout)), len(tests)


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times) if runs < 3 else statistics.median(times)


def _python_parse(change: Change) -> None:
    """Python's own parse of both sides of every changed file: the parse checks' baseline."""
    for file in change.python:
        for text in (file.before, file.after):
            if text is not None:
                with contextlib.suppress(SyntaxError, ValueError):
                    ast.parse(text)


def main(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        change, files = make_change(Path(tmp), quick)
    diff = change.diff
    megabytes = len(diff.encode()) / 1e6
    python_mb = sum(len(f.before or "") + len(f.after or "") for f in change.python) / 1e6
    runs = 3 if quick else 5
    parse = best_of(runs, lambda: PatchSet(diff))
    lines = best_of(runs, lambda: check_diff(diff, request="Fix the flaky tests"))
    python = best_of(runs, lambda: _python_parse(change))
    checks = best_of(runs, lambda: check_change(change, request="Fix the flaky tests"))
    findings = check_change(change, request="Fix the flaky tests")
    per_mb = lines / megabytes
    parsed = checks - lines
    print(
        f"review checks: {files} test files, {megabytes:.1f} MB diff, {python_mb:.1f} MB of "
        f"Python on both sides, {len(findings)} findings"
    )
    print(f"  baseline unidiff parse     {parse * 1000:8.1f} ms")
    print(f"  the diff's line checks     {lines * 1000:8.1f} ms  ({lines / parse:.1f}x the parse)")
    verdict = "ok" if per_mb < TARGET_SECONDS_PER_MB else "SLOW"
    print(
        f"    per MB of diff           {per_mb * 1000:8.1f} ms  "
        f"(target < {TARGET_SECONDS_PER_MB * 1000:.0f} ms: {verdict})"
    )
    print(f"  baseline ast.parse (both)  {python * 1000:8.1f} ms")
    verdict = "ok" if parsed < TARGET_TIMES_AST_PARSE * python else "SLOW"
    print(
        f"  the parse checks           {parsed * 1000:8.1f} ms  ({parsed / python:.1f}x "
        f"ast.parse; target < {TARGET_TIMES_AST_PARSE:g}x: {verdict})"
    )
