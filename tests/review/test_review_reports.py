"""The outcome checks' pure parts: reading each runner's report, knowing a test command and
making it write one, which files are tests, and the `review:` settings that choose them."""

from __future__ import annotations

import json

import pytest

from app.config import Settings
from app.repo_config import RepoConfigError, parse_config, review_policy
from app.review import files
from app.review.reports import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    XFAILED,
    Results,
    UnreadableReport,
    parse_go_json,
    parse_jest_json,
    parse_junit,
    parse_libtest,
    parse_node_events,
)
from app.review.runners import EXIT_STATUS, GO, JEST, NODE, PYTEST, choose, from_verify, parse

# What pytest 8 writes with -o junit_family=xunit1 (shortened bodies), one of each outcome.
PYTEST_JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">
<testsuite name="pytest" errors="2" failures="2" skipped="2" tests="10">
<testcase classname="" name="test_broken" file="test_broken.py" time="0.000">
<error message="collection failure">ImportError</error></testcase>
<testcase classname="pkg.test_things" name="test_add" file="pkg/test_things.py" line="3">
<failure message="assert -1 == 5">...</failure></testcase>
<testcase classname="pkg.test_things" name="test_zero" file="pkg/test_things.py" line="6" />
<testcase classname="pkg.test_things" name="test_skipped" file="pkg/test_things.py" line="9">
<skipped type="pytest.skip" message="x">x</skipped></testcase>
<testcase classname="pkg.test_things" name="test_xf" file="pkg/test_things.py" line="12">
<skipped type="pytest.xfail" message="" /></testcase>
<testcase classname="pkg.test_things" name="test_err" file="pkg/test_things.py" line="21">
<error message="failed on setup with &quot;RuntimeError: boom&quot;">...</error></testcase>
<testcase classname="pkg.test_things" name="test_param[2-3-5]" file="pkg/test_things.py" />
<testcase classname="pkg.test_things.TestK" name="test_m" file="pkg/test_things.py" line="27" />
</testsuite></testsuites>"""


def test_pytest_junit_by_test_id() -> None:
    tests, broken = parse_junit(PYTEST_JUNIT)
    assert tests == {
        "test_broken.py": ERROR,
        "pkg/test_things.py::test_add": FAILED,
        "pkg/test_things.py::test_zero": PASSED,
        "pkg/test_things.py::test_skipped": SKIPPED,
        "pkg/test_things.py::test_xf": XFAILED,
        "pkg/test_things.py::test_err": ERROR,
        "pkg/test_things.py::test_param[2-3-5]": PASSED,
        "pkg/test_things.py::TestK::test_m": PASSED,
    }
    assert broken == {"test_broken.py"}


def test_a_report_with_entities_or_of_another_shape_is_unreadable() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites>&a;</testsuites>'
    with pytest.raises(UnreadableReport, match="DOCTYPE"):
        parse_junit(bomb)
    with pytest.raises(UnreadableReport, match="not valid XML"):
        parse_junit("<testsuites><testcase")
    with pytest.raises(UnreadableReport, match="not a JUnit test suite"):
        parse_junit("<html><body/></html>")


def test_a_test_reported_twice_keeps_its_worse_status() -> None:
    twice = (
        '<testsuites><testcase classname="a" name="t"/>'
        '<testcase classname="a" name="t"><failure/></testcase>'
        '<testcase classname="a" name="t"/></testsuites>'
    )
    assert parse_junit(twice)[0] == {"a::t": FAILED}


def test_go_test_json_with_a_package_that_did_not_build() -> None:
    events = [
        {"Action": "run", "Package": "example.com/calc", "Test": "TestAdd"},
        {"Action": "fail", "Package": "example.com/calc", "Test": "TestAdd"},
        {"Action": "pass", "Package": "example.com/calc", "Test": "TestMul"},
        {"Action": "skip", "Package": "example.com/calc", "Test": "TestMul/big"},
        {"Action": "fail", "Package": "example.com/calc"},
        {"Action": "fail", "Package": "example.com/broken"},
    ]
    raw = "# example.com/broken\n./x.go:3: undefined: Y\n" + "\n".join(map(json.dumps, events))
    tests, broken = parse_go_json(raw)
    assert tests == {
        "example.com/calc::TestAdd": FAILED,
        "example.com/calc::TestMul": PASSED,
        "example.com/calc::TestMul/big": SKIPPED,
    }
    assert broken == {"example.com/broken"}
    with pytest.raises(UnreadableReport):
        parse_go_json("FAIL\texample.com/calc [setup failed]\n")


def test_node_events_name_subtests_under_their_parents_and_their_file() -> None:
    root = "/workspace/calc"
    lines = [
        {"type": "test:fail", "file": f"{root}/broken.test.js", "name": f"{root}/broken.test.js"},
        {"type": "test:fail", "file": f"{root}/calc.test.js", "name": "adds", "nesting": 0},
        {"type": "test:pass", "file": f"{root}/calc.test.js", "name": "skips", "skip": True},
        {"type": "test:pass", "file": f"{root}/calc.test.js", "name": "inner", "nesting": 1},
        {"type": "test:pass", "file": f"{root}/calc.test.js", "name": "outer", "nesting": 0},
        {"type": "test:pass", "file": f"{root}/calc.test.js", "name": "works", "nesting": 1},
        {"type": "test:pass", "file": f"{root}/calc.test.js", "name": "group", "suite": True},
        {"type": "test:pass", "file": f"{root}/test/other.test.js", "name": "adds"},
    ]
    tests, broken = parse_node_events("\n".join(map(json.dumps, lines)), root=root)
    assert tests == {
        "broken.test.js": FAILED,
        "calc.test.js::adds": FAILED,
        "calc.test.js::skips": SKIPPED,
        "calc.test.js::outer > inner": PASSED,
        "calc.test.js::outer": PASSED,
        "calc.test.js::group > works": PASSED,
        "test/other.test.js::adds": PASSED,
    }
    assert broken == {"broken.test.js"}


def test_cargo_libtest_output_by_target() -> None:
    output = """\
   Compiling calc v0.1.0 (/workspace/calc)
     Running unittests src/lib.rs (target/debug/deps/calc-5f2c)

running 3 tests
test tests::adds ... FAILED
test tests::muls ... ok
test tests::slow ... ignored

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
     Running tests/it.rs (target/debug/deps/it-9a1b)

running 1 test
test adds_big ... ok
   Doc-tests calc

running 0 tests
"""
    tests, _ = parse_libtest(output)
    assert tests == {
        "unittests src/lib.rs::tests::adds": FAILED,
        "unittests src/lib.rs::tests::muls": PASSED,
        "unittests src/lib.rs::tests::slow": SKIPPED,
        "tests/it.rs::adds_big": PASSED,
    }
    with pytest.raises(UnreadableReport):
        parse_libtest("error: could not compile `calc`\n")


def test_jest_json() -> None:
    report = {
        "testResults": [
            {
                "name": "/workspace/calc/calc.test.js",
                "status": "failed",
                "assertionResults": [
                    {"fullName": "calc adds", "status": "failed"},
                    {"fullName": "calc muls", "status": "passed"},
                    {"fullName": "calc later", "status": "pending"},
                ],
            },
            {"name": "/workspace/calc/broken.test.js", "status": "failed", "assertionResults": []},
        ]
    }
    tests, broken = parse_jest_json(json.dumps(report), root="/workspace/calc")
    assert tests == {
        "calc.test.js::calc adds": FAILED,
        "calc.test.js::calc muls": PASSED,
        "calc.test.js::calc later": SKIPPED,
        "broken.test.js": ERROR,
    }
    assert broken == {"broken.test.js"}


def test_cached_results_round_trip_and_other_shapes_are_refused() -> None:
    results = Results(1, {"a::t": FAILED}, files_failed={"b.py"})
    assert Results.from_dict(json.loads(json.dumps(results.to_dict()))) == results
    assert Results.from_dict({"exit_code": "1", "tests": None}) is None
    assert Results.from_dict({"exit_code": 0, "tests": {"a": 1}}) is None


# -- test commands ----------------------------------------------------------------------------


def test_pytest_commands_get_a_report_and_can_run_only_some_files() -> None:
    runner = parse("PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -x -k 'not slow' tests")
    assert runner.kind == PYTEST and runner.paths == ("tests",)
    assert runner.invocation("/r/report") == (
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -k 'not slow' -p no:cacheprovider "
        "--continue-on-collection-errors --junitxml=/r/report -o junit_family=xunit1 tests"
    )  # -x is left out: a run that stops at its first failure says nothing of the rest
    only = runner.invocation("/r/report", only=["tests/test_new.py"])
    assert only.endswith("junit_family=xunit1 tests/test_new.py")
    assert parse("uv run pytest").kind == PYTEST and parse("py.test -q").kind == PYTEST


def test_go_node_and_npm_scripts() -> None:
    go = parse("go test -v -count=3 ./...")
    assert go.kind == GO
    assert go.invocation("/r/report", only=["pkg/a_test.go", "b_test.go"]) == (
        "GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=mod go test -json -count=1 -v . ./pkg "
        "> /r/report 2>&1"
    )
    node = parse("node --test --test-reporter=spec test/")
    assert node.kind == NODE and node.paths == ("test/",)
    assert node.invocation("/r/report", helper="/r/reporter.mjs") == (
        "node --test-reporter=/r/reporter.mjs --test-reporter-destination=/r/report --test test/"
    )
    jest = parse("npm test", {"test": "jest --ci --bail"})
    assert jest.kind == JEST and "package.json" in jest.reads
    assert "--bail" not in jest.invocation("/r/report") and "--json" in jest.invocation("/r/r")


def test_commands_honk_cannot_read_are_judged_by_exit_status() -> None:
    for command in ("pytest | tee log", "make test", "npm run lint", "./run-tests.sh", "echo $X"):
        assert parse(command, {"lint": "eslint ."}).kind == EXIT_STATUS
    assert parse("make test").reads == ("Makefile", "GNUmakefile")
    assert parse("./scripts/test.sh").reads == ("scripts/test.sh",)
    verify = "( python -m pytest -q ) && ( ruff check . )"
    assert [r.command for r in from_verify(verify)] == ["python -m pytest -q"]


def test_which_commands_run() -> None:
    paths = ["calc.py", "test_calc.py", "go.mod", "calc_test.go", "package.json", "a.test.js"]
    scripts = json.dumps({"scripts": {"test": "node --test"}})
    configured, source = choose(
        configured=["pytest tests/unit"], verify=None, paths=paths, package_json=None
    )
    assert [r.command for r in configured] == ["pytest tests/unit"]
    assert source == "`review: tests:`"
    from_verify_, source = choose(
        configured=[], verify="python -m pytest -q", paths=paths, package_json=None
    )
    assert [r.command for r in from_verify_] == ["python -m pytest -q"] and source == "`verify:`"
    defaults, source = choose(configured=[], verify="make", paths=paths, package_json=scripts)
    assert [(r.kind, r.command) for r in defaults] == [
        (PYTEST, "python -m pytest -q"),
        (GO, "go test ./..."),
        (NODE, "npm test"),
    ]
    assert source == "Honk's defaults for the repository's files"


def test_tests_and_their_infrastructure() -> None:
    material = files.Material(["fixtures/**"], ["Makefile"])
    tests = ("test_calc.py", "pkg/calc_test.py", "tests/helpers.py", "tests/data/x.json",
             "calc.test.js", "src/__tests__/a.js", "calc_test.go", "testdata/in.txt")  # fmt: skip
    for path in tests:
        assert material.covers(path) and material.is_test(path), path
    for path in ("conftest.py", "sub/conftest.py", "pytest.ini", "pyproject.toml", "setup.cfg",
                 "package.json", "jest.config.js", "Cargo.toml", "sitecustomize.py", "x.pth",
                 "Makefile", "fixtures/a.txt"):  # fmt: skip
        assert material.is_infrastructure(path) and not material.is_test(path), path
    for path in ("calc.py", "src/calc.js", "calc.go", "docs/x.md", "pkg/x.pth"):
        assert not material.covers(path), path


# -- `review:` settings ------------------------------------------------------------------------


def test_review_tests_in_honk_yml() -> None:
    one = parse_config("review:\n  tests: python -m pytest -q tests\n")
    assert one.review_test_commands == ("python -m pytest -q tests",)
    full = parse_config(
        "review:\n  tests:\n    commands: [pytest, go test ./...]\n    files: ['fixtures/**']\n"
    )
    assert full.review_test_commands == ("pytest", "go test ./...")
    assert full.review_test_files == ("fixtures/**",)
    with pytest.raises(RepoConfigError, match=r"unknown review.tests setting\(s\) comand"):
        parse_config("review:\n  tests:\n    comand: pytest\n")
    with pytest.raises(RepoConfigError, match=r"review\.tests\.files are globs inside"):
        parse_config("review:\n  tests:\n    files: ['../x']\n")


def test_only_the_operator_lets_a_repository_turn_the_outcome_checks_off() -> None:
    off = parse_config("review:\n  outcome: off\n")
    assert off.review_outcome is False
    kept = review_policy(Settings().review, off)
    assert kept.outcome is True and kept.outcome_kept is True
    allowed = review_policy(Settings().with_overrides(review_outcome_optional=True).review, off)
    assert allowed.outcome is False and allowed.outcome_kept is False
    assert review_policy(Settings().review, parse_config("")).outcome is True
    env = Settings.from_env({"HONK_REVIEW_OUTCOME_OPTIONAL": "on"}, env_file=None)
    assert env.review.outcome_optional is True
