"""The review: its deterministic checks on a large diff; what its outcome checks add to a run.

The checks of the diff:
The diff is git's, of the Python standard library's own test files with every tenth line
changed and a test skipped in each file: thousands of hunks, megabytes of text. The baseline,
measured in the same run, is `unidiff.PatchSet` on the same text; the checks read every line
of every hunk once more with the per-language patterns, and parse each changed Python file on
both sides (`ast`, app/review/tamper/), which is where the skips are found.

The outcome checks (app/review/outcome.py), on the calc fixture (tests/calc_world.py) and on a
generated package of 500 tests, each with a change that fixes a bug and adds a test: the
agent's verification run in the sandbox, then the checks with no cached base results (the
base's tests run too) and with them cached, all in the same run. The goal: with the base
cached, the checks cost at most the verification again.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


# -- the outcome checks: what they add to a run ---------------------------------------------------

TARGET_CACHED_RATIO = 1.0  # with the base cached, the checks cost at most the verification again
GENERATED_FILES = 25
GENERATED_TESTS_PER_FILE = 20  # 500 tests in all


class _MemoryCache:
    """The base-results cache as the store's kv is to the pipeline, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    async def get(self, repo: str, base_sha: str, variant: str) -> dict[str, Any] | None:
        return self.values.get(f"{repo}@{base_sha}/{variant}")

    async def put(self, repo: str, base_sha: str, variant: str, results: dict[str, Any]) -> None:
        self.values[f"{repo}@{base_sha}/{variant}"] = results


def _git(*args: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def calc_world() -> tuple[dict[str, str], dict[str, str], str]:
    """tests/calc_world.py's repository; the change fixes add() and adds a test for it."""
    from tests.calc_world import FIXED, REPO_FILES, TESTS

    base = {k: v for k, v in REPO_FILES.items() if not k.startswith(".github/")}
    change = {
        "calc.py": FIXED,
        "test_calc.py": TESTS + "\n\ndef test_add_negative():\n    assert add(-1, -1) == -2\n",
    }
    return base, change, "python -m pytest -q"


def generated_world() -> tuple[dict[str, str], dict[str, str], str]:
    """A package of 25 modules with 20 tests each; one function is wrong on the base, and the
    change fixes it and adds a test."""
    files: dict[str, str] = {"pkg/__init__.py": ""}
    for module in range(GENERATED_FILES):
        functions = "".join(
            f"def f{n}(x):\n    return x * {n} + {module}\n\n\n"
            for n in range(GENERATED_TESTS_PER_FILE)
        )
        files[f"pkg/m{module}.py"] = functions
        tests = f"from pkg.m{module} import *  # noqa: F403\n\n\n" + "".join(
            f"def test_f{n}():\n    assert f{n}(3) == {3 * n + module}\n\n\n"
            for n in range(GENERATED_TESTS_PER_FILE)
        )
        files[f"tests/test_m{module}.py"] = tests
    fixed = files["pkg/m0.py"]
    files["pkg/m0.py"] = fixed.replace("return x * 1 + 0", "return x * 1 - 1")
    change = {
        "pkg/m0.py": fixed,
        "tests/test_m0.py": files["tests/test_m0.py"]
        + "def test_f1_zero():\n    assert f1(0) == 0\n",
    }
    return files, change, "python -m pytest -q"


async def _outcome_case(
    root: Path, name: str, world: tuple[dict[str, str], dict[str, str], str], rounds: int
) -> None:
    from app.review.outcome import OutcomeChecks
    from app.review.outcome_report import SuiteConfig
    from app.workspace.checkout import Checkout
    from app.workspace.sandbox import Sandbox

    base, change, command = world
    origin = root / name / "origin"
    for path, text in base.items():
        (origin / path).parent.mkdir(parents=True, exist_ok=True)
        (origin / path).write_text(text)
    _git("init", "-q", "-b", "main", cwd=origin)
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "base", cwd=origin)
    counter = iter(range(10_000))

    def checkout() -> Checkout:
        path = root / name / f"run-{next(counter)}" / "repo"
        path.parent.mkdir(parents=True)
        _git("clone", "-q", str(origin), str(path), cwd=root)
        _git("checkout", "-q", "-b", "honk/1", cwd=path)
        for file, text in change.items():
            (path / file).write_text(text)
        return Checkout(path, f"bench/{name}", "honk/1", "main", str(origin))

    def sandbox_for(tree: Path) -> Sandbox:
        return Sandbox(tree, timeout=600)

    suite = SuiteConfig(verify=command)
    times: dict[str, list[float]] = {"verify": [], "cold": [], "cached": []}
    findings = tests = 0
    for _ in range(rounds):
        work = checkout()
        start = time.perf_counter()
        verified = await sandbox_for(work.path).run(command, offline=True)
        times["verify"].append(time.perf_counter() - start)
        assert verified.exit_code == 0, verified.output[-2000:]
        cache = _MemoryCache()
        start = time.perf_counter()
        cold = await OutcomeChecks(sandbox_for, cache).check(work, repo=work.repo, tests=suite)
        times["cold"].append(time.perf_counter() - start)
        start = time.perf_counter()
        again = await OutcomeChecks(sandbox_for, cache).check(work, repo=work.repo, tests=suite)
        times["cached"].append(time.perf_counter() - start)
        assert cold.base_cached is False and again.base_cached is True
        findings += len(cold.findings) + len(again.findings)
        tests = sum(len(r.results.tests or {}) for r in cold.runs if r.check == "base")
    wall = {k: statistics.median(v) for k, v in times.items()}
    print(f"  {name}: `{command}`, {tests} tests on the base; {findings} findings (none expected)")
    for key, label in (
        ("verify", "the agent's verification"),
        ("cold", "outcome checks, cold"),
        ("cached", "outcome checks, base cached"),
    ):
        print(f"    {label:36} {wall[key]:7.2f} s  {wall[key] / wall['verify']:5.2f}x")
    ratio = wall["cached"] / wall["verify"]
    verdict = "ok" if ratio <= TARGET_CACHED_RATIO else "OVER"
    print(f"    goal: base cached <= {TARGET_CACHED_RATIO:.1f}x the verification: {verdict}")


async def outcome_main(quick: bool = False) -> None:
    rounds = 1 if quick else 3
    load = os.getloadavg()[0]
    print(
        f"review outcome checks: what they add to a run (median of {rounds} rounds; load "
        f"average {load:.1f} on {os.cpu_count()} cores: other work slows the parallel runs)"
    )
    with tempfile.TemporaryDirectory(prefix="honk-bench-outcome-") as tmp:
        await _outcome_case(Path(tmp), "calc", calc_world(), rounds)
        await _outcome_case(Path(tmp), "generated", generated_world(), rounds)
        # The same with pytest's plugin autoload off: a repository whose environment is lean,
        # not Honk's own (whose plugins cost seconds of start-up in every run).
        files, change, _command = generated_world()
        lean = (files, change, "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q")
        await _outcome_case(Path(tmp), "generated-lean", lean, rounds)
