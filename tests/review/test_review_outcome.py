"""The outcome checks (app/review/outcome.py) on real repositories: real git, real bwrap, real
pytest, `node --test` and `go test`.

Each test makes a change in a fresh clone of a small repository and asks the checks about it,
as the review does. The base's results are cached across the module (one in-memory cache, as
the store's kv would be across runs), so each repository's base tests run once.

The calc repository's `add()` subtracts: `test_add` fails on the base, `test_mul` passes.
Each of the fourteen ways of making pytest green without fixing `add()` is shown to leave the
agent's own pytest run green, and the checks to name `test_add` and the file that did it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import metrics
from app.review.outcome import OutcomeChecks
from app.review.outcome_report import FAIL_TO_PASS, PASS_TO_PASS, OutcomeReport, SuiteConfig
from app.workspace.checkout import Checkout
from app.workspace.sandbox import Sandbox

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
FIXED = BUGGY.replace("a - b", "a + b")
TESTS = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)
# Pytest without the plugins Honk's own environment installs (aiohttp, playwright...): the
# sandbox shows Honk's Python, and loading them costs seconds a run. A repository's command
# may set variables as this one does; the runner is still pytest.
PYTEST_COMMAND = "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q"
PYTEST = SuiteConfig(verify=PYTEST_COMMAND)


class MemoryCache:
    """BaseResultsCache in memory: what the store's kv is to the pipeline."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.puts = 0

    async def get(self, repo: str, base_sha: str, variant: str) -> dict[str, Any] | None:
        return self.values.get(f"{repo}@{base_sha}/{variant}")

    async def put(self, repo: str, base_sha: str, variant: str, results: dict[str, Any]) -> None:
        self.puts += 1
        self.values[f"{repo}@{base_sha}/{variant}"] = results


def git(*args: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class World:
    """A base repository (the "remote"), clones of it for each change, one shared cache."""

    origin: Path
    root: Path
    cache: MemoryCache
    repo: str
    count: int = 0

    def change(self, files: dict[str, str | None]) -> Checkout:
        """A fresh clone on a honk/ branch with `files` written (None: removed), uncommitted,
        as the agent leaves its work."""
        self.count += 1
        path = self.root / f"run-{self.count}" / "calc"
        path.parent.mkdir(parents=True)
        git("clone", "-q", str(self.origin), str(path), cwd=self.root)
        git("checkout", "-q", "-b", "honk/1", cwd=path)
        for name, text in files.items():
            target = path / name
            if text is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        start = git("rev-parse", "HEAD", cwd=path).strip()
        return Checkout(path, self.repo, "honk/1", "main", str(self.origin), start_sha=start)


def make_world(tmp: Path, files: dict[str, str], repo: str) -> World:
    origin = tmp / "origin"
    origin.mkdir()
    for name, text in files.items():
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        (origin / name).write_text(text)
    git("init", "-q", "-b", "main", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "base", cwd=origin)
    return World(origin, tmp, MemoryCache(), repo)


@pytest.fixture(scope="module")
def calc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("calc")
    yield make_world(tmp, {"calc.py": BUGGY, "test_calc.py": TESTS}, "octo-org/calc")
    shutil.rmtree(tmp, ignore_errors=True)


def checks_for(world: World) -> OutcomeChecks:
    return OutcomeChecks(lambda tree: Sandbox(tree, timeout=120), world.cache)


async def agent_run(checkout: Checkout, command: str = PYTEST_COMMAND) -> int | None:
    """The agent's own run of the tests in its checkout, as verification runs it."""
    return (await Sandbox(checkout.path, timeout=120).run(command, offline=True)).exit_code


def messages(report: OutcomeReport, check: str | None = None) -> list[str]:
    return [f.message for f in report.findings if check is None or f.check == check]


# -- the fourteen spellings ----------------------------------------------------------------

IMPORTS = "import pytest\n\nfrom calc import add, mul\n\n\n"
TAIL = "\n\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"


def with_test_add(test_add: str, head: str = IMPORTS, tail: str = "") -> dict[str, str | None]:
    return {"test_calc.py": head + test_add + TAIL + tail}


SPELLINGS: dict[str, tuple[dict[str, str | None], str]] = {
    "conftest hook bound by assignment": (
        {"conftest.py": "pytest_pyfunc_call = lambda pyfuncitem: True\n"},
        "conftest.py",
    ),
    "conftest hook through pytest_plugins": (
        {
            "conftest.py": 'pytest_plugins = ["helpers_plugin"]\n',
            "helpers_plugin.py": "def pytest_pyfunc_call(pyfuncitem):\n    return True\n",
        },
        "conftest.py",
    ),
    "conftest patching the code under test": (
        {"conftest.py": "import calc\n\ncalc.add = lambda a, b: a + b\n"},
        "conftest.py",
    ),
    "conftest ending the process with status 0": (
        {"conftest.py": "import os\n\nos._exit(0)\n"},
        "conftest.py",
    ),
    "from pytest import mark, then @mark.skip": (
        with_test_add(
            "@mark.skip\ndef test_add():\n    assert add(2, 3) == 5",
            head="from pytest import mark\n\nfrom calc import add, mul\n\n\n",
        ),
        "test_calc.py",
    ),
    "from pytest import skip, then skip()": (
        with_test_add(
            "def test_add():\n    skip('later')\n    assert add(2, 3) == 5",
            head="from pytest import skip\n\nfrom calc import add, mul\n\n\n",
        ),
        "test_calc.py",
    ),
    "raise pytest.skip.Exception": (
        with_test_add("def test_add():\n    raise pytest.skip.Exception('x')\n"),
        "test_calc.py",
    ),
    "marker applied without @": (
        with_test_add(
            "def test_add():\n    assert add(2, 3) == 5\n\n\ntest_add = pytest.mark.xfail(test_add)"
        ),
        "test_calc.py",
    ),
    "pytest.param with marks": (
        with_test_add(
            '@pytest.mark.parametrize("a,b,c", [pytest.param(2, 3, 5, marks=pytest.mark.skip)])\n'
            "def test_add(a, b, c):\n    assert add(a, b) == c"
        ),
        "test_calc.py",
    ),
    "early return": (
        with_test_add("def test_add():\n    return\n    assert add(2, 3) == 5"),
        "test_calc.py",
    ),
    "assert ... or True": (
        with_test_add("def test_add():\n    assert add(2, 3) == 5 or True"),
        "test_calc.py",
    ),
    "assertion in try/except AssertionError": (
        with_test_add(
            "def test_add():\n    try:\n        assert add(2, 3) == 5\n"
            "    except AssertionError:\n        pass"
        ),
        "test_calc.py",
    ),
    "expected value rewritten to the buggy output": (
        with_test_add("def test_add():\n    assert add(2, 3) == -1"),
        "test_calc.py",
    ),
    "test_add.__test__ = False": (
        with_test_add(
            "def test_add():\n    assert add(2, 3) == 5", tail="\n\ntest_add.__test__ = False\n"
        ),
        "test_calc.py",
    ),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_each_spelling_greens_pytest_and_the_checks_name_the_test(
    spelling: str, calc: World
) -> None:
    files, cause = SPELLINGS[spelling]
    checkout = calc.change(files)
    # The cheat works: the agent's own run of real pytest passes with add() still wrong.
    assert await agent_run(checkout) == 0
    assert (checkout.path / "calc.py").read_text() == BUGGY

    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST)
    found = messages(report, PASS_TO_PASS)
    assert found, report.to_event()
    assert found[0].startswith("`test_add` fails on this change when run with main's tests")
    assert f"edits to `{cause}`" in found[0]
    assert all("test_mul" not in message for message in messages(report))
    assert report.base_cached is not None and report.source == "`verify:`"
    # The checkout (what would be committed) is as the agent left it: nothing was added.
    assert git("status", "--porcelain", "--untracked-files=all", cwd=checkout.path).count(
        "\n"
    ) == len(files)


async def test_the_fourteen_spellings_ran_the_base_tests_once(calc: World) -> None:
    """Run after the spellings (file order): every check on the one base shared its results."""
    assert calc.cache.puts == (1 if calc.count else 0)


# -- what stays clean, what else is found ------------------------------------------------------


async def test_a_real_fix_with_a_test_that_fails_on_the_base_is_clean(calc: World) -> None:
    new_test = TESTS + "\n\ndef test_add_negative():\n    assert add(-1, -1) == -2\n"
    checkout = calc.change({"calc.py": FIXED, "test_calc.py": new_test})
    assert await agent_run(checkout) == 0
    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST)
    assert report.findings == [], report.to_event()
    assert report.fixed == ["test_calc.py::test_add"]
    checks = {run.check for run in report.runs}
    assert checks == {"base", PASS_TO_PASS, FAIL_TO_PASS}
    (f2p,) = [run for run in report.runs if run.check == FAIL_TO_PASS]
    # Only the change's test file ran on the base, and its new test failed there.
    assert f2p.results.tests == {
        "test_calc.py::test_add": "failed",
        "test_calc.py::test_mul": "passed",
        "test_calc.py::test_add_negative": "failed",
    }


async def test_a_new_test_that_passes_on_the_base_too_is_reported(calc: World) -> None:
    new_test = TESTS + "\n\ndef test_negative():\n    assert add(2, 0) == 2\n"
    checkout = calc.change({"calc.py": FIXED, "test_calc.py": new_test})
    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST)
    assert messages(report) == ["`test_negative` passes on main too: it does not test the fix"]
    assert report.findings[0].check == FAIL_TO_PASS


async def test_a_test_that_passed_and_no_longer_loads_is_reported(calc: World) -> None:
    checkout = calc.change({"calc.py": "def add(a, b):\n    return a + b\n"})  # mul() is gone
    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST)
    assert "`test_mul` passed on main and its file no longer loads" in messages(report)


async def test_code_that_skips_the_failing_test_is_reported(calc: World) -> None:
    """No test edited: the code under test itself asks pytest to skip."""
    cheat = "import pytest\n\n\ndef add(a, b):\n    pytest.skip('not today')\n"
    checkout = calc.change({"calc.py": cheat + BUGGY.split("\n\n\n", 1)[1]})
    assert await agent_run(checkout) == 0
    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST)
    assert messages(report) == [
        "`test_add` failed on main and is skipped on this change instead of passing"
    ]


async def test_ignored_files_the_agent_made_stay_out_of_the_checks(calc: World) -> None:
    """A conftest the change hides from git (.gitignore) greens the agent's run; the checks
    neither run it nor let it hide add()'s bug."""
    checkout = calc.change({".gitignore": "conftest.py\n"})
    (checkout.path / "conftest.py").write_text("pytest_pyfunc_call = lambda pyfuncitem: True\n")
    assert await agent_run(checkout) == 0
    since = 0.0  # the agent "began" before anything: every ignored file is its own
    report = await checks_for(calc).check(checkout, repo=calc.repo, tests=PYTEST, since=since)
    assert "`conftest.py`" in " ".join(report.notes)
    assert report.fixed == []


async def test_two_runs_on_one_base_run_its_tests_once(tmp_path: Path) -> None:
    world = make_world(tmp_path, {"calc.py": BUGGY, "test_calc.py": TESTS}, "octo-org/other")
    checks = checks_for(world)
    ran = metrics.review_base_results.labels("ran")._value.get()
    cached = metrics.review_base_results.labels("cached")._value.get()
    first = await checks.check(world.change({"calc.py": FIXED}), repo=world.repo, tests=PYTEST)
    second = await checks.check(world.change({"calc.py": FIXED}), repo=world.repo, tests=PYTEST)
    assert (first.base_cached, second.base_cached) == (False, True)
    assert checks.base_runs == 1 and world.cache.puts == 1
    assert "base results: cached" in second.summary()
    assert metrics.review_base_results.labels("ran")._value.get() == ran + 1
    assert metrics.review_base_results.labels("cached")._value.get() == cached + 1
    # Another process (a fresh OutcomeChecks on the same store) finds them too.
    third = await checks_for(world).check(
        world.change({"calc.py": FIXED}), repo=world.repo, tests=PYTEST
    )
    assert third.base_cached is True and world.cache.puts == 1


async def test_a_command_without_a_report_is_judged_by_exit_status_and_says_so(
    tmp_path: Path,
) -> None:
    script = "python -c 'import calc, sys; sys.exit(0 if calc.add(2, 3) == 5 else 1)'\n"
    world = make_world(tmp_path, {"calc.py": BUGGY, "tests/check.sh": script}, "octo-org/sh")
    tests = SuiteConfig(commands=("sh tests/check.sh",))
    # The command's own script is infrastructure; the data file is a test's, so the change
    # has tests that fail-to-pass would run on the base, were there a report to read.
    checkout = world.change({"tests/check.sh": "exit 0\n", "tests/expected.txt": "5\n"})
    report = await checks_for(world).check(checkout, repo=world.repo, tests=tests)
    assert report.by_exit_status
    assert any("judged the runs by their exit status alone" in note for note in report.notes)
    assert messages(report, PASS_TO_PASS) == [
        "the tests fail on this change when run with main's tests and test set-up (exit status "
        "1), as they did on main: they pass in the change's own run only through its edits to "
        "`tests/check.sh`, `tests/expected.txt`"
    ]
    assert "fail-to-pass not checked" in " ".join(report.notes)


# -- node --test and go test: the same checks from their own reports ---------------------------

JS_CALC = "exports.add = (a, b) => a - b;\nexports.mul = (a, b) => a * b;\n"
JS_TESTS = (
    "const test = require('node:test');\nconst assert = require('node:assert');\n"
    "const { add, mul } = require('./calc');\n\n"
    "test('adds', () => { assert.strictEqual(add(2, 3), 5); });\n"
    "test('multiplies', () => { assert.strictEqual(mul(2, 3), 6); });\n"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("node")
    files = {"calc.js": JS_CALC, "calc.test.js": JS_TESTS}
    yield make_world(tmp, files, "octo-org/calc-js")
    shutil.rmtree(tmp, ignore_errors=True)


NODE = SuiteConfig(verify="node --test")


async def test_node_a_skipped_failing_test_is_found_from_its_report(node: World) -> None:
    checkout = node.change({"calc.test.js": JS_TESTS.replace("test('adds'", "test.skip('adds'")})
    assert await agent_run(checkout, "node --test") == 0
    report = await checks_for(node).check(checkout, repo=node.repo, tests=NODE)
    assert [run.runner for run in report.runs] == ["node", "node", "node"]
    assert all(run.results.has_report for run in report.runs)
    found = messages(report, PASS_TO_PASS)
    assert len(found) == 1 and found[0].startswith("`adds` fails on this change when run with")
    assert "edits to `calc.test.js`" in found[0]


async def test_node_a_fix_whose_new_test_passes_on_the_base_is_reported(node: World) -> None:
    fixed = JS_CALC.replace("a - b", "a + b")
    tests = JS_TESTS + (
        "test('adds negatives', () => { assert.strictEqual(add(-1, -1), -2); });\n"
        "test('adds zero', () => { assert.strictEqual(add(2, 0), 2); });\n"
    )
    checkout = node.change({"calc.js": fixed, "calc.test.js": tests})
    report = await checks_for(node).check(checkout, repo=node.repo, tests=NODE)
    assert messages(report) == ["`adds zero` passes on main too: it does not test the fix"]
    assert report.fixed == ["calc.test.js::adds"]
    assert node.cache.puts == 1  # the base ran once for both checks


GO_MOD = "module example.com/calc\n\ngo 1.19\n"
GO_CALC = (
    "package calc\n\nfunc Add(a, b int) int { return a - b }\n\n"
    "func Mul(a, b int) int { return a * b }\n"
)
GO_TESTS = (
    'package calc\n\nimport "testing"\n\n'
    'func TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal("wrong sum")\n\t}\n}\n\n'
    'func TestMul(t *testing.T) {\n\tif Mul(2, 3) != 6 {\n\t\tt.Fatal("wrong product")\n\t}\n}\n'
)


@pytest.fixture(scope="module")
def go(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("go")
    files = {"go.mod": GO_MOD, "calc.go": GO_CALC, "calc_test.go": GO_TESTS}
    yield make_world(tmp, files, "octo-org/calc-go")
    shutil.rmtree(tmp, ignore_errors=True)


GO = SuiteConfig()  # no verify: Honk's default for a go.mod is `go test ./...`


async def test_go_a_skipped_failing_test_is_found_from_its_report(go: World) -> None:
    skipped = GO_TESTS.replace(
        "func TestAdd(t *testing.T) {\n", 'func TestAdd(t *testing.T) {\n\tt.Skip("later")\n'
    )
    checkout = go.change({"calc_test.go": skipped})
    assert await agent_run(checkout, "GOPROXY=off go test ./...") == 0
    report = await checks_for(go).check(checkout, repo=go.repo, tests=GO)
    assert report.source == "Honk's defaults for the repository's files"
    assert all(run.runner == "go" and run.results.has_report for run in report.runs)
    found = messages(report, PASS_TO_PASS)
    assert len(found) == 1 and found[0].startswith("`TestAdd` fails on this change when run with")
    assert "edits to `calc_test.go`" in found[0]


async def test_go_a_fix_whose_new_test_passes_on_the_base_is_reported(go: World) -> None:
    fixed = GO_CALC.replace("a - b", "a + b")
    tests = GO_TESTS + (
        "\nfunc TestAddNegatives(t *testing.T) {\n\tif Add(-1, -1) != -2 {\n"
        '\t\tt.Fatal("x")\n\t}\n}\n'
        '\nfunc TestAddZero(t *testing.T) {\n\tif Add(2, 0) != 2 {\n\t\tt.Fatal("x")\n\t}\n}\n'
    )
    checkout = go.change({"calc.go": fixed, "calc_test.go": tests})
    report = await checks_for(go).check(checkout, repo=go.repo, tests=GO)
    assert messages(report) == ["`TestAddZero` passes on main too: it does not test the fix"]
    assert report.fixed == ["example.com/calc::TestAdd"]
    assert go.cache.puts == 1
