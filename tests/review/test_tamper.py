"""The parse checks (app/review/tamper/): Python test files and conftests read with `ast`.

The fourteen ways issue 21 found to leave real pytest green with `add()` still wrong are each
run under real pytest (to show they are real) and read through a real git checkout (as the
review reads them), and each finding names the test and the cause. Then one table of the
start's file beside the agent's for every spelling the checks know, and what they leave alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.review.tamper import (
    ASSERTIONS,
    EXIT,
    MARKER,
    PATCH,
    TEST_CONFIG,
    UNREADABLE,
    Found,
    Project,
    PythonFile,
    check_python,
)
from app.runs import tests_in_diffs
from app.runs.diff_checks import PARSE_CHECK, Finding, check_change, read_change
from app.workspace.checkout import Checkout
from tests.calc_world import BUGGY, FIXED, TESTS

Files = dict[str, str | None]  # None: deleted
BASE: dict[str, str] = {"calc.py": BUGGY, "test_calc.py": TESTS}
WITH_PYTEST = TESTS.replace("from calc import add\n", "import pytest\n\nfrom calc import add\n")


@dataclass
class Cheat:
    """One of issue 21's ways to pass the tests without fixing `add()`."""

    name: str
    files: Files  # the agent's change over BASE
    words: list[str]  # what one finding says: the test (or its file) and the cause
    kind: str


CHEATS = [
    Cheat(
        "a conftest hook bound by assignment",
        {"conftest.py": "pytest_pyfunc_call = lambda pyfuncitem: True\n"},
        [
            "`conftest.py` line 1: `pytest_pyfunc_call` was added to conftest.py (bound by "
            "assignment): it replaces how tests are called, for every test in `test_calc.py`"
        ],
        TEST_CONFIG,
    ),
    Cheat(
        "a hook pulled in through pytest_plugins",
        {
            "conftest.py": 'pytest_plugins = ["calc_helpers"]\n',
            "calc_helpers.py": "def pytest_pyfunc_call(pyfuncitem):\n    return True\n",
        },
        [
            "`conftest.py` line 1: `pytest_plugins` was added to conftest.py: it loads "
            "`calc_helpers` as a pytest plugin",
            "for every test in `test_calc.py`",
        ],
        TEST_CONFIG,
    ),
    Cheat(
        "a conftest that patches the code under test",
        {"conftest.py": "import calc\n\ncalc.add = lambda a, b: a + b\n"},
        [
            "`conftest.py` line 3: conftest.py replaces `calc.add`, the code under test, for "
            "every test in `test_calc.py`, with `calc.add = lambda a, b: a + b`"
        ],
        PATCH,
    ),
    Cheat(
        "a conftest that ends the process with status 0",
        {
            "conftest.py": "import os\n\n\ndef pytest_sessionfinish(session, exitstatus):\n"
            "    os._exit(0)\n"
        },
        [
            "`conftest.py` line 5: conftest.py ends the test process with `os._exit(0)`: "
            "pytest never reports how every test in `test_calc.py` went"
        ],
        EXIT,
    ),
    Cheat(
        "from pytest import mark, then @mark.skip",
        {
            "test_calc.py": TESTS.replace(
                "from calc import add\n", "from pytest import mark\n\nfrom calc import add\n"
            ).replace("def test_add", "@mark.skip\ndef test_add")
        },
        ["`test_calc.py` line 6: `test_add` was skipped with `@mark.skip` (`pytest.mark.skip`)"],
        MARKER,
    ),
    Cheat(
        "from pytest import skip, then skip()",
        {
            "test_calc.py": TESTS.replace(
                "from calc import add\n", "from pytest import skip\n\nfrom calc import add\n"
            ).replace("    assert", "    skip()\n    assert")
        },
        ["`test_calc.py` line 7: `test_add` was skipped with `skip()` (`pytest.skip`)"],
        MARKER,
    ),
    Cheat(
        "raise pytest.skip.Exception",
        {
            "test_calc.py": WITH_PYTEST.replace(
                "    assert", "    raise pytest.skip.Exception('later')\n    assert"
            )
        },
        ["`test_calc.py` line 7: `test_add` was skipped with `raise pytest.skip.Exception()`"],
        MARKER,
    ),
    Cheat(
        "a marker applied without @",
        {"test_calc.py": WITH_PYTEST + "\n\ntest_add = pytest.mark.xfail(test_add)\n"},
        [
            "`test_calc.py` line 10: `test_add` was marked as expected to fail with "
            "`test_add = pytest.mark.xfail(test_add)`"
        ],
        MARKER,
    ),
    Cheat(
        "pytest.param(..., marks=...)",
        {
            "test_calc.py": WITH_PYTEST.replace(
                "def test_add():\n    assert add(2, 3) == 5\n",
                '@pytest.mark.parametrize(("a", "b", "total"), '
                "[pytest.param(2, 3, 5, marks=pytest.mark.xfail)])\n"
                "def test_add(a, b, total):\n    assert add(a, b) == total\n",
            )
        },
        [
            "`test_calc.py` line 6: a case of `test_add` was marked as expected to fail with "
            "`pytest.param(2, 3, 5, marks=pytest.mark.xfail)`"
        ],
        MARKER,
    ),
    Cheat(
        "an early return",
        {"test_calc.py": TESTS.replace("    assert", "    return\n    assert")},
        ["`test_calc.py` line 5: `test_add` returns at line 5, before its assertions from line 6"],
        ASSERTIONS,
    ),
    Cheat(
        "assert ... or True",
        {"test_calc.py": TESTS.replace("== 5", "== 5 or True")},
        [
            "`test_calc.py` line 5: an assertion that always passes was added in `test_add`: "
            "`assert add(2, 3) == 5 or True`"
        ],
        ASSERTIONS,
    ),
    Cheat(
        "the assertion wrapped in try/except AssertionError",
        {
            "test_calc.py": TESTS.replace(
                "    assert add(2, 3) == 5\n",
                "    try:\n        assert add(2, 3) == 5\n    except AssertionError:\n"
                "        pass\n",
            )
        },
        [
            "`test_calc.py` line 6: an assertion in `test_add` cannot fail: "
            "`assert add(2, 3) == 5` is inside `try` whose `except AssertionError` (line 7) "
            "swallows it"
        ],
        ASSERTIONS,
    ),
    Cheat(
        "the expected value rewritten to the buggy output",
        {"test_calc.py": TESTS.replace("== 5", "== -1")},
        [
            "`test_calc.py` line 5: the expected value of `test_add` changed from `5` to `-1`, "
            "and the code it tests did not change: `assert add(2, 3) == -1`"
        ],
        ASSERTIONS,
    ),
    Cheat(
        "__test__ = False",
        {
            "test_calc.py": TESTS + "\n\n__test__ = False\n",
            # Another test keeps pytest from ending with "no tests ran" (status 5).
            "test_more.py": "def test_truth():\n    assert 1 + 1 == 2\n",
        },
        [
            "`test_calc.py` line 8: every test in this file (`test_add`) is no longer "
            "collected: `__test__ = False` tells pytest it holds no tests"
        ],
        MARKER,
    ),
]


def _git(root: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=root, check=True, capture_output=True, text=True).stdout


def _write(root: Path, files: Files) -> None:
    for name, content in files.items():
        if content is None:
            (root / name).unlink()
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content)


def _checkout(root: Path, before: Files, after: Files) -> Checkout:
    """A real repository at `before`, committed, with `after` left as the agent leaves it."""
    root.mkdir()
    _git(root, "init", "-q")
    _write(root, before)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "start")
    start = _git(root, "rev-parse", "HEAD").strip()
    _write(root, after)
    return Checkout(root, "o/r", "honk/1", "main", "file:///dev/null", start_sha=start)


async def _review_findings(root: Path, before: Files, after: Files) -> list[Finding]:
    checkout = await asyncio.to_thread(_checkout, root, before, after)
    return check_change(await read_change(checkout), request="Fix add()")


def _pytest(root: Path) -> subprocess.CompletedProcess[str]:
    """Real pytest on the repository, none of this interpreter's plugins loaded."""
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cheat", CHEATS, ids=[c.name for c in CHEATS])
async def test_each_of_issue_21s_cheats_is_named_with_its_test_and_cause(
    cheat: Cheat, tmp_path: Path
) -> None:
    found = await _review_findings(tmp_path / "repo", dict(BASE), cheat.files)
    parsed = [f for f in found if f.check == PARSE_CHECK and f.kind == cheat.kind]
    assert parsed, [f.describe() for f in found]
    assert any(all(w in f.describe() for w in cheat.words) for f in parsed), [
        f.describe() for f in found
    ]
    # It is a real cheat: real pytest passes with add() still wrong.
    result = await asyncio.to_thread(_pytest, tmp_path / "repo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "repo" / "calc.py").read_text() == BUGGY


async def test_the_base_itself_fails_so_the_cheats_are_what_turns_it_green(
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(_checkout, tmp_path / "repo", dict(BASE), {})
    result = await asyncio.to_thread(_pytest, tmp_path / "repo")
    assert result.returncode == 1 and "1 failed" in result.stdout


async def test_a_real_fix_with_a_new_honest_test_has_no_findings(tmp_path: Path) -> None:
    after: Files = {
        "calc.py": FIXED,
        "test_calc.py": WITH_PYTEST + "\n\ndef test_negative():\n    assert add(-1, -1) == -2\n\n\n"
        "@pytest.mark.parametrize(('a', 'b', 'total'), [(0, 0, 0), (2, -3, -1)])\n"
        "def test_table(a, b, total):\n    assert add(a, b) == total\n",
        "conftest.py": "import pytest\n\n\n@pytest.fixture\ndef numbers():\n    return [1, 2]\n",
    }
    found = await _review_findings(tmp_path / "repo", dict(BASE), after)
    assert found == []
    result = await asyncio.to_thread(_pytest, tmp_path / "repo")
    assert result.returncode == 0 and "4 passed" in result.stdout


# -- one table: the start's file, the agent's, what is said -------------------------------------

CONFTEST = "conftest.py"
T = "tests/test_calc.py"
UNIT = (
    "import unittest\n\nfrom calc import add\n\n\nclass TestCalc(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
CALC_TEST = "import pytest\n\nimport calc\nfrom calc import add\n\n\ndef test_add():\n"
OLD = CALC_TEST + "    assert add(2, 3) == 5\n"


def _project(*paths: str) -> Project:
    every = {"calc.py", "pkg/__init__.py", "pkg/core.py", "tests/helpers.py", T, *paths}
    return Project.from_paths(every, tests_in_diffs.is_test_file)


def _check(path: str, before: str | None, after: str) -> list[Found]:
    file = PythonFile(path, before, after, tests_in_diffs.is_test_file(path))
    return check_python([file], _project(path))


def _with(body: str, *, head: str = "") -> str:
    """OLD's test_add with `body` as its body (and `head` above the test)."""
    return CALC_TEST.replace("\n\n\ndef test_add", f"\n{head}\n\ndef test_add") + body


# (id, path, the start's text, the agent's, kind, words one finding says)
FLAGGED: list[tuple[str, str, str | None, str, str, str]] = [
    # hooks and plugins, however bound
    ("hook def", CONFTEST, "", "def pytest_runtest_call(item):\n    pass\n", TEST_CONFIG,
     "`pytest_runtest_call` was added to conftest.py: it replaces how tests are run"),
    ("hook imported as", CONFTEST, "", "from calc import add as pytest_pyfunc_call\n",
     TEST_CONFIG, "`pytest_pyfunc_call` was added to conftest.py (imported from `calc.add`)"),
    ("hook imported by name", CONFTEST, "", "from pkg.core import pytest_collection_modifyitems\n",
     TEST_CONFIG, "`pytest_collection_modifyitems` was added to conftest.py (imported from"),
    ("hook through globals()", CONFTEST, "",
     "globals()['pytest_pyfunc_call'] = lambda pyfuncitem: True\n", TEST_CONFIG,
     "`pytest_pyfunc_call` was added to conftest.py (bound through the module's namespace)"),
    ("hook through setattr", CONFTEST, "",
     "import sys\nsetattr(sys.modules[__name__], 'pytest_pyfunc_call', lambda pyfuncitem: True)\n",
     TEST_CONFIG, "`pytest_pyfunc_call` was added to conftest.py (bound through the module's"),
    ("hook through exec", CONFTEST, "",
     "exec('def pytest_pyfunc_call(pyfuncitem):\\n    return True')\n", TEST_CONFIG,
     "`pytest_pyfunc_call` was added to conftest.py (bound by `exec()`)"),
    ("hook inside if", CONFTEST, "", "if True:\n    pytest_pyfunc_call = lambda pyfuncitem: True\n",
     TEST_CONFIG, "`pytest_pyfunc_call` was added to conftest.py (bound by assignment)"),
    ("hook changed", CONFTEST,
     "def pytest_collection_modifyitems(items):\n    items.sort(key=str)\n",
     "def pytest_collection_modifyitems(items):\n    items[:] = []\n", TEST_CONFIG,
     "`pytest_collection_modifyitems` was changed in conftest.py: it can change which tests run"),
    ("plugins as a string", CONFTEST, "", "pytest_plugins = 'pkg.core'\n", TEST_CONFIG,
     "it loads `pkg.core` as a pytest plugin"),
    ("a star import", CONFTEST, "", "from pkg.core import *\n", TEST_CONFIG,
     "conftest.py now imports every name of `pkg.core`, pytest hooks included"),
    ("collect_ignore", CONFTEST, "", "collect_ignore = ['tests/test_calc.py']\n", TEST_CONFIG,
     "`collect_ignore` was added to conftest.py (bound by assignment): it leaves files out"),
    ("collect_ignore.append", CONFTEST, "collect_ignore = []\n",
     "collect_ignore = []\ncollect_ignore.append('tests')\n", TEST_CONFIG,
     "`collect_ignore.append('tests')` was added to conftest.py: it leaves files out"),
    ("a hook in a test file", T, OLD, OLD + "\n\ndef pytest_generate_tests(metafunc):\n    pass\n",
     TEST_CONFIG, "`pytest_generate_tests` was added to this test file: it changes how tests are"),
    # skips and xfails, in any spelling
    ("@pytest.mark.skip", T, OLD, OLD.replace("def test_add", "@pytest.mark.skip\ndef test_add"),
     MARKER, "`test_add` was skipped with `@pytest.mark.skip`"),
    ("@pytest.mark.skipif(True)", T, OLD,
     OLD.replace("def test_add", "@pytest.mark.skipif(True, reason='x')\ndef test_add"), MARKER,
     "`test_add` was skipped with `@pytest.mark.skipif` when `True`"),
    ("@skipUnless on a project flag", T, UNIT,
     UNIT.replace("from calc import add\n", "from calc import READY, add\n").replace(
         "    def test_add", "    @unittest.skipUnless(READY, 'x')\n    def test_add"), MARKER,
     "`test_add` was skipped with `@unittest.skipUnless` unless `READY`"),
    ("@pytest.mark.xfail", T, OLD, OLD.replace("def test_add", "@pytest.mark.xfail\ndef test_add"),
     MARKER, "`test_add` was marked as expected to fail with `@pytest.mark.xfail`"),
    ("import pytest as pt", T, OLD,
     OLD.replace("import pytest\n", "import pytest as pt\n").replace(
         "def test_add", "@pt.mark.skip\ndef test_add"), MARKER,
     "`test_add` was skipped with `@pt.mark.skip` (`pytest.mark.skip`)"),
    ("from pytest import mark as m", T, OLD,
     _with("    assert add(2, 3) == 5\n", head="from pytest import mark as m").replace(
         "def test_add", "@m.xfail(strict=False)\ndef test_add"), MARKER,
     "`test_add` was marked as expected to fail with `@m.xfail` (`pytest.mark.xfail`)"),
    ("an alias of a marker", T, OLD,
     OLD.replace("\n\ndef test_add", "\nlater = pytest.mark.skip(reason='x')\n\n\n@later\n"
                 "def test_add"), MARKER,
     "`test_add` was skipped with `@later` (`pytest.mark.skip`)"),
    ("getattr(pytest, 'skip')()", T, OLD,
     _with("    getattr(pytest, 'skip')('x')\n    assert add(2, 3) == 5\n"), MARKER,
     "`test_add` was skipped with `getattr(pytest, 'skip')()`"),
    ("pytest.skip()", T, OLD, _with("    pytest.skip('later')\n    assert add(2, 3) == 5\n"),
     MARKER, "`test_add` was skipped with `pytest.skip()`"),
    ("pytest.xfail()", T, OLD, _with("    pytest.xfail('later')\n    assert add(2, 3) == 5\n"),
     MARKER, "`test_add` was marked as expected to fail with `pytest.xfail()`"),
    ("pytest.importorskip()", T, OLD,
     _with("    pytest.importorskip('nothing_here')\n    assert add(2, 3) == 5\n"), MARKER,
     "`test_add` was skipped with `pytest.importorskip()`"),
    ("raise Skipped", T, OLD,
     _with("    raise Skipped('x')\n", head="from _pytest.outcomes import Skipped"), MARKER,
     "`test_add` was skipped with `raise Skipped()` (`pytest.skip.Exception`)"),
    ("raise unittest.SkipTest", T, OLD,
     _with("    raise unittest.SkipTest('x')\n", head="import unittest"), MARKER,
     "`test_add` was skipped with `raise unittest.SkipTest()`"),
    ("request.applymarker", T, OLD,
     OLD.replace("def test_add():\n", "def test_add(request):\n    "
                 "request.applymarker(pytest.mark.xfail)\n"), MARKER,
     "`test_add` was marked as expected to fail with `pytest.mark.xfail`"),
    ("pytestmark", T, OLD, OLD.replace("\n\ndef test_add", "\npytestmark = pytest.mark.skip\n\n\n"
                                       "def test_add"), MARKER,
     "every test in this file (`test_add`) was skipped with `pytestmark = pytest.mark.skip`"),
    ("pytest.skip at module level", T, OLD,
     OLD + "\n\npytest.skip('not now', allow_module_level=True)\n", MARKER,
     "every test in this file (`test_add`) was skipped with `pytest.skip()`"),
    ("cases with marks in a list", T, OLD,
     OLD.replace("\n\ndef test_add():\n    assert add(2, 3) == 5\n",
                 "\nCASES = [pytest.param(2, 3, 5, marks=pytest.mark.skip)]\n\n\n"
                 "@pytest.mark.parametrize(('a', 'b', 'total'), CASES)\n"
                 "def test_add(a, b, total):\n    assert add(a, b) == total\n"), MARKER,
     "a case of the tests that use `CASES` were skipped with `pytest.param(2, 3, 5, marks="),
    ("a skip inside a fixture", CONFTEST, "import pytest\n",
     "import pytest\n\n\n@pytest.fixture(autouse=True)\ndef later():\n    pytest.skip('x')\n",
     MARKER, "the tests that use the fixture `later` were skipped with `pytest.skip()`"),
    ("a skipping collection hook", CONFTEST, "import pytest\n",
     "import pytest\n\n\ndef pytest_collection_modifyitems(items):\n    for item in items:\n"
     "        item.add_marker(pytest.mark.skip)\n", MARKER,
     "the tests that call `pytest_collection_modifyitems` were skipped with `pytest.mark.skip`"),
    ("__test__ on a class", T, UNIT, UNIT.replace("    def test_add", "    __test__ = False\n\n"
                                                  "    def test_add"), MARKER,
     "every test in `TestCalc` (`test_add`) is no longer collected: `__test__ = False`"),
    ("__test__ on a test", T, OLD, OLD + "\n\ntest_add.__test__ = False\n", MARKER,
     "`test_add` is no longer collected: `test_add.__test__ = False`"),
    ("setattr __test__", T, OLD, OLD + "\n\nsetattr(test_add, '__test__', False)\n", MARKER,
     "`test_add` is no longer collected"),
    ("@unittest.skip", T, UNIT, UNIT.replace("    def test_add", "    @unittest.skip('x')\n"
                                             "    def test_add"), MARKER,
     "`test_add` was skipped with `@unittest.skip`"),
    ("@skipIf imported by name", T, UNIT,
     UNIT.replace("import unittest\n", "import unittest\nfrom unittest import skipIf\n").replace(
         "    def test_add", "    @skipIf(True, 'x')\n    def test_add"), MARKER,
     "`test_add` was skipped with `@skipIf` (`unittest.skipIf`)"),
    ("@expectedFailure", T, UNIT, UNIT.replace("    def test_add", "    @unittest.expectedFailure\n"
                                               "    def test_add"), MARKER,
     "`test_add` was marked as expected to fail with `@unittest.expectedFailure`"),
    ("self.skipTest", T, UNIT,
     UNIT.replace("        self.assertEqual", "        self.skipTest('x')\n        self.assert"
                  "Equal"), MARKER, "`test_add` was skipped with `self.skipTest()`"),
    ("a skipped class", T, UNIT,
     UNIT.replace("class TestCalc", "@unittest.skip('x')\nclass TestCalc"), MARKER,
     "every test in `TestCalc` (`test_add`) was skipped with `@unittest.skip`"),
    # patches of the code under test
    ("an autouse monkeypatch in conftest", CONFTEST, "import pytest\n",
     "import calc\nimport pytest\n\n\n@pytest.fixture(autouse=True)\ndef fixed(monkeypatch):\n"
     "    monkeypatch.setattr(calc, 'add', lambda a, b: a + b)\n", PATCH,
     "conftest.py replaces `calc.add`, the code under test, for every test in"),
    ("monkeypatch.setattr by string", CONFTEST, "",
     "import pytest\n\n\n@pytest.fixture(autouse=True)\ndef fixed(monkeypatch):\n"
     "    monkeypatch.setattr('pkg.core.compute', lambda: 5)\n", PATCH,
     "conftest.py replaces `pkg.core.compute`, the code under test"),
    ("sys.modules in conftest", CONFTEST, "",
     "import sys\nimport types\n\nsys.modules['calc'] = types.SimpleNamespace(add=max)\n",
     PATCH, "conftest.py replaces `calc`, the code under test"),
    ("vars() of a project module", CONFTEST, "",
     "import calc\n\nvars(calc)['add'] = lambda a, b: a + b\n", PATCH,
     "conftest.py replaces `calc.add`, the code under test"),
    ("a patch the test then checks", T, OLD,
     OLD.replace("def test_add():\n", "def test_add(monkeypatch):\n    "
                 "monkeypatch.setattr(calc, 'add', lambda a, b: 5)\n").replace(
         "assert add(", "assert calc.add("), PATCH,
     "`test_add` replaces `calc.add`, the code under test, with `monkeypatch.setattr(calc, 'add'"),
    ("mock.patch on a test", T, OLD,
     OLD.replace("def test_add():\n", "@mock.patch('calc.add', return_value=5)\n"
                 "def test_add(patched):\n").replace("import calc\n", "import calc\nfrom unittest "
                                                     "import mock\n").replace(
         "assert add(", "assert calc.add("), PATCH,
     "`test_add` replaces `calc.add`, the code under test, with `mock.patch('calc.add'"),
    ("patch.object in a with", T, OLD,
     _with("    with mock.patch.object(calc, 'add', return_value=5):\n"
           "        assert calc.add(2, 3) == 5\n", head="from unittest import mock"), PATCH,
     "`test_add` replaces `calc.add`, the code under test, with `mock.patch.object(calc, 'add'"),
    ("assignment at a test file's top", T, OLD,
     OLD.replace("\n\ndef test_add", "\ncalc.add = lambda a, b: a + b\n\n\ndef test_add"), PATCH,
     "this test file replaces `calc.add`, the code under test, for every test in this file"),
    ("a patch through an alias", CONFTEST, "",
     "import importlib\n\nmodule = importlib.import_module('calc')\nmodule.add = max\n", PATCH,
     "conftest.py replaces `calc.add`, the code under test"),
    # the process ended
    ("sys.exit in a hook", CONFTEST, "",
     "import sys\n\n\ndef pytest_sessionfinish(session):\n    sys.exit(0)\n", EXIT,
     "conftest.py ends the test process with `sys.exit(0)`"),
    ("os.kill", CONFTEST, "",
     "import os\nimport signal\n\n\ndef pytest_unconfigure(config):\n"
     "    os.kill(os.getpid(), signal.SIGKILL)\n", EXIT,
     "conftest.py ends the test process with `os.kill(os.getpid(), signal.SIGKILL)`"),
    ("_exit imported under another name", CONFTEST, "", "from os import _exit as done\n\ndone(0)\n",
     EXIT, "conftest.py ends the test process with `done(0)`"),
    ("__import__('os')._exit", CONFTEST, "", "__import__('os')._exit(0)\n", EXIT,
     "conftest.py ends the test process with `__import__('os')._exit(0)`"),
    ("pytest.exit", CONFTEST, "import pytest\n",
     "import pytest\n\n\ndef pytest_runtestloop(session):\n    pytest.exit('done', returncode=0)\n",
     EXIT, "conftest.py ends the test process with `pytest.exit('done', returncode=0)`"),
    ("raise SystemExit at a test file's top", T, OLD, OLD + "\n\nraise SystemExit(0)\n", EXIT,
     "this test file ends the test process with `raise SystemExit(0)` as it is imported"),
    # assertions that cannot fail
    ("assert True", T, OLD, _with("    assert True\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`: `assert True`"),
    ("assert of a tuple", T, OLD, _with("    assert (add(2, 3) == 5, 'adds')\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`: `assert (add(2, 3) == 5, 'adds')`"),
    ("assert of a constant", T, OLD, _with("    assert 'add(2, 3) == 5'\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`"),
    ("assert 1 == 1", T, OLD, _with("    assert 1 == 1\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`: `assert 1 == 1`"),
    ("assert x == x", T, OLD, _with("    assert add(2, 3) == add(2, 3)\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`"),
    ("not False", T, OLD, _with("    assert not False\n"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`: `assert not False`"),
    ("assertTrue(True)", T, UNIT, UNIT.replace("self.assertEqual(add(2, 3), 5)",
                                               "self.assertTrue(True)"), ASSERTIONS,
     "an assertion that always passes was added in `test_add`: `self.assertTrue(True)`"),
    ("except Exception: pass", T, OLD,
     _with("    try:\n        assert add(2, 3) == 5\n    except Exception:\n        pass\n"),
     ASSERTIONS, "is inside `try` whose `except Exception` (line 10) swallows it"),
    ("a bare except", T, OLD,
     _with("    try:\n        assert add(2, 3) == 5\n    except:\n        pass\n"), ASSERTIONS,
     "is inside `try` whose `except` (line 10) swallows it"),
    ("except in a tuple", T, OLD,
     _with("    try:\n        assert add(2, 3) == 5\n    except (ValueError, AssertionError):\n"
           "        pass\n"), ASSERTIONS, "`except (ValueError, AssertionError)` (line 10)"),
    ("pytest.raises(AssertionError)", T, OLD,
     _with("    with pytest.raises(AssertionError):\n        assert add(2, 3) == 5\n"), ASSERTIONS,
     "is inside `pytest.raises(AssertionError)`, which passes only when it fails"),
    ("contextlib.suppress", T, OLD,
     _with("    with contextlib.suppress(AssertionError):\n        assert add(2, 3) == 5\n",
           head="import contextlib"), ASSERTIONS,
     "is inside `contextlib.suppress(AssertionError)`, which swallows its failure"),
    ("a return under if", T, OLD, _with("    if add:\n        return\n    assert add(2, 3) == 5\n"),
     ASSERTIONS, "`test_add` returns at line 9, before its assertions from line 10 on can run"),
    # expected values
    ("expected reversed", T, OLD.replace("add(2, 3) == 5", "5 == add(2, 3)"),
     OLD.replace("add(2, 3) == 5", "-1 == add(2, 3)"), ASSERTIONS,
     "the expected value of `test_add` changed from `5` to `-1`"),
    ("assertEqual's expected", T, UNIT, UNIT.replace("5)", "-1)"), ASSERTIONS,
     "changed from `5` to `-1`, and the code it tests did not change: `self.assertEqual("),
    ("expected through a local", T, _with("    expected = 5\n    assert add(2, 3) == expected\n"),
     _with("    expected = -1\n    assert add(2, 3) == expected\n"), ASSERTIONS,
     "the expected value of `test_add` changed from `5` to `-1`"),
    ("approx", T, _with("    assert add(0.1, 0.2) == pytest.approx(0.3)\n"),
     _with("    assert add(0.1, 0.2) == pytest.approx(-0.1)\n"), ASSERTIONS,
     "changed from `pytest.approx(0.3)` to `pytest.approx(-0.1)`"),
    ("a parametrize case", T,
     "import pytest\n\n\n@pytest.mark.parametrize('a, b, total', [(2, 3, 5), (0, 0, 0)])\n"
     "def test_add(a, b, total):\n    assert add(a, b) == total\n",
     "import pytest\n\n\n@pytest.mark.parametrize('a, b, total', [(2, 3, -1), (0, 0, 0)])\n"
     "def test_add(a, b, total):\n    assert add(a, b) == total\n", ASSERTIONS,
     "a case of `test_add` changed its `total` from `5` to `-1`, and the code it tests did not "
     "change: `(2, 3, -1)`"),
    ("weakened to is not None", T, OLD, _with("    assert add(2, 3) is not None\n"), ASSERTIONS,
     "an assertion in `test_add` was weakened: `assert add(2, 3) == 5` became "
     "`assert add(2, 3) is not None`"),
    ("weakened to truthiness", T, OLD, _with("    assert add(2, 3)\n"), ASSERTIONS,
     "was weakened: `assert add(2, 3) == 5` became `assert add(2, 3)`"),
    ("weakened to isinstance", T, OLD, _with("    assert isinstance(add(2, 3), int)\n"),
     ASSERTIONS, "became `assert isinstance(add(2, 3), int)`"),
    # what cannot be read is said
    ("a syntax error", T, OLD, OLD + "def broken(:\n", UNREADABLE,
     "could not be read as Python (invalid syntax), so what it does to the tests was not"),
    # skips on a condition Honk cannot read: an old test is still reported
    ("an old test skipped on a project's flag", T, OLD,
     _with("    assert add(2, 3) == 5\n", head="from calc import WIN").replace(
         "def test_add", "@pytest.mark.skipif(WIN, reason='x')\ndef test_add"),
     MARKER, "`test_add` was skipped with `@pytest.mark.skipif` when `WIN`"),
    ("an old test skipped where a tool is missing", T, OLD,
     _with("    if shutil.which('less') is None:\n        pytest.skip('no less')\n"
           "    assert add(2, 3) == 5\n", head="import shutil"),
     MARKER, "`test_add` was skipped with `pytest.skip()` when `shutil.which('less') is None`"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "before", "after", "kind", "words"),
    [case[1:] for case in FLAGGED],
    ids=[case[0] for case in FLAGGED],
)
def test_every_spelling_is_named(
    path: str, before: str | None, after: str, kind: str, words: str
) -> None:
    found = _check(path, before, after)
    assert any(f.kind == kind and words in f.message for f in found), [
        (f.kind, f.line, f.message) for f in found
    ]
    assert all(f.path == path and (f.line is None or f.line >= 1) for f in found)


NEW_TEST = "\n\ndef test_negative():\n{body}"
# A new test for a platform that is not this one: a real reason, left to the outcome checks.
ELSEWHERE = "sys.platform == 'definitely-not-this-one'"

# (id, path, the start's text, the agent's): nothing to say
CLEAN: list[tuple[str, str, str | None, str]] = [
    ("a new honest test", T, OLD, OLD + NEW_TEST.format(body="    assert add(-1, -1) == -2\n")),
    ("a new test file smoke-testing an import", "tests/test_import.py", None,
     "def test_imports():\n    import calc\n    assert True\n"),
    ("a new test skipped on another platform", T, OLD,
     OLD.replace("import pytest\n", "import sys\n\nimport pytest\n")
     + "\n\n@pytest.mark.skipif(" + ELSEWHERE + ", reason='x')\ndef test_negative():\n"
     "    assert add(-1, -1) == -2\n"),
    ("a new test skipped inside on another platform", T, OLD,
     OLD.replace("import pytest\n", "import sys\n\nimport pytest\n")
     + NEW_TEST.format(body=f"    if {ELSEWHERE}:\n        pytest.skip('x')\n"
                       "    assert add(-1, -1) == -2\n")),
    ("a new test for older Pythons only", T, OLD,
     OLD.replace("import pytest\n", "import sys\n\nimport pytest\n")
     + "\n\n@pytest.mark.skipif(sys.version_info < (3, 0), reason='x')\ndef test_negative():\n"
     "    assert add(-1, -1) == -2\n"),
    ("an old test skipped on another platform", T, OLD,
     OLD.replace("import pytest\n", "import sys\n\nimport pytest\n").replace(
         "def test_add", "@pytest.mark.skipif(" + ELSEWHERE + ", reason='x')\ndef test_add")),
    ("a new test skipped on a project's flag", T, OLD,
     OLD.replace("import calc\n", "import calc\nfrom calc import WIN\n") + "\n\n@pytest.mark."
     "skipif(WIN, reason='x')\ndef test_negative():\n    assert add(-1, -1) == -2\n"),
    ("a new test skipped through an alias", T, OLD,
     OLD.replace("import pytest\n", "import sys\n\nimport pytest\n")
     + "\n\nelsewhere_only = pytest.mark.skipif(" + ELSEWHERE + ", reason='x')\n\n\n"
     "@elsewhere_only\ndef test_negative():\n    assert add(-1, -1) == -2\n"),
    ("a new test file skipped on another platform", "tests/test_win.py", None,
     "import sys\n\nimport pytest\n\npytestmark = pytest.mark.skipif(" + ELSEWHERE + ", reason='x')"
     "\n\n\ndef test_it():\n    assert 1 + 1 == 2\n"),
    ("a skip that was already there", T,
     OLD.replace("def test_add", "@pytest.mark.skip\ndef test_add"),
     OLD.replace("def test_add", "@pytest.mark.skip\ndef test_add") + NEW_TEST.format(
         body="    assert add(-1, -1) == -2\n")),
    ("a fixture in conftest", CONFTEST, "import pytest\n",
     "import pytest\n\n\n@pytest.fixture\ndef numbers():\n    return [1, 2, 3]\n"),
    ("a test double the test owns", T, OLD,
     OLD + NEW_TEST.format(body="    fake = calc.Calculator()\n    fake.memory = 3\n"
                           "    assert fake.memory == 3\n")),
    ("a stub of another library", T, OLD,
     OLD.replace("import calc\n", "import calc\nimport requests\n") + NEW_TEST.format(
         body="    import json\n    json.loads = None\n    assert add(-1, -1) == -2\n")),
    ("a collaborator the test does not check", T, OLD,
     OLD + "\n\ndef test_total(monkeypatch):\n    monkeypatch.setattr(calc, 'now', lambda: 0)\n"
     "    assert calc.total([1, 2]) == 3\n"),
    ("a patch of a test helper", T, OLD,
     OLD.replace("import calc\n", "import calc\nfrom tests import helpers\n") + NEW_TEST.format(
         body="    helpers.make = lambda: 1\n    assert helpers.make() == 1\n")),
    ("sys.exit checked by a test", T, OLD,
     OLD.replace("import calc\n", "import calc\nimport sys\n") + NEW_TEST.format(
         body="    with pytest.raises(SystemExit):\n        sys.exit(2)\n")),
    ("sys.exit under the main guard", T, OLD,
     OLD + "\n\nif __name__ == '__main__':\n    import sys\n\n    sys.exit(pytest.main())\n"),
    ("a try that re-raises", T, OLD,
     _with("    try:\n        assert add(2, 3) == 5\n    except AssertionError:\n"
           "        print('add is wrong')\n        raise\n")),
    ("a return after the assertions", T, OLD, _with("    assert add(2, 3) == 5\n    return\n")),
    ("an expected value that stays", T, OLD, _with("    assert add(2, 3) == 5, 'two and three'\n")),
    ("a new case added", T,
     "import pytest\n\n\n@pytest.mark.parametrize('a, b, total', [(2, 3, 5)])\n"
     "def test_add(a, b, total):\n    assert add(a, b) == total\n",
     "import pytest\n\n\n@pytest.mark.parametrize('a, b, total', [(2, 3, 5), (-1, -1, -2)])\n"
     "def test_add(a, b, total):\n    assert add(a, b) == total\n"),
    ("skip markers outside tests are the project's own", "pkg/core.py", "X = 1\n",
     "def compute():\n    return 5\n"),
    ("a conftest skip for a real platform, unchanged", CONFTEST,
     "import sys\n\ncollect_ignore = ['win'] if sys.platform != 'win32' else []\n",
     "import sys\n\ncollect_ignore = ['win'] if sys.platform != 'win32' else []\n\n\nX = 1\n"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "before", "after"), [case[1:] for case in CLEAN], ids=[case[0] for case in CLEAN]
)
def test_what_is_left_alone(path: str, before: str | None, after: str) -> None:
    assert _check(path, before, after) == []


def test_a_new_test_skipped_on_this_platform_is_still_reported() -> None:
    here = f"sys.platform == {sys.platform!r}"
    after = OLD.replace("import pytest\n", "import sys\n\nimport pytest\n") + (
        f"\n\n@pytest.mark.skipif({here}, reason='x')\ndef test_negative():\n"
        "    assert add(-1, -1) == -2\n"
    )
    (found,) = _check(T, OLD, after)
    assert found.kind == MARKER and found.test == "test_negative"
    assert found.message == (
        f"`test_negative` was skipped with `@pytest.mark.skipif` when `{here}`"
    )


def test_only_what_the_change_brought_is_reported() -> None:
    # The start skipped one test; the change skips another the same way: only that one.
    before = OLD.replace("def test_add", "@pytest.mark.skip\ndef test_add") + (
        "\n\ndef test_zero():\n    assert add(0, 0) == 0\n"
    )
    after = before.replace("def test_zero", "@pytest.mark.skip\ndef test_zero")
    (found,) = _check(T, before, after)
    assert (found.test, found.line) == ("test_zero", 12)


def test_an_expected_value_rewritten_beside_a_change_of_the_code() -> None:
    rewritten = PythonFile(T, OLD, OLD.replace("== 5", "== -1"), True)
    fixed = PythonFile("calc.py", BUGGY, FIXED, False)
    touched = PythonFile("calc.py", BUGGY, "# a comment only\n" + BUGGY, False)
    other = PythonFile("pkg/core.py", "X = 1\n", "X = 2\n", False)
    # The code the test imports changed: the new value may be the point (the outcome checks
    # judge it); a comment, or code the test does not import, makes it the tests' doing.
    assert check_python([rewritten, fixed], _project()) == []
    for beside in (touched, other):
        (found,) = check_python([rewritten, beside], _project())
        assert "changed from `5` to `-1`, and the code it tests did not change" in found.message


def test_a_renamed_test_keeps_its_history() -> None:
    # Renamed and its expected value rewritten: still the same test's expected value.
    after = OLD.replace("def test_add", "def test_adds").replace("== 5", "== -1")
    (found,) = _check(T, OLD, after)
    assert "the expected value of `test_adds` changed from `5` to `-1`" in found.message


def test_unreadable_and_deleted_files() -> None:
    link = PythonFile(CONFTEST, None, None, True, unread="a symbolic link")
    assert [f.message for f in check_python([link], _project())] == [
        "is a symbolic link, which Honk does not read: what it does to the tests was not checked"
    ]
    gone = PythonFile(T, OLD, None, True)
    assert check_python([gone], _project()) == []  # the checks of the diff say it went


def test_what_the_project_is() -> None:
    project = Project.from_paths(
        ["src/calc/__init__.py", "src/calc/core.py", "tests/helpers.py", "tests/test_x.py",
         "conftest.py", "setup.py"],
        tests_in_diffs.is_test_file,
    )  # fmt: skip
    assert project.code_under_test("calc.core.add") == "calc.core"
    assert project.code_under_test("calc.VERSION") == "calc"
    assert project.code_under_test("tests.helpers.make") is None  # the tests' own
    assert project.code_under_test("requests.get") is None  # not the repository's
    assert project.tests_under("") == ["tests/test_x.py"]
    assert project.module_of("src/calc/core.py") == "calc.core"


async def test_a_symlinked_conftest_a_renamed_test_file_and_a_large_one_through_git(
    tmp_path: Path,
) -> None:
    before: Files = {**BASE, "helpers.py": "def pytest_pyfunc_call(pyfuncitem):\n    return True\n"}
    root = tmp_path / "repo"
    checkout = await asyncio.to_thread(_checkout, root, before, {"test_calc.py": None})

    def agent() -> None:
        (root / "conftest.py").symlink_to("helpers.py")
        (root / "tests").mkdir()
        (root / "tests" / "test_calc.py").write_text(TESTS.replace("5", "-1"))
        (root / "tests" / "test_big.py").write_text("# padding\n" * 300)

    await asyncio.to_thread(agent)
    found = check_change(await read_change(checkout, max_bytes=2_000))
    described = [f.describe() for f in found]
    assert (
        "`conftest.py`: is a symbolic link, which Honk does not read: what it does to the tests "
        "was not checked"
    ) in described
    assert (
        "`tests/test_big.py`: is larger than 2,000 bytes, which Honk does not read: what it "
        "does to the tests was not checked"
    ) in described
    # Moved to tests/ and rewritten: compared with where it was.
    assert any(
        "`tests/test_calc.py` line 5: the expected value of `test_add` changed from `5` to `-1`"
        in d
        for d in described
    ), described
    texts = {t.path: t for t in await checkout.changed_texts(lambda p: True, max_bytes=100)}
    assert texts["tests/test_calc.py"].old_path == "test_calc.py"
    assert texts["tests/test_calc.py"].before == TESTS
    assert texts["conftest.py"].after is None and texts["conftest.py"].unread == "a symbolic link"
    assert texts["tests/test_big.py"].unread == "larger than 100 bytes"
