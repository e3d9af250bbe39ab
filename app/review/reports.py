"""Test runners' structured reports, read into one shape: test id -> how it ended (pure).

Every report is written by code the change may control, so it is read as untrusted text:
bounded in size, XML without a DOCTYPE (no entities), and a report that cannot be read is
`None` (the caller falls back to exit statuses and says so), never an empty success.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

PASSED, FAILED, ERROR, SKIPPED, XFAILED = "passed", "failed", "error", "skipped", "xfailed"
STATUSES = (PASSED, FAILED, ERROR, SKIPPED, XFAILED)
MAX_REPORT_BYTES = 50 * 1024 * 1024
_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class UnreadableReport(ValueError):
    """The report is missing, too large or not in the runner's format."""


@dataclass
class Results:
    """One run of a test command: each test's status by id, or only its exit status.

    `tests` is None when no report could be read (`why` says why): then only `exit_code`
    speaks for the run. A test id names its file where the runner says it
    (`test_calc.py::test_add`, `calc.test.js::adds`, `example.com/calc::TestAdd`).
    """

    exit_code: int | None
    tests: dict[str, str] | None = None
    why: str = ""  # why there is no report, when there is none
    files_failed: set[str] = field(default_factory=set)  # files or packages that did not load

    @property
    def has_report(self) -> bool:
        return self.tests is not None

    def status(self, test: str) -> str | None:
        return None if self.tests is None else self.tests.get(test)

    def passed(self) -> set[str]:
        return {t for t, s in (self.tests or {}).items() if s == PASSED}

    def to_dict(self) -> dict[str, object]:
        return {
            "exit_code": self.exit_code,
            "tests": self.tests,
            "why": self.why,
            "files_failed": sorted(self.files_failed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Results | None:
        """A cached result; None for a value of another shape (it is run again)."""
        tests = data.get("tests")
        code = data.get("exit_code")
        if tests is not None and not (
            isinstance(tests, dict) and all(isinstance(v, str) for v in tests.values())
        ):
            return None
        if code is not None and not isinstance(code, int):
            return None
        failed = data.get("files_failed") or []
        return cls(
            code,
            {str(k): str(v) for k, v in tests.items()} if isinstance(tests, dict) else None,
            str(data.get("why") or ""),
            {str(f) for f in failed} if isinstance(failed, list) else set(),
        )


def test_name(test_id: str) -> str:
    """What people call the test: the id's last part (`test_add`, `TestAdd/neg`, `adds`)."""
    return test_id.rsplit("::", 1)[-1]


def test_file(test_id: str) -> str:
    """The file (or Go package) part of an id."""
    return test_id.split("::", 1)[0]


def merge(into: dict[str, str], test: str, status: str) -> None:
    """A test reported twice (a rerun, a duplicate name) counts as passed only if every
    report of it passed: the worse status wins."""
    order = {PASSED: 0, XFAILED: 1, SKIPPED: 2, FAILED: 3, ERROR: 4}
    if test not in into or order.get(status, 4) >= order.get(into[test], 4):
        into[test] = status


def _text(raw: bytes | str) -> str:
    if len(raw) > MAX_REPORT_BYTES:
        raise UnreadableReport(f"the report is larger than {MAX_REPORT_BYTES // 2**20} MB")
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


# -- JUnit XML: pytest (xunit1, with file names), vitest, mocha, jest-junit ---------------------


def parse_junit(raw: bytes | str, *, root: str = "") -> tuple[dict[str, str], set[str]]:
    """(tests by id, files that failed to load). `root` is stripped from absolute paths."""
    text = _text(raw)
    if _DTD.search(text):
        raise UnreadableReport("the JUnit report declares a DOCTYPE or entities")
    try:
        tree = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UnreadableReport(f"the JUnit report is not valid XML ({exc})") from None
    tests: dict[str, str] = {}
    broken: set[str] = set()
    for case in tree.iter("testcase"):
        status = _junit_status(case)
        test_id, collection = _junit_id(case, root)
        if collection:
            broken.add(test_id)
        merge(tests, test_id, status)
    if tree.tag not in ("testsuites", "testsuite"):
        raise UnreadableReport(f"the report's root is <{tree.tag}>, not a JUnit test suite")
    return tests, broken


def _junit_status(case: ET.Element) -> str:
    for child in case:
        if child.tag == "failure":
            return FAILED
        if child.tag == "error":
            return ERROR
        if child.tag == "skipped":
            return XFAILED if (child.get("type") or "") == "pytest.xfail" else SKIPPED
    return PASSED


def _junit_id(case: ET.Element, root: str) -> tuple[str, bool]:
    """The test's id and whether it stands for a whole file that could not be collected."""
    name = case.get("name") or ""
    classname = case.get("classname") or ""
    path = _relative(case.get("file") or "", root)
    error = case.find("error")
    if error is not None and (error.get("message") or "") == "collection failure":
        return path or classname or name, True
    if path and path.endswith(".py"):
        # pytest's xunit1: classname is the dotted module, then any classes.
        module = path[: -len(".py")].replace("/", ".")
        classes = classname[len(module) :].lstrip(".") if classname.startswith(module) else ""
        parts = [path, *filter(None, classes.split(".")), name]
        return "::".join(parts), False
    if path:
        return f"{path}::{name}", False
    return (f"{_relative(classname, root)}::{name}" if classname else name), False


def _relative(path: str, root: str) -> str:
    if root and path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1 :]
    return path


# -- go test -json -----------------------------------------------------------------------


def parse_go_json(raw: bytes | str) -> tuple[dict[str, str], set[str]]:
    """`go test -json` events: ids are `package::TestName` (subtests `TestName/sub`); a
    package that failed without any test ending (a build failure) is a package that failed
    to load."""
    tests: dict[str, str] = {}
    ended_in: set[str] = set()
    failed_packages: set[str] = set()
    seen = 0
    for line in _text(raw).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue  # build errors are printed as plain text between events
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        seen += 1
        action, package, test = event.get("Action"), event.get("Package"), event.get("Test")
        if not isinstance(package, str) or action not in ("pass", "fail", "skip"):
            continue
        if isinstance(test, str) and test:
            status = {"pass": PASSED, "fail": FAILED, "skip": SKIPPED}[action]
            merge(tests, f"{package}::{test}", status)
            ended_in.add(package)
        elif action == "fail":
            failed_packages.add(package)
    if not seen:
        raise UnreadableReport("`go test -json` printed no events")
    return tests, {p for p in failed_packages if p not in ended_in}


# -- node --test: the events of Honk's reporter (NODE_REPORTER) ----------------------------

# A reporter module for `node --test --test-reporter=<file>`: one JSON line per finished test
# or suite. Node 20's JUnit reporter names no file, so tests of the same name in two files
# would share an id; its own events carry the file.
NODE_REPORTER = """\
export default async function* honkReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data || {};
    const details = d.details || {};
    yield JSON.stringify({
      type: event.type, file: d.file || '', name: String(d.name), nesting: d.nesting || 0,
      skip: d.skip !== undefined && d.skip !== false,
      todo: d.todo !== undefined && d.todo !== false,
      suite: details.type === 'suite',
    }) + '\\n';
  }
}
"""


def parse_node_events(raw: bytes | str, *, root: str = "") -> tuple[dict[str, str], set[str]]:
    """NODE_REPORTER's lines: ids are `file::outer > inner` (suites and parent tests named).

    Node reports a test after its subtests, so each event's name is given to the subtests
    reported just before it at the next level of nesting.
    """
    tests: dict[str, str] = {}
    broken: set[str] = set()
    pending: dict[tuple[str, int], list[tuple[str, str, bool]]] = {}
    seen = 0
    for line in _text(raw).splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("type") not in ("test:pass", "test:fail"):
            continue
        seen += 1
        file = _relative(str(event.get("file") or ""), root)
        name = str(event.get("name") or "")
        nesting = int(event.get("nesting") or 0)
        if event["type"] == "test:fail":
            status = FAILED
        elif event.get("skip") or event.get("todo"):
            status = SKIPPED
        else:
            status = PASSED
        children = pending.pop((file, nesting + 1), [])
        named = [(f"{name} > {child}", s, suite) for child, s, suite in children]
        entry = (name, status, bool(event.get("suite")))
        if nesting == 0:
            if name == str(event.get("file") or "") or (file and name == file):
                broken.add(file)  # the file itself failed (it did not load, or exited)
                merge(tests, file, status)
                continue
            for child, child_status, suite in [*named, entry]:
                if not suite:
                    merge(tests, f"{file}::{child}", child_status)
        else:
            pending.setdefault((file, nesting), []).extend([*named, entry])
    if not seen:
        raise UnreadableReport("`node --test` reported no tests")
    return tests, broken


# -- cargo test: libtest's plain output ------------------------------------------------------

_CARGO_TARGET = re.compile(r"^\s*(Running|Doc-tests)\s+(.+?)(\s+\(.*\))?\s*$")
_CARGO_TEST = re.compile(r"^test (.+?) \.\.\. (ok|FAILED|ignored)\b")


def parse_libtest(raw: bytes | str) -> tuple[dict[str, str], set[str]]:
    """`cargo test` output: `test name ... ok|FAILED|ignored` per test, under the target
    announced by `Running <path> (...)`; ids are `target::name`."""
    text = _text(raw)
    tests: dict[str, str] = {}
    target = ""
    for line in text.splitlines():
        found = _CARGO_TARGET.match(line)
        if found:
            target = _cargo_target(found.group(1), found.group(2))
            continue
        test = _CARGO_TEST.match(line)
        if test:
            status = {"ok": PASSED, "FAILED": FAILED, "ignored": SKIPPED}[test.group(2)]
            merge(tests, f"{target}::{test.group(1)}" if target else test.group(1), status)
    if not tests and "test result:" not in text:
        raise UnreadableReport("`cargo test` printed no test results")
    return tests, set()


def _cargo_target(kind: str, target: str) -> str:
    # "unittests src/lib.rs", "tests/it.rs", "Doc-tests calc": the build's hash is left out.
    return f"doc {target}" if kind == "Doc-tests" else target


# -- jest --json ------------------------------------------------------------------------------


def parse_jest_json(raw: bytes | str, *, root: str = "") -> tuple[dict[str, str], set[str]]:
    """`jest --json`: testResults[].assertionResults[]; a suite that failed to run is a file
    that failed to load."""
    try:
        data = json.loads(_text(raw))
    except json.JSONDecodeError as exc:
        raise UnreadableReport(f"the jest report is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        raise UnreadableReport("the jest report has no testResults")
    tests: dict[str, str] = {}
    broken: set[str] = set()
    status_of = {"passed": PASSED, "failed": FAILED, "pending": SKIPPED, "todo": SKIPPED}
    for suite in data["testResults"]:
        if not isinstance(suite, dict):
            continue
        file = _relative(str(suite.get("name") or suite.get("testFilePath") or ""), root)
        assertions = suite.get("assertionResults") or []
        if not assertions and suite.get("status") == "failed":
            broken.add(file)
            merge(tests, file, ERROR)
        for case in assertions:
            if isinstance(case, dict):
                name = str(case.get("fullName") or case.get("title") or "")
                merge(tests, f"{file}::{name}", status_of.get(str(case.get("status")), SKIPPED))
    return tests, broken
