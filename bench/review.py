"""The review's deterministic checks on a large real diff, beside parsing it alone (unidiff).

The diff is git's, of the Python standard library's own test files with every tenth line
changed and a test skipped in each file: thousands of hunks, megabytes of text. The baseline,
measured in the same run, is `unidiff.PatchSet` on the same text; the checks read every line
of every hunk once more with the per-language patterns.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unidiff import PatchSet

from app.runs.diff_checks import check_diff

TARGET_SECONDS_PER_MB = 1.0  # the checks of a 1 MB diff take under a second


def make_diff(root: Path, quick: bool) -> tuple[str, int]:
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
    for path in work.glob("test_*.py"):
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        for index in range(0, len(lines), 10):
            lines[index] = lines[index].rstrip("\n") + "  # changed\n"
        text = "".join(lines).replace(
            "    def test_", "    @unittest.skip('bench')\n    def test_", 1
        )
        path.write_text(text)
    return git("diff", "--find-renames", "HEAD"), len(tests)


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times) if runs < 3 else statistics.median(times)


def main(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        diff, files = make_diff(Path(tmp), quick)
    megabytes = len(diff.encode()) / 1e6
    runs = 3 if quick else 5
    parse = best_of(runs, lambda: PatchSet(diff))
    checks = best_of(runs, lambda: check_diff(diff, request="Fix the flaky tests"))
    findings = check_diff(diff, request="Fix the flaky tests")
    per_mb = checks / megabytes
    print(f"review checks: {files} test files, {megabytes:.1f} MB diff, {len(findings)} findings")
    print(f"  baseline unidiff parse     {parse * 1000:8.1f} ms")
    print(
        f"  parse + checks (review)    {checks * 1000:8.1f} ms  ({checks / parse:.1f}x the parse)"
    )
    verdict = "ok" if per_mb < TARGET_SECONDS_PER_MB else "SLOW"
    print(
        f"  per MB of diff             {per_mb * 1000:8.1f} ms  "
        f"(target < {TARGET_SECONDS_PER_MB * 1000:.0f} ms: {verdict})"
    )
