"""The review's deterministic checks over many small real diffs (git, through Checkout)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from app.runs import tests_in_diffs
from app.runs.build_files import CI, LOCK, TEST_CONFIG, VENDORED
from app.runs.diff_checks import (
    ASSERTIONS,
    MARKER,
    SECRET,
    TEST_DELETED,
    TEST_REMOVED,
    Change,
    Finding,
    check_change,
    check_diff,
    read_change,
)
from app.workspace.checkout import Checkout

Files = dict[str, str | bytes | None]  # None: the file is deleted
DiffOf = Callable[..., Awaitable[Change]]

PY_TESTS = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n    assert add(0, 0) == 0\n\n\n"
    "def test_neg():\n    assert add(-1, -1) == -2\n"
)


def _git(path: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=path, check=True, capture_output=True, text=True).stdout


def _write(root: Path, files: Files) -> None:
    for name, content in files.items():
        target = root / name
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


@pytest.fixture
def diff_of(tmp_path: Path) -> DiffOf:
    """The change as the review reads it (read_change: Checkout's unified diff and both sides
    of each changed Python file) from `before` to `after` in a real git repo."""

    made: list[Path] = []

    def prepare(repo: Path, before: Files, after: Files) -> str:
        repo.mkdir()
        _git(repo, "init", "-q")
        _write(repo, before)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", "start")
        start = _git(repo, "rev-parse", "HEAD").strip()
        _write(repo, after)  # left uncommitted, as the agent leaves it
        return start

    async def make(before: Files, after: Files) -> Change:
        made.append(tmp_path / f"repo{len(made)}")
        repo = made[-1]
        start = await asyncio.to_thread(prepare, repo, before, after)
        checkout = Checkout(repo, "o/r", "honk/1", "main", "file:///dev/null", start_sha=start)
        return await read_change(checkout)

    return make


async def findings(
    diff_of: DiffOf, before: Files, after: Files, **options: object
) -> list[Finding]:
    return check_change(await diff_of(before, after), **options)  # type: ignore[arg-type]


def kinds(found: list[Finding]) -> list[str]:
    return [f.kind for f in found]


def described(found: list[Finding]) -> list[str]:
    return [f.describe() for f in found]


async def test_a_real_fix_has_no_findings(diff_of: DiffOf) -> None:
    before = {"calc.py": "def add(a, b):\n    return a - b\n", "test_calc.py": PY_TESTS}
    after = {"calc.py": "def add(a, b):\n    return a + b\n"}
    assert await findings(diff_of, before, after) == []


async def test_a_new_test_and_more_assertions_are_fine(diff_of: DiffOf) -> None:
    after = {
        "test_calc.py": PY_TESTS + "\n\ndef test_zero():\n    assert add(0, 5) == 5\n",
        "tests/test_new.py": "def test_it():\n    assert 1 == 1\n",
    }
    assert await findings(diff_of, {"test_calc.py": PY_TESTS}, after) == []


@pytest.mark.parametrize(
    ("marker", "does"),
    [
        ('@pytest.mark.skip(reason="flaky")', "was skipped with `@pytest.mark.skip`"),
        (
            "@pytest.mark.skipif(True, reason='x')",
            "was skipped with `@pytest.mark.skipif` when `True`",
        ),
        ("@pytest.mark.xfail", "was marked as expected to fail with `@pytest.mark.xfail`"),
    ],
)
async def test_pytest_markers_name_the_test_and_line(
    diff_of: DiffOf, marker: str, does: str
) -> None:
    after = {"test_calc.py": PY_TESTS.replace("def test_add", f"{marker}\ndef test_add")}
    found = await findings(diff_of, {"test_calc.py": PY_TESTS}, after)
    assert described(found) == [f"`test_calc.py` line 4: `test_add` {does}"]


async def test_a_skip_inside_a_test_names_that_test(diff_of: DiffOf) -> None:
    after = {
        "test_calc.py": PY_TESTS.replace(
            "def test_neg():\n", "def test_neg():\n    pytest.skip('later')\n"
        )
    }
    found = await findings(diff_of, {"test_calc.py": PY_TESTS}, after)
    assert described(found) == [
        "`test_calc.py` line 10: `test_neg` was skipped with `pytest.skip()`"
    ]


async def test_unittest_skips(diff_of: DiffOf) -> None:
    before = {
        "tests/test_unit.py": "import unittest\n\n\nclass TestCalc(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(1 + 1, 2)\n\n"
        "    def test_sub(self):\n        self.assertEqual(1 - 1, 0)\n"
    }
    after = {
        "tests/test_unit.py": before["tests/test_unit.py"]
        .replace("    def test_add", "    @unittest.skip('broken')\n    def test_add")
        .replace(
            "        self.assertEqual(1 - 1, 0)",
            "        self.skipTest('later')\n        self.assertEqual(1 - 1, 0)",
        )
    }
    found = await findings(diff_of, before, after)
    assert [(f.kind, f.line) for f in found] == [(MARKER, 5), (MARKER, 10)]
    assert "`test_add` was skipped with `@unittest.skip`" in found[0].message
    assert "`test_sub` was skipped with `self.skipTest()`" in found[1].message


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("it('adds', () => {", "it.skip('adds', () => {", "`adds` was skipped with `it.skip`"),
        (
            "describe('calc', () => {",
            "describe.only('calc', () => {",
            "focused with `describe.only`",
        ),
        ("it('adds', () => {", "xit('adds', () => {", "`adds` was skipped with `xit()`"),
        ("it('adds', () => {", "fit('adds', () => {", "`adds` was focused with `fit()`"),
        ("it('adds', () => {", "it.todo('adds', () => {", "`adds` was turned into a to-do"),
        ("it('adds', () => {", "test.only('adds', () => {", "`adds` was focused with `test.only`"),
    ],
)
async def test_js_skip_and_focus_markers(
    diff_of: DiffOf, before: str, after: str, message: str
) -> None:
    body = (
        "describe('calc', () => {\n  it('adds', () => {\n    expect(add(2, 3)).toBe(5);\n"
        "  });\n});\n"
    )
    found = await findings(
        diff_of, {"src/calc.spec.ts": body}, {"src/calc.spec.ts": body.replace(before, after, 1)}
    )
    assert kinds(found) == [MARKER] and message in found[0].message
    if "only" in after or "fit" in after:
        assert "the other tests next to it no longer run" in found[0].message


async def test_js_markers_outside_test_files_are_left_alone(diff_of: DiffOf) -> None:
    # `.only` and `.skip` are ordinary names in application code.
    before = {"src/stream.js": "export const pick = (s) => s;\n"}
    after = {"src/stream.js": "export const pick = (s) => s.skip(2).only(1);\n"}
    assert await findings(diff_of, before, after) == []


@pytest.mark.parametrize(
    ("path", "before", "after", "message"),
    [
        (
            "calc_test.go",
            'func TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal("bad")\n\t}\n}\n',
            'func TestAdd(t *testing.T) {\n\tt.Skip("later")\n'
            '\tif Add(2, 3) != 5 {\n\t\tt.Fatal("bad")\n\t}\n}\n',
            "`TestAdd` was skipped with `t.Skip()`",
        ),
        (
            "src/test/java/CalcTest.java",
            "class CalcTest {\n  @Test\n  void adds() {\n    assertEquals(5, add(2, 3));\n  }\n}\n",
            "class CalcTest {\n  @Disabled\n  @Test\n  void adds() {\n"
            "    assertEquals(5, add(2, 3));\n  }\n}\n",
            "was disabled with `@Disabled`",
        ),
        (
            "CalcTest.kt",
            "class CalcTest {\n  @Test\n  fun adds() {\n    assertEquals(5, add(2, 3))\n  }\n}\n",
            "class CalcTest {\n  @Ignore\n  @Test\n  fun adds() {\n"
            "    assertEquals(5, add(2, 3))\n  }\n}\n",
            "was disabled with `@Ignore`",
        ),
        (
            "spec/calc_spec.rb",
            "describe Calc do\n  it 'adds' do\n    expect(add(2, 3)).to eq(5)\n  end\nend\n",
            "describe Calc do\n  xit 'adds' do\n    expect(add(2, 3)).to eq(5)\n  end\nend\n",
            "was skipped with `xit`",
        ),
        (
            "spec/calc_spec.rb",
            "describe Calc do\n  it 'adds' do\n    expect(add(2, 3)).to eq(5)\n  end\nend\n",
            "describe Calc do\n  it 'adds' do\n    pending\n"
            "    expect(add(2, 3)).to eq(5)\n  end\nend\n",
            "`adds` was skipped with `pending`",
        ),
        (
            "src/lib.rs",
            "#[test]\nfn test_add() {\n    assert_eq!(add(2, 3), 5);\n}\n",
            "#[test]\n#[ignore]\nfn test_add() {\n    assert_eq!(add(2, 3), 5);\n}\n",
            "`test_add` was disabled with `#[ignore`",
        ),
    ],
)
async def test_markers_in_other_languages(
    diff_of: DiffOf, path: str, before: str, after: str, message: str
) -> None:
    found = await findings(diff_of, {path: before}, {path: after})
    assert kinds(found) == [MARKER], described(found)
    assert message in found[0].message and found[0].path == path


async def test_a_deleted_test_file(diff_of: DiffOf) -> None:
    found = await findings(diff_of, {"tests/test_calc.py": PY_TESTS}, {"tests/test_calc.py": None})
    assert described(found) == ["`tests/test_calc.py`: the test file was deleted"]


async def test_a_test_file_renamed_where_no_runner_looks(diff_of: DiffOf) -> None:
    found = await findings(
        diff_of, {"test_calc.py": PY_TESTS}, {"test_calc.py": None, "calc_checks.py": PY_TESTS}
    )
    assert kinds(found) == [TEST_DELETED]
    assert "renamed to `calc_checks.py`, where no test runner looks" in found[0].message


async def test_a_test_file_moved_to_another_test_path_is_fine(diff_of: DiffOf) -> None:
    found = await findings(
        diff_of, {"test_calc.py": PY_TESTS}, {"test_calc.py": None, "tests/test_calc.py": PY_TESTS}
    )
    assert found == []


async def test_a_removed_test_function(diff_of: DiffOf) -> None:
    after = {"test_calc.py": PY_TESTS.split("\n\n\ndef test_neg")[0] + "\n"}
    found = await findings(diff_of, {"test_calc.py": PY_TESTS}, after)
    # The test's own assertion went with it: one finding, not two.
    assert described(found) == [
        "`test_calc.py` line 9 (before the change): the test `test_neg` was removed"
    ]


async def test_a_removed_js_test_case(diff_of: DiffOf) -> None:
    body = (
        "it('adds', () => {\n  expect(add(2, 3)).toBe(5);\n});\n\n"
        "it('adds zero', () => {\n  expect(add(0, 0)).toBe(0);\n});\n"
    )
    after = body.split("\n\nit('adds zero'")[0] + "\n"
    found = await findings(diff_of, {"calc.test.js": body}, {"calc.test.js": after})
    assert kinds(found) == [TEST_REMOVED] and "`adds zero` was removed" in found[0].message


async def test_tests_moved_or_renamed_are_not_removed(diff_of: DiffOf) -> None:
    neg = "def test_neg():\n    assert add(-1, -1) == -2\n"
    moved = {
        "test_calc.py": PY_TESTS.split("\n\n\ndef test_neg")[0] + "\n",
        "test_neg.py": "from calc import add\n\n\n" + neg,
    }
    assert await findings(diff_of, {"test_calc.py": PY_TESTS}, moved) == []
    renamed = {"test_calc.py": PY_TESTS.replace("def test_neg", "def test_negatives")}
    assert await findings(diff_of, {"test_calc.py": PY_TESTS}, renamed) == []


async def test_an_assertion_removed_from_a_test_that_stays(diff_of: DiffOf) -> None:
    after = {"test_calc.py": PY_TESTS.replace("    assert add(2, 3) == 5\n", "")}
    found = await findings(diff_of, {"test_calc.py": PY_TESTS}, after)
    assert described(found) == [
        "`test_calc.py` line 5 (before the change): 1 assertion removed from `test_add`, "
        "which stays"
    ]


async def test_assertions_reworded_at_the_same_count_are_fine(diff_of: DiffOf) -> None:
    after = {"test_calc.py": PY_TESTS.replace("== 5\n", "== 5, 'two and three'\n")}
    assert await findings(diff_of, {"test_calc.py": PY_TESTS}, after) == []


@pytest.mark.parametrize(
    ("path", "before", "after", "message"),
    [
        ("test_calc.py", "assert add(2, 3) == 5", "assert add(2, 3) is not None", "was weakened"),
        ("test_calc.py", "assert add(2, 3) == 5", "assert add(2, 3)", "was weakened"),
        ("test_calc.py", "assert add(2, 3) == 5", "assert True", "always passes"),
        (
            "calc.test.js",
            "expect(add(2, 3)).toBe(5);",
            "expect(add(2, 3)).toBeDefined();",
            "was weakened",
        ),
        ("calc.test.js", "expect(add(2, 3)).toBe(5);", "expect(true).toBe(true);", "always passes"),
    ],
)
async def test_weakened_assertions(
    diff_of: DiffOf, path: str, before: str, after: str, message: str
) -> None:
    if path.endswith(".py"):
        body = f"def test_add():\n    {before}\n"
        new = f"def test_add():\n    {after}\n"
    else:
        body = f"it('adds', () => {{\n  {before}\n}});\n"
        new = f"it('adds', () => {{\n  {after}\n}});\n"
    found = await findings(diff_of, {path: body}, {path: new})
    assert kinds(found) == [ASSERTIONS], described(found)
    assert message in found[0].message and found[0].line == 2


@pytest.mark.parametrize(
    ("path", "before", "after"),
    [
        ("pytest.ini", "[pytest]\naddopts = -q\n", "[pytest]\naddopts = -q -p no:randomly\n"),
        (
            "pyproject.toml",
            "[tool.pytest.ini_options]\naddopts = '-q'\n",
            "[tool.pytest.ini_options]\naddopts = '-q --deselect test_calc.py::test_add'\n",
        ),
        (
            "setup.cfg",
            "[tool:pytest]\ntestpaths = tests\n",
            "[tool:pytest]\ntestpaths = tests/unit\n",
        ),
        ("tox.ini", "[coverage:report]\nfail_under = 90\n", "[coverage:report]\nfail_under = 10\n"),
        (".coveragerc", "[report]\nshow_missing = true\n", "[report]\nshow_missing = false\n"),
        (
            "jest.config.js",
            "// jest\nmodule.exports = {};\n",
            "// jest\nmodule.exports = { bail: 1 };\n",
        ),
        ("Makefile", "test:\n\tpytest\n", "test:\n\tpytest --deselect tests/test_calc.py\n"),
    ],
)
async def test_test_configuration_changes(
    diff_of: DiffOf, path: str, before: str, after: str
) -> None:
    found = await findings(diff_of, {path: before}, {path: after})
    assert kinds(found) == [TEST_CONFIG], described(found)
    assert found[0].path == path and found[0].line == 2 and not found[0].before


async def test_other_changes_to_shared_configuration_are_fine(diff_of: DiffOf) -> None:
    before = {"pyproject.toml": '[project]\nname = "calc"\ndependencies = []\n'}
    after = {"pyproject.toml": '[project]\nname = "calc"\ndependencies = ["attrs"]\n'}
    assert await findings(diff_of, before, after) == []


async def test_conftest_hooks_but_not_fixtures(diff_of: DiffOf) -> None:
    before = {"conftest.py": "import pytest\n"}
    hook = "\n\ndef pytest_collection_modifyitems(items):\n    items[:] = items[:1]\n"
    found = await findings(diff_of, before, {"conftest.py": "import pytest\n" + hook})
    assert kinds(found) == [TEST_CONFIG]
    assert "`pytest_collection_modifyitems` was added to conftest.py" in found[0].message
    fixture = "\n\n@pytest.fixture\ndef calc():\n    return 1\n"
    assert await findings(diff_of, before, {"conftest.py": "import pytest\n" + fixture}) == []


WORKFLOW = "on: push\njobs:\n  t:\n    steps:\n      - run: pytest\n"


async def test_ci_lock_and_vendored_changes_the_request_did_not_ask_for(diff_of: DiffOf) -> None:
    before = {
        ".github/workflows/ci.yml": WORKFLOW,
        "poetry.lock": "[[package]]\nname = 'a'\n",
        "vendor/lib/x.py": "X = 1\n",
    }
    after = {
        ".github/workflows/ci.yml": WORKFLOW.replace("pytest", "pytest || true"),
        "poetry.lock": "[[package]]\nname = 'b'\n",
        "vendor/lib/x.py": "X = 2\n",
    }
    found = await findings(diff_of, before, after, request="Fix add()")
    assert {(f.path, f.kind) for f in found} == {
        (".github/workflows/ci.yml", CI),
        ("poetry.lock", LOCK),
        ("vendor/lib/x.py", VENDORED),
    }
    assert "`.github/workflows/ci.yml` line 5: a CI file was changed" in described(found)[0]


@pytest.mark.parametrize(
    "request_text",
    ["The CI workflow runs the wrong command", "Please change .github/workflows/ci.yml"],
)
async def test_ci_changes_the_request_asks_for(diff_of: DiffOf, request_text: str) -> None:
    after = {".github/workflows/ci.yml": WORKFLOW.replace("pytest", "pytest -q")}
    found = await findings(
        diff_of, {".github/workflows/ci.yml": WORKFLOW}, after, request=request_text
    )
    assert found == []


async def test_a_lock_file_the_repository_allows(diff_of: DiffOf) -> None:
    before, after = {"uv.lock": "version = 1\n"}, {"uv.lock": "version = 2\n"}
    assert kinds(await findings(diff_of, before, after, request="Fix add()")) == [LOCK]
    assert await findings(diff_of, before, after, request="Fix add()", allow=["*.lock"]) == []
    assert await findings(diff_of, before, after, request="Upgrade attrs to 24") == []


async def test_token_shaped_secrets_are_found_and_never_repeated(diff_of: DiffOf) -> None:
    secrets = [
        "ghp_" + "a1B2" * 9,
        "xoxb-1234-5678-abcdefABCDEF",
        "AKIA" + "ABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----",
    ]
    after = {"settings.py": "".join(f"KEY_{i} = '{s}'\n" for i, s in enumerate(secrets))}
    found = await findings(diff_of, {"settings.py": "DEBUG = False\n"}, after)
    assert [(f.kind, f.line) for f in found] == [(SECRET, 1), (SECRET, 2), (SECRET, 3), (SECRET, 4)]
    for finding, secret in zip(found, secrets, strict=True):
        assert "token-shaped secret" in finding.message
        assert secret not in finding.describe()


async def test_unusual_file_names_and_binary_files(diff_of: DiffOf) -> None:
    before = {"tests/test_tést ü.py": PY_TESTS, "logo.png": b"\x89PNG\x00\x01"}
    after = {
        "tests/test_tést ü.py": PY_TESTS.replace("def test_add", "@pytest.mark.skip\ndef test_add"),
        "logo.png": b"\x89PNG\x00\x02",
    }
    found = await findings(diff_of, before, after)
    assert [(f.path, f.kind) for f in found] == [("tests/test_tést ü.py", MARKER)]


def test_a_diff_that_cannot_be_read_is_an_error() -> None:
    with pytest.raises(ValueError, match="could not be read"):
        check_diff("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n")


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("test_calc.py", True),
        ("pkg/calc_test.py", True),
        ("tests/helpers.py", True),
        ("src/test/java/CalcTest.java", True),
        ("web/calc.spec.tsx", True),
        ("web/__tests__/calc.js", True),
        ("calc_test.go", True),
        ("spec/calc_spec.rb", True),
        ("calc.py", False),
        ("docs/testing.md", False),
        ("tests/fixtures/data.json", False),
        ("contest.py", False),
    ],
)
def test_what_counts_as_a_test_file(path: str, is_test: bool) -> None:
    assert tests_in_diffs.is_test_file(path) is is_test
