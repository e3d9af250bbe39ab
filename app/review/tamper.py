"""Parse, don't grep: Python test files and conftests read with `ast`, the run's start beside
the agent's version, for what the change does to the tests.

The checks of the diff (runs/diff_checks.py) read lines, and a line does not say that `mark`
is pytest's, that `skip` was bound to `pytest.skip` three lines up, or that a hook was bound by
assignment. These checks read each changed module whole on both sides, resolve names through
its imports and assignments (`from pytest import mark as m`, `getattr(pytest, "skip")`,
`importlib.import_module("os")`), and report only what the change brought: what was there at
the start is the repository's, not the agent's. Each finding names the file, the line and the
test, in plain words. The outcome checks (running the tests) are the gate; these say why.

A package of its own below runs/: it imports nothing of Honk but `app.untrusted` and `app.log`.
"""

from __future__ import annotations

import ast
import functools
import operator
import os
import platform
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from app.log import redact
from app.untrusted import code

# Kinds of finding; the first three are the words the checks of the diff use for the same
# things, so a finding reads the same whichever check made it.
MARKER = "marker"  # a test skipped, expected to fail or no longer collected
ASSERTIONS = "assertions"  # an assertion that cannot fail, weakened, or expecting another value
TEST_CONFIG = "test-config"  # a pytest hook or plugin: how tests are collected, run, reported
PATCH = "patch"  # the code under test replaced by the tests themselves
EXIT = "exit"  # the test process ended before pytest reports
UNREADABLE = "unreadable"  # a test file Honk could not read, so could not check

SNIPPET = 100  # the most characters of code a finding quotes

CHECK = "parse"  # which check made these findings, for the run page


@dataclass(frozen=True)
class PythonFile:
    """One changed Python file: its text at the run's start and as the agent left it."""

    path: str  # where it is now (where it was, when deleted)
    before: str | None  # None: not there at the start
    after: str | None  # None: deleted, or not readable (`unread` says why)
    is_test: bool  # a test module or conftest.py: every check; other modules: skips only
    unread: str = ""  # why `after` is missing though the file is there ("a symbolic link")


@dataclass(frozen=True)
class Found:
    """One thing the change does to the tests, in words, with where it is."""

    path: str
    line: int | None
    kind: str
    message: str
    test: str | None = None  # the test it is about, when it is about one


# Where Python projects keep importable code, besides the top of the repository.
_ROOTS = ("src/", "lib/", "python/", "")


@dataclass(frozen=True)
class Project:
    """The repository's own Python modules (what a test may not replace) and its test files."""

    modules: dict[str, bool] = field(default_factory=dict)  # dotted name -> is test code
    test_files: tuple[str, ...] = ()

    @classmethod
    def from_paths(cls, paths: Iterable[str], is_test: Callable[[str], bool]) -> Project:
        modules: dict[str, bool] = {}
        tests = []
        for path in paths:
            if not path.endswith(".py"):
                continue
            test = is_test(path)
            name = PurePosixPath(path).name
            if test and (name.startswith("test_") or name.endswith("_test.py")):
                tests.append(path)  # what pytest collects by default (helpers are test code)
            for root in _ROOTS:
                if not path.startswith(root):
                    continue
                parts = _module_parts(path[len(root) :])
                if parts is None:
                    continue
                for depth in range(1, len(parts)):  # its packages
                    package = "/".join(parts[:depth])
                    modules.setdefault(".".join(parts[:depth]), is_test(f"{package}/__init__.py"))
                if parts:
                    modules[".".join(parts)] = test
        return cls(modules, tuple(sorted(tests)))

    def module_of(self, path: str) -> str | None:
        """The dotted name `path` is imported by (under the first root that fits)."""
        for root in _ROOTS:
            if path.startswith(root):
                parts = _module_parts(path[len(root) :])
                if parts and ".".join(parts) in self.modules:
                    return ".".join(parts)
        parts = _module_parts(path)
        return ".".join(parts) if parts else None

    def code_under_test(self, dotted: str) -> str | None:
        """The project module `dotted` is in (its longest known prefix), unless that module is
        test code (a test double the tests own) or not the repository's at all."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            name = ".".join(parts[:end])
            if name in self.modules:
                return None if self.modules[name] else name
        return None

    def tests_under(self, directory: str) -> list[str]:
        prefix = f"{directory}/" if directory else ""
        return [path for path in self.test_files if path.startswith(prefix)]


def _module_parts(relative: str) -> list[str] | None:
    parts = relative.removesuffix(".py").split("/")
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return parts if all(part.isidentifier() for part in parts) else None


def check_python(files: Sequence[PythonFile], project: Project) -> list[Found]:
    """Every finding of the parse checks over the changed Python files, in file and line order."""
    changed = frozenset(
        module
        for file in files
        if not file.is_test
        and _code_changed(file.before, file.after)
        and (module := project.module_of(file.path)) is not None
    )
    found: list[Found] = []
    for file in files:
        found.extend(check_file(file, project, changed))
    return sorted(set(found), key=lambda f: (f.path, f.line or 0, f.kind, f.message))


def _code_changed(before: str | None, after: str | None) -> bool:
    """The module's code changed, not only its comments or layout (a touched comment does not
    make a rewritten expected value the code's doing)."""
    if before is None or after is None:
        return before != after
    try:
        return ast.dump(ast.parse(before)) != ast.dump(ast.parse(after))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return before != after


def check_file(
    file: PythonFile, project: Project, changed: frozenset[str] = frozenset()
) -> list[Found]:
    """The findings of one file; `changed`: the project modules (not tests) the change touched."""
    if file.after is None:
        if file.unread and file.is_test:
            return [
                Found(
                    file.path,
                    None,
                    UNREADABLE,
                    f"is {file.unread}, which Honk does not read: what it does to the tests "
                    "was not checked",
                )
            ]
        return []  # deleted: the checks of the diff say so
    try:
        new = _Module(file.path, file.after, project)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        line = getattr(error, "lineno", None)
        why = getattr(error, "msg", None) or type(error).__name__
        return [
            Found(
                file.path,
                line if isinstance(line, int) else None,
                UNREADABLE,
                f"could not be read as Python ({why}), so what it does to the tests was not "
                "checked",
            )
        ]
    old: _Module | None = None
    if file.before is not None:
        try:
            old = _Module(file.path, file.before, project)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            old = None  # the start did not parse: everything in the new version is new
    try:
        return _Checks(file, new, old, project, changed).run()
    except RecursionError:  # nesting deeper than Python's own tools go: said, never passed
        return [
            Found(
                file.path,
                None,
                UNREADABLE,
                "is nested too deeply to read, so what it does to the tests was not checked",
            )
        ]


# -- one module, parsed ------------------------------------------------------------------------

# Other names of the same thing, so one table of causes serves every spelling.
_SAME = (
    ("builtins.", ""),
    ("_pytest.outcomes.Skipped", "pytest.skip.Exception"),
    ("_pytest.outcomes.XFailed", "pytest.xfail.Exception"),
    ("_pytest.outcomes.Exit", "pytest.exit.Exception"),
    ("_pytest.outcomes.", "pytest."),
    ("_pytest.mark.structures.MARK_GEN", "pytest.mark"),
    ("_pytest.mark.MARK_GEN", "pytest.mark"),
    ("pytest.MARK_GEN", "pytest.mark"),
    ("_pytest.monkeypatch.MonkeyPatch", "pytest.MonkeyPatch"),
    ("unittest.case.", "unittest."),
    ("mock.", "unittest.mock."),
)


@functools.lru_cache(maxsize=8192)
def _canonical(name: str) -> str:
    for alias, same in _SAME:
        if alias.endswith("."):
            if name.startswith(alias):
                return same + name[len(alias) :]
        elif name == alias or name.startswith(alias + "."):
            return same + name[len(alias) :]
    return name


@dataclass(frozen=True)
class _Owner:
    """Whom a piece of code is about: a test, a fixture, a helper, a class, the file."""

    kind: str  # "test", "fixture", "function", "class", "module", "data"
    name: str = ""

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def plural(self) -> bool:
        return self.kind in ("fixture", "function", "data")

    def was(self, does: str) -> str:
        """`does` ("was skipped") agreeing with who() ("the tests that call `x` were ...")."""
        return does.replace("was ", "were ", 1) if self.plural else does

    def does(self, verb: str) -> str:
        """A verb ("replaces") agreeing with who() ("the tests that use `x` replace")."""
        return verb.removesuffix("s") if self.plural else verb

    def who(self, tests: Sequence[str] = ()) -> str:
        """Whom, in words; `tests` (the names a file or class holds) are named after it."""
        if self.kind in ("module", "class") and tests:
            shown = ", ".join(code(t) for t in tests[:3])
            more = f" and {len(tests) - 3} more" if len(tests) > 3 else ""
            return f"{self.who()} ({shown}{more})"
        if self.kind == "test":
            return code(self.short)
        if self.kind == "fixture":
            return f"the tests that use the fixture {code(self.name)}"
        if self.kind == "function":
            return f"the tests that call {code(self.name)}"
        if self.kind == "class":
            return f"every test in {code(self.name)}"
        if self.kind == "data":
            return f"the tests that use {code(self.name)}"
        return "every test in this file"


Function = ast.FunctionDef | ast.AsyncFunctionDef


class _Module:
    """One version of a module: its tree, what its names stand for, its tests and fixtures."""

    def __init__(self, path: str, text: str, project: Project) -> None:
        self.path = path
        self.tree = ast.parse(text, filename=path)
        # One walk of the tree: each node's parent, and the nodes by kind, for every check.
        self.parents: dict[ast.AST, ast.AST] = {}
        self.kinds: dict[type, list[ast.AST]] = {}
        pending: list[ast.AST] = [self.tree]
        while pending:
            node = pending.pop()
            self.kinds.setdefault(type(node), []).append(node)
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
                pending.append(child)
        self._resolved: dict[tuple[int, bool], str | None] = {}
        module = project.module_of(path) or ""
        is_package = PurePosixPath(path).name == "__init__.py"
        self.package = module if is_package else module.rpartition(".")[0]
        self.aliases: dict[str, str] = {}  # a name -> the dotted name it stands for
        self.alias_calls: dict[str, ast.Call] = {}  # `skip_win = pytest.mark.skipif(...)`
        self.imported: set[str] = set()  # names bound by an import (or an alias of one)
        self._bind_names()
        self.tests: dict[str, Function] = {}  # "test_add" or "TestCalc.test_add"
        self.fixtures: set[str] = set()
        self._find_tests()

    # what names stand for

    def nodes(self, *kinds: type[ast.AST]) -> list[ast.AST]:
        """Every node of these kinds (in no particular order)."""
        return [node for kind in kinds for node in self.kinds.get(kind, [])]

    def _bind_names(self) -> None:
        for node in self.nodes(ast.Import, ast.ImportFrom):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    self.imported.add(bound)
                    if alias.asname:
                        self.aliases[bound] = _canonical(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = self._from_module(node)
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    bound = alias.asname or alias.name
                    self.imported.add(bound)
                    self.aliases[bound] = _canonical(f"{base}.{alias.name}" if base else alias.name)
        # `skip = pytest.mark.skip`, `m = importlib.import_module("calc")`: twice, for chains.
        for _ in range(2):
            self._resolved.clear()
            for node in self.nodes(ast.Assign):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target = node.targets[0]
                    if isinstance(target, ast.Name):
                        value = self.resolve(node.value, calls=True)
                        if value is not None and value != target.id:
                            self.aliases[target.id] = value
                            if isinstance(node.value, ast.Call):
                                self.alias_calls[target.id] = node.value
                            if self._root_imported(node.value):
                                self.imported.add(target.id)

    def _from_module(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.package.split(".") if self.package else []
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])

    def resolve(self, node: ast.AST, *, calls: bool = False) -> str | None:
        """The dotted name an expression stands for (`m.skip` -> `pytest.mark.skip`), if any."""
        key = (id(node), calls)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(node, calls)
        return self._resolved[key]

    def _resolve(self, node: ast.AST, calls: bool) -> str | None:
        if isinstance(node, ast.Name):
            return _canonical(self.aliases.get(node.id, node.id))
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value, calls=calls)
            return _canonical(f"{base}.{node.attr}") if base else None
        if isinstance(node, ast.Subscript):
            key = _string(node.slice)
            if key and self.resolve(node.value) == "sys.modules":
                return key
            return None
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if func == "getattr" and len(node.args) >= 2:
                base, name = self.resolve(node.args[0], calls=calls), _string(node.args[1])
                return _canonical(f"{base}.{name}") if base and name else None
            if func in ("__import__", "importlib.import_module") and node.args:
                return _string(node.args[0])
            if calls and func is not None and func.startswith("pytest.mark."):
                return func  # a marker given its arguments is still that marker
        return None

    def _root_imported(self, node: ast.AST) -> bool:
        """The expression starts from a name an import bound (not a local or a parameter)."""
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        if isinstance(node, ast.Call):
            return self.resolve(node) is not None  # __import__("calc"), getattr(calc, ...)
        return isinstance(node, ast.Name) and node.id in self.imported

    # tests, fixtures and who a node is about

    def _find_tests(self) -> None:
        for stmt in self.tree.body:
            if isinstance(stmt, Function) and stmt.name.startswith("test"):
                self.tests[stmt.name] = stmt
            elif isinstance(stmt, ast.ClassDef) and self._collects(stmt):
                for item in stmt.body:
                    if isinstance(item, Function) and item.name.startswith("test"):
                        self.tests[f"{stmt.name}.{item.name}"] = item
            for item in [stmt, *(stmt.body if isinstance(stmt, ast.ClassDef) else [])]:
                if isinstance(item, Function) and self._is_fixture(item):
                    self.fixtures.add(item.name)

    def _collects(self, cls: ast.ClassDef) -> bool:
        if cls.name.startswith("Test"):
            return True
        return any((self.resolve(base) or "").endswith("TestCase") for base in cls.bases)

    def _is_fixture(self, function: Function) -> bool:
        for decorator in function.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if self.resolve(target) in ("pytest.fixture", "pytest_asyncio.fixture"):
                return True
        return False

    def owner(self, node: ast.AST) -> _Owner:
        function: Function | None = None
        cls: ast.ClassDef | None = None
        current = node
        while current in self.parents:
            parent = self.parents[current]
            if isinstance(current, Function) and isinstance(parent, ast.Module | ast.ClassDef):
                function = current
            if isinstance(current, ast.ClassDef) and isinstance(parent, ast.Module):
                cls = current
            current = parent
        if function is not None:
            method = cls is not None and function in cls.body
            qualified = f"{cls.name}.{function.name}" if cls and method else function.name
            if qualified in self.tests:
                return _Owner("test", qualified)
            if function.name in self.fixtures:
                return _Owner("fixture", function.name)
            return _Owner("function", qualified)
        if cls is not None:
            return _Owner("class", cls.name)
        return _Owner("module")

    def statement(self, node: ast.AST) -> ast.stmt | None:
        """The statement of the module's or a class's body that holds `node`."""
        current = node
        while current in self.parents:
            parent = self.parents[current]
            if isinstance(parent, ast.Module | ast.ClassDef) and isinstance(current, ast.stmt):
                return current
            current = parent
        return None

    def under_main_guard(self, node: ast.AST) -> bool:
        """Inside `if __name__ == "__main__":`, which pytest never runs."""
        current = node
        while current in self.parents:
            parent = self.parents[current]
            if isinstance(parent, ast.If) and current in parent.body:
                test = parent.test
                if (
                    isinstance(test, ast.Compare)
                    and isinstance(test.left, ast.Name)
                    and test.left.id == "__name__"
                    and any(_string(c) == "__main__" for c in test.comparators)
                ):
                    return True
            current = parent
        return False

    def references(self, wanted: Callable[[str], str | None]) -> Iterator[tuple[ast.AST, str, str]]:
        """Every use of a name `wanted` knows, in source order: (node, dotted name, its cause).
        A use is one use however it is spelled (`pytest.skip.Exception` is not also a use of
        `pytest.skip`); imports bind names without using them."""
        found = []
        for node in self.nodes(ast.Name, ast.Attribute, ast.Call):
            if isinstance(getattr(node, "ctx", None), ast.Store | ast.Del):
                continue
            if isinstance(node, ast.Call) and self.resolve(node.func) not in _DYNAMIC:
                continue
            dotted = self.resolve(node)
            cause = wanted(dotted) if dotted else None
            if cause is None or dotted is None:
                continue
            if self._inside_use(node, wanted):
                continue
            found.append((node, dotted, cause))
        found.sort(key=lambda use: (getattr(use[0], "lineno", 0), getattr(use[0], "col_offset", 0)))
        yield from found

    def _inside_use(self, node: ast.AST, wanted: Callable[[str], str | None]) -> bool:
        """Part of a longer use: `pytest.skip` in `pytest.skip.Exception`, `os` in
        `getattr(os, "_exit")`."""
        current = node
        while current in self.parents:
            parent = self.parents[current]
            longer = (isinstance(parent, ast.Attribute) and parent.value is current) or (
                isinstance(parent, ast.Call)
                and current in parent.args
                and self.resolve(parent.func) in _DYNAMIC
            )
            if not longer:
                return False
            dotted = self.resolve(parent)
            if dotted and wanted(dotted) is not None:
                return True
            current = parent
        return False

    def spelling(self, node: ast.AST) -> str:
        """How a use reads in the source: `@mark.skip`, `pytest.skip()`, `raise Skipped`,
        `pytest.param(1, marks=pytest.mark.xfail)`."""
        text = _snippet(node)
        case = self._param_of(node)
        if case is not None:
            return _snippet(case)
        parent = self.parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node:
            holder = self.parents.get(parent)
            if isinstance(holder, Function | ast.ClassDef) and parent in holder.decorator_list:
                return "@" + text
            if isinstance(holder, ast.Raise):
                return f"raise {text}()"
            return text + "()"
        if isinstance(parent, Function | ast.ClassDef) and node in parent.decorator_list:
            return "@" + text
        if isinstance(parent, ast.Raise):
            return f"raise {text}"
        return text

    def _param_of(self, node: ast.AST) -> ast.Call | None:
        """The `pytest.param(...)` whose `marks=` holds `node`, if one does."""
        current = node
        while current in self.parents:
            parent = self.parents[current]
            if isinstance(parent, ast.keyword) and parent.arg == "marks":
                call = self.parents.get(parent)
                if isinstance(call, ast.Call) and _method_name(call) == "param":
                    return call
                return None
            if not isinstance(parent, ast.expr):
                return None
            current = parent
        return None


# Calls that name a module or an attribute by a string.
_DYNAMIC = ("getattr", "__import__", "importlib.import_module")


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _snippet(node: ast.AST) -> str:
    """Code quoted in a finding: one line, bounded, token-shaped secrets redacted (a finding
    is published on the PR, the check run and Slack)."""
    text = redact(" ".join(ast.unparse(node).split()))
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False)


# -- what the checks look for ------------------------------------------------------------------

_SKIPPED = "was skipped"
_XFAIL = "was marked as expected to fail"
_SKIPS = {
    "pytest.mark.skip": _SKIPPED,
    "pytest.mark.skipif": _SKIPPED,
    "pytest.mark.xfail": _XFAIL,
    "pytest.skip": _SKIPPED,  # pytest.skip.Exception too
    "pytest.importorskip": _SKIPPED,
    "pytest.xfail": _XFAIL,
    "unittest.skip": _SKIPPED,
    "unittest.skipIf": _SKIPPED,
    "unittest.skipUnless": _SKIPPED,
    "unittest.SkipTest": _SKIPPED,
    "unittest.expectedFailure": _XFAIL,
}


@functools.lru_cache(maxsize=8192)
def _skip_cause(dotted: str) -> str | None:
    if dotted.endswith(".skipTest") or dotted == "skipTest":
        return _SKIPPED
    for name, does in _SKIPS.items():
        if dotted == name or dotted.startswith(name + "."):
            return does
    return None


_EXITS = frozenset(
    {
        "os._exit", "sys.exit", "exit", "quit", "os.kill", "os.killpg", "os.abort",
        "pytest.exit", "signal.raise_signal", "signal.pthread_kill",
        "os.execl", "os.execle", "os.execlp", "os.execlpe",
        "os.execv", "os.execve", "os.execvp", "os.execvpe",
    }
)  # fmt: skip


def _exit_cause(dotted: str) -> str | None:
    return "exit" if dotted in _EXITS or dotted.startswith("pytest.exit.") else None


# What a pytest hook bound in a conftest (or a plugin it loads) can do, in words.
_HOOKS = {
    "pytest_pyfunc_call": "it replaces how tests are called",
    "pytest_runtest_call": "it replaces how tests are run",
    "pytest_runtest_protocol": "it replaces how tests are run",
    "pytest_runtest_setup": "it runs before every test and can skip or fail it",
    "pytest_runtest_teardown": "it runs after every test",
    "pytest_runtest_makereport": "it can rewrite each test's result",
    "pytest_runtest_logreport": "it sees each test's result and can change it",
    "pytest_report_teststatus": "it can rewrite how each test's result is reported",
    "pytest_collection": "it replaces how tests are collected",
    "pytest_collection_modifyitems": "it can change which tests run",
    "pytest_collection_finish": "it can change which tests run",
    "pytest_collect_file": "it changes which files are collected",
    "pytest_ignore_collect": "it can leave files out of the run",
    "pytest_pycollect_makeitem": "it changes which tests are collected",
    "pytest_pycollect_makemodule": "it changes how test files are collected",
    "pytest_generate_tests": "it changes how tests are parametrized",
    "pytest_deselected": "it sees which tests are left out",
    "pytest_itemcollected": "it sees every collected test",
    "pytest_sessionstart": "it runs before any test",
    "pytest_sessionfinish": "it can change the run's exit status",
    "pytest_terminal_summary": "it can change what the run reports",
    "pytest_configure": "it changes pytest's configuration",
    "pytest_unconfigure": "it runs as pytest ends",
    "pytest_addoption": "it adds options to pytest",
    "pytest_cmdline_main": "it can replace the whole test run",
    "pytest_cmdline_parse": "it can replace how pytest reads its command line",
    "pytest_load_initial_conftests": "it runs before the conftests load",
    "pytest_runtestloop": "it replaces the loop that runs the tests",
    "collect_ignore": "it leaves files out of collection",
    "collect_ignore_glob": "it leaves files out of collection",
}
_HOOK = "it is a pytest hook, which can change how tests run"
_COLLECT_IGNORE = ("collect_ignore", "collect_ignore_glob")

_ASSERT_FAILS = frozenset({"AssertionError", "Exception", "BaseException"})
_EQUAL_METHODS = frozenset(
    {
        "assertEqual", "assertEquals", "failUnlessEqual", "assert_equal", "assertAlmostEqual",
        "assertAlmostEquals", "assertListEqual", "assertDictEqual", "assertTupleEqual",
        "assertSetEqual", "assertSequenceEqual", "assertCountEqual", "assertMultiLineEqual",
        "assertIs",
    }
)  # fmt: skip
_TRUE_METHODS = frozenset({"assertTrue", "assert_", "failUnless"})
_FALSE_METHODS = frozenset({"assertFalse", "failIf"})


def _method_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _is_assertion(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Call):
        name = _method_name(node) or ""
        return name.startswith("assert") or name in _TRUE_METHODS | _FALSE_METHODS
    return False


# Platform facts a skip condition may test; Honk's own interpreter answers for the sandbox's
# host (same kernel and machine; the Python version is Honk's, which is said where it matters).
_PLATFORM: dict[str, Any] = {
    "sys.platform": sys.platform,
    "os.name": os.name,
    "sys.version_info": tuple(sys.version_info),
    "sys.implementation.name": sys.implementation.name,
    "sys.byteorder": sys.byteorder,
    "sys.maxsize": sys.maxsize,
}
_PLATFORM_CALLS: dict[str, Callable[[], Any]] = {
    "platform.system": platform.system,
    "platform.machine": platform.machine,
    "platform.python_implementation": platform.python_implementation,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}  # fmt: skip


class _Unknown:
    pass


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class _Fact:
    """Something a version of the file does, keyed so the start's version can be matched."""

    key: tuple[str, ...]
    line: int | None
    kind: str
    message: str
    test: str | None = None


def _renamed(fact: _Fact, renamed: dict[str, str]) -> _Fact:
    """The fact keyed under the test's name at the start (its key's second part is whom)."""
    if len(fact.key) > 1 and fact.key[1] in renamed:
        key = (fact.key[0], renamed[fact.key[1]], *fact.key[2:])
        return _Fact(key, fact.line, fact.kind, fact.message, fact.test)
    return fact


def _imports_changed(module: _Module, project: Project, changed: frozenset[str]) -> bool:
    """Whether the change touched the project's code this file imports (any of the project's
    code when it imports none of it, as tests that run a command line do)."""
    imported: set[str] = set()
    for node in module.nodes(ast.Import, ast.ImportFrom):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module._from_module(node)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            found = project.code_under_test(name) if name else None
            if found is not None:
                imported.add(found.split(".")[0])
    if not imported:
        return bool(changed)
    return any(name.split(".")[0] in imported for name in changed)


def _new_facts(after: list[_Fact], before: list[_Fact]) -> list[_Fact]:
    """The facts of the agent's version that the start's did not have (by key and count)."""
    left = Counter(fact.key for fact in before)
    new = []
    for fact in after:
        if left[fact.key] > 0:
            left[fact.key] -= 1
        else:
            new.append(fact)
    return new


# -- the checks --------------------------------------------------------------------------------


class _Checks:
    """Both versions of one file, compared."""

    def _tests_of(self, module: _Module, owner: _Owner) -> list[str]:
        """The tests a module-level or class-level finding reaches, by name."""
        if owner.kind == "module":
            return [name.rsplit(".", 1)[-1] for name in module.tests]
        if owner.kind == "class":
            prefix = owner.name + "."
            return [name.rsplit(".", 1)[-1] for name in module.tests if name.startswith(prefix)]
        return []

    def __init__(
        self,
        file: PythonFile,
        new: _Module,
        old: _Module | None,
        project: Project,
        changed: frozenset[str] = frozenset(),
    ) -> None:
        self.file = file
        self.new = new
        self.old = old
        self.project = project
        self.path = file.path
        self.conftest = PurePosixPath(file.path).name == "conftest.py"
        self.is_test = file.is_test or self.conftest
        # A test is "new" when the start had no test of its name and lost none in the change
        # (else it may be one renamed); vacuous checks leave new tests to the outcome checks.
        old_tests = set(old.tests) if old else set()
        gone = [name for name in (old.tests if old else {}) if name not in new.tests]
        added = [name for name in new.tests if name not in old_tests]
        self.pairs = {name: name for name in new.tests if name in old_tests}
        if gone and len(gone) == len(added):
            self.pairs.update(zip(added, gone, strict=True))  # renamed, in order
            added = []
        self.new_tests = set(added)
        # Only where the code the file's tests import did not change is a rewritten expected
        # value the tests' doing (where it did, the outcome checks judge the new value).
        self.code_changed = _imports_changed(new, project, changed)

    def run(self) -> list[Found]:
        facts: list[_Fact] = []
        renamed = {new: old for new, old in self.pairs.items() if new != old}
        for extract in self._extractors():
            # A renamed test's facts are matched under its old name.
            after = [_renamed(fact, renamed) for fact in extract(self.new)]
            before = list(extract(self.old)) if self.old is not None else []
            facts += _new_facts(after, before)
        if self.is_test:
            facts += self._hooks()
            facts += self._changed_expectations()
        return [Found(self.path, f.line, f.kind, f.message, f.test) for f in facts]

    def _extractors(self) -> list[Callable[[_Module], Iterable[_Fact]]]:
        if not self.is_test:
            return [self._skips]
        return [self._skips, self._collection, self._patches, self._exits, self._vacuous]

    def _where(self) -> str:
        if self.conftest:
            return "conftest.py"
        return "this test file" if self.file.is_test else "this module"

    def _tests_here(self) -> str:
        """Which tests a conftest reaches: the test files in its directory and below."""
        directory = str(PurePosixPath(self.path).parent).removeprefix(".")
        files = self.project.tests_under(directory)
        if len(files) == 1:
            return f"every test in {code(files[0])}"
        if files:
            return f"every test in the {len(files)} test files under {code(directory or '.')}"
        return "every test in this directory and below"

    # skips, xfails, collection

    def _skips(self, module: _Module) -> Iterator[_Fact]:
        seen: set[tuple[str, str]] = set()
        for node, dotted, does in module.references(_skip_cause):
            owner = module.owner(node)
            spelling = module.spelling(node)
            statement = module.statement(node)
            if owner.kind in ("module", "class") and isinstance(statement, ast.Assign):
                names = [t.id for t in statement.targets if isinstance(t, ast.Name)]
                prefix = f"{owner.name}." if owner.kind == "class" else ""
                if "pytestmark" in names:
                    spelling = f"pytestmark = {_snippet(statement.value)}"
                elif any(f"{prefix}{name}" in module.tests for name in names):
                    test = next(f"{prefix}{n}" for n in names if f"{prefix}{n}" in module.tests)
                    owner, spelling = _Owner("test", test), _snippet(statement)
                elif module.resolve(statement.value, calls=True) == dotted:
                    continue  # `skip = pytest.mark.skip`: an alias; its uses are the findings
                elif names:
                    owner = _Owner("data", names[0])
            if module is self.new and self._lenient(module, node, dotted, owner):
                continue
            if (owner.name, dotted) in seen:
                continue
            seen.add((owner.name, dotted))
            alias = "" if dotted in spelling.replace("@", "") else f" ({code(dotted)})"
            condition = _condition(module, node, dotted)
            if condition is not None:
                alias += f" {'when' if condition[1] else 'unless'} {code(_snippet(condition[0]))}"
            who = owner.who(self._tests_of(module, owner))
            if module._param_of(node) is not None:
                who = f"a case of {who}"
            yield _Fact(
                ("skip", owner.name, dotted),
                getattr(node, "lineno", None),
                MARKER,
                f"{who} {owner.was(does)} with {code(spelling)}{alias}",
                owner.short if owner.kind == "test" else None,
            )

    def _lenient(self, module: _Module, node: ast.AST, dotted: str, owner: _Owner) -> bool:
        """A skip with a real reason, not a way around a failing test: one whose condition
        Honk reads with this machine's platform facts and that does not skip here (any test:
        it changes nothing in this run); on a new test, or a new file's, also one whose
        condition Honk cannot read (a project's `WIN`, `shutil.which("less")`), since a new
        test hides no old one and the outcome checks run it. Unconditional, skipped here, or
        an old test's unreadable condition: said."""
        here = _skips_here(module, node, dotted)
        if here is False:
            return True
        new_test = owner.kind == "test" and owner.name in self.new_tests
        new_file = owner.kind in ("module", "class") and self.old is None
        return here is UNKNOWN and (new_test or new_file)

    def _collection(self, module: _Module) -> Iterator[_Fact]:
        """`__test__ = False` on the file, a class or a test: pytest collects nothing there."""
        for node in module.nodes(ast.Assign, ast.AnnAssign, ast.Call):
            targets: list[tuple[ast.AST, ast.AST]] = []  # (target, value)
            if isinstance(node, ast.Assign):
                targets = [(target, node.value) for target in node.targets]
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [(node.target, node.value)]
            elif (
                isinstance(node, ast.Call)
                and module.resolve(node.func) == "setattr"
                and len(node.args) == 3
                and _string(node.args[1]) == "__test__"
            ):
                targets = [(ast.Attribute(node.args[0], "__test__", ast.Store()), node.args[2])]
            for target, value in targets:
                owner = self._test_flag_owner(module, node, target)
                if owner is None or _truth(value) is True:
                    continue
                yield _Fact(
                    ("collect", owner.name),
                    getattr(node, "lineno", None),
                    MARKER,
                    f"{owner.who(self._tests_of(module, owner))} is no longer collected: "
                    f"{code(_snippet(node))} tells pytest it holds no tests",
                    owner.short if owner.kind == "test" else None,
                )

    def _test_flag_owner(self, module: _Module, node: ast.AST, target: ast.AST) -> _Owner | None:
        if isinstance(target, ast.Name) and target.id == "__test__":
            owner = module.owner(node)
            return owner if owner.kind in ("module", "class") else None
        if isinstance(target, ast.Attribute) and target.attr == "__test__":
            name = module.resolve(target.value) or ""
            if name in module.tests:
                return _Owner("test", name)
            return _Owner("class", name) if name else _Owner("module")
        return None

    # hooks and plugins

    def _bindings(self, module: _Module) -> Iterator[tuple[str, ast.AST, str]]:
        """Names bound at the module's top level, however: (name, node, how)."""
        for stmt in _top_statements(module.tree):
            if isinstance(stmt, Function | ast.ClassDef):
                yield stmt.name, stmt, ""
            elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    for name in _bound_names(target):
                        yield name, stmt, " (bound by assignment)"
                    bound = _namespace_key(module, target)
                    if bound:
                        yield bound, stmt, " (bound through the module's namespace)"
            elif isinstance(stmt, ast.Import):
                continue  # binds a module, and pytest takes only functions for hooks
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name == "*":
                        yield "*", stmt, module._from_module(stmt)
                    else:
                        bound = alias.asname or alias.name.split(".")[0]
                        source = code(_imported(module, stmt, alias))
                        yield bound, stmt, f" (imported from {source})"
            elif isinstance(stmt, ast.For | ast.AsyncFor):
                for name in _bound_names(stmt.target):
                    yield name, stmt, " (bound by a loop)"
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                for item in stmt.items:
                    for name in _bound_names(item.optional_vars):
                        yield name, stmt, " (bound by `with`)"
            if isinstance(stmt, ast.Expr | ast.Assign):
                for call in (n for n in ast.walk(stmt) if isinstance(n, ast.Call)):
                    yield from _namespace_calls(module, call)

    def _hooks(self) -> list[_Fact]:
        """Hooks and plugins the change binds or changes at the top of a conftest or test file."""
        before: dict[str, set[str]] = {}
        if self.old is not None:
            for name, node, _how in self._bindings(self.old):
                if self._hook_name(name):
                    before.setdefault(name, set()).add(_dump(node))
        facts = []
        seen: set[str] = set()
        for name, node, how in self._bindings(self.new):
            if not self._hook_name(name) or name in seen:
                continue
            if _dump(node) in before.get(name, set()):
                continue
            star = name == "*"
            seen.add(name)
            line = getattr(node, "lineno", None)
            if star:
                message = (
                    f"conftest.py now imports every name of {code(how or '.')}, pytest hooks "
                    f"included: what it binds reaches {self._tests_here()}"
                )
                facts.append(_Fact(("hook", name), line, TEST_CONFIG, message))
                continue
            verb = "was changed in" if name in before else "was added to"
            if name == "pytest_plugins":
                plugins = [s for n in ast.walk(node) if (s := _string(n))]
                what = ", ".join(code(p) for p in plugins[:5]) or "other modules"
                plugin = "a pytest plugin" if len(plugins) == 1 else "pytest plugins"
                effect = f"it loads {what} as {plugin}, whose hooks can change how tests run"
                how = ""
            else:
                effect = _HOOKS.get(name, _HOOK)
            reach = f", for {self._tests_here()}" if self.conftest else ""
            message = f"{code(name)} {verb} {self._where()}{how}: {effect}{reach}"
            facts.append(_Fact(("hook", name), line, TEST_CONFIG, message))
        calls = self.new.nodes(ast.Call) if self.conftest else []
        for node in calls:  # collect_ignore.append(...), .extend(...)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in _COLLECT_IGNORE
                and node.func.value.id not in seen
                and _dump(node) not in self._old_dumps()
            ):
                seen.add(node.func.value.id)
                facts.append(
                    _Fact(
                        ("hook", node.func.value.id),
                        node.lineno,
                        TEST_CONFIG,
                        f"{code(_snippet(node))} was added to conftest.py: it leaves files out "
                        f"of collection, for {self._tests_here()}",
                    )
                )
        return facts

    def _hook_name(self, name: str) -> bool:
        """A name pytest reads at a module's top: a hook, `pytest_plugins`; in a conftest also
        `collect_ignore` and what a star import brings."""
        if name.startswith("pytest_"):
            return True
        return self.conftest and (name in _COLLECT_IGNORE or name == "*")

    def _old_dumps(self) -> set[str]:
        if self.old is None:
            return set()
        return {_dump(node) for node in self.old.nodes(ast.Call)}

    # patches of the code under test

    def _patches(self, module: _Module) -> Iterator[_Fact]:
        asserted = {name: _asserted_names(test) for name, test in module.tests.items()}
        anywhere = set().union(*asserted.values()) if asserted else set()
        for node, target in _patch_targets(module):
            project_module = self.project.code_under_test(target)
            if project_module is None:
                continue
            rest = target[len(project_module) + 1 :]
            first = rest.split(".")[0] if rest else None
            if first in sys.stdlib_module_names:
                continue  # `mirror.asyncio.sleep`: the standard library's, seen through a module
            owner = module.owner(node)
            in_function = owner.kind in ("test", "fixture", "function")
            if not self.conftest and first is not None:
                # In a test file, replacing a collaborator (`isatty`, a flag, a method spied
                # on) is a test double; replacing what the test's assertions then call is not.
                checked = asserted.get(owner.name, set()) if owner.kind == "test" else anywhere
                if first not in checked:
                    continue
            if self.conftest:
                who = f"conftest.py replaces {code(target)}, the code under test, for "
                message = f"{who}{self._tests_here()}, with {code(_snippet(node))}"
            elif in_function:
                message = (
                    f"{owner.who()} {owner.does('replaces')} {code(target)}, the code under "
                    f"test, with {code(_snippet(node))}"
                )
            else:
                message = (
                    f"this test file replaces {code(target)}, the code under test, for "
                    f"{owner.who()} as it is imported, with {code(_snippet(node))}"
                )
            yield _Fact(
                ("patch", owner.name, target),
                getattr(node, "lineno", None),
                PATCH,
                message,
                owner.short if owner.kind == "test" else None,
            )

    # the process ended

    def _exits(self, module: _Module) -> Iterator[_Fact]:
        uses = list(module.references(_exit_cause))
        for node in module.nodes(ast.Raise):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if module.resolve(exc) == "SystemExit":
                    uses.append((node, "SystemExit", "exit"))
        seen: set[tuple[str, str]] = set()
        for node, dotted, _cause in sorted(uses, key=lambda use: getattr(use[0], "lineno", 0)):
            owner = module.owner(node)
            if module.under_main_guard(node):
                continue  # run as a script, never under pytest
            if not self.conftest and owner.kind not in ("module", "class"):
                continue  # a test may check that code exits (inside pytest.raises)
            if (owner.name, dotted) in seen:
                continue
            seen.add((owner.name, dotted))
            shown = node if isinstance(node, ast.Raise) else self._call_of(module, node)
            spelling = _snippet(shown)
            if self.conftest:
                message = (
                    f"conftest.py ends the test process with {code(spelling)}: pytest never "
                    f"reports how {self._tests_here()} went, and the exit status is this call's"
                )
            else:
                message = (
                    f"this test file ends the test process with {code(spelling)} as it is "
                    "imported: pytest never reports how its tests went"
                )
            yield _Fact(("exit", owner.name, dotted), getattr(node, "lineno", None), EXIT, message)

    @staticmethod
    def _call_of(module: _Module, node: ast.AST) -> ast.AST:
        parent = module.parents.get(node)
        return parent if isinstance(parent, ast.Call) and parent.func is node else node

    # assertions that cannot fail

    def _vacuous(self, module: _Module) -> Iterator[_Fact]:
        """In tests that were there at the start (a new test is judged by the outcome checks):
        assertions that always pass, assertions whose failure is caught, an early return."""
        for name, function in module.tests.items():
            if module is self.new and name in self.new_tests:
                continue
            short = name.rsplit(".", 1)[-1]
            for node in _own_nodes(function):
                if _is_assertion(node) and _always_passes(node):
                    yield _Fact(
                        ("vacuous", name, _dump(node)),
                        node.lineno,  # type: ignore[attr-defined]
                        ASSERTIONS,
                        f"an assertion that always passes was added in {code(short)}: "
                        f"{code(_snippet(node))}",
                        short,
                    )
                elif _is_assertion(node) and (catcher := _swallowed(module, node, function)):
                    yield _Fact(
                        ("swallowed", name, _dump(node)),
                        node.lineno,  # type: ignore[attr-defined]
                        ASSERTIONS,
                        f"an assertion in {code(short)} cannot fail: {code(_snippet(node))} is "
                        f"inside {catcher}",
                        short,
                    )
            early = _early_return(function)
            if early is not None:
                returned, first_after = early
                yield _Fact(
                    ("return", name, _dump(_top_statement(function, returned))),
                    returned.lineno,
                    ASSERTIONS,
                    f"{code(short)} returns at line {returned.lineno}, before its assertions "
                    f"from line {first_after} on can run",
                    short,
                )

    # expected values

    def _changed_expectations(self) -> list[_Fact]:
        """A test in both versions whose exact check now expects another value, or checks
        less; a parametrize case whose one value changed."""
        if self.old is None:
            return []
        values = not self.code_changed
        facts: list[_Fact] = []
        for name, old_name in self.pairs.items():
            new_function, old_function = self.new.tests[name], self.old.tests[old_name]
            short = name.rsplit(".", 1)[-1]
            facts += _expectations(new_function, old_function, short, values=values)
            if values:
                facts += _cases(new_function, old_function, short)
        return facts


def _top_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """The module's own statements, also inside `if`, `try`, `with` and loops at its top."""
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        stmt = stack.pop()
        yield stmt
        inner: list[ast.stmt] = []
        if isinstance(stmt, ast.If | ast.For | ast.AsyncFor | ast.While):
            inner = [*stmt.body, *stmt.orelse]
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            inner = list(stmt.body)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            inner = [*stmt.body, *stmt.orelse, *stmt.finalbody]
            for handler in stmt.handlers:
                inner += handler.body
        elif isinstance(stmt, ast.Match):
            for case in stmt.cases:
                inner += case.body
        stack.extend(reversed(inner))


def _bound_names(target: ast.AST | None) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from _bound_names(target.value)


def _is_namespace(module: _Module, node: ast.AST) -> bool:
    """`globals()`, `vars()`, `locals()` at the top, or `sys.modules[__name__]`."""
    if isinstance(node, ast.Call) and not node.args:
        return module.resolve(node.func) in ("globals", "vars", "locals")
    if isinstance(node, ast.Attribute) and node.attr == "__dict__":
        return _is_namespace(module, node.value)
    return (
        isinstance(node, ast.Subscript)
        and module.resolve(node.value) == "sys.modules"
        and isinstance(node.slice, ast.Name)
        and node.slice.id == "__name__"
    )


def _namespace_key(module: _Module, target: ast.AST) -> str | None:
    """`globals()["pytest_x"] = ...` or `sys.modules[__name__].pytest_x = ...`: the name."""
    if isinstance(target, ast.Subscript) and _is_namespace(module, target.value):
        return _string(target.slice)
    if isinstance(target, ast.Attribute) and _is_namespace(module, target.value):
        return target.attr
    return None


def _namespace_calls(module: _Module, call: ast.Call) -> Iterator[tuple[str, ast.AST, str]]:
    """`setattr(sys.modules[__name__], "pytest_x", f)`, `globals().update(pytest_x=f)`,
    `exec("def pytest_x(...): ...")`: names bound without a binding statement."""
    func = module.resolve(call.func)
    how = " (bound through the module's namespace)"
    if func == "setattr" and len(call.args) >= 2 and _is_namespace(module, call.args[0]):
        name = _string(call.args[1])
        if name:
            yield name, call, how
    elif (
        isinstance(call.func, ast.Attribute)
        and call.func.attr in ("update", "setdefault", "__setitem__")
        and _is_namespace(module, call.func.value)
    ):
        for keyword in call.keywords:
            if keyword.arg:
                yield keyword.arg, call, how
        for argument in call.args:
            if isinstance(argument, ast.Dict):
                for key in argument.keys:
                    if (name := _string(key)) is not None:
                        yield name, call, how
            elif (name := _string(argument)) is not None:
                yield name, call, how
    elif func in ("exec", "eval", "compile"):
        for node in ast.walk(call):
            text = _string(node)
            if text and "pytest_" in text:
                start = text.index("pytest_")
                name = text[start:].split("(")[0].split("=")[0].split()[0]
                yield name, call, f" (bound by {code(func + '()')})"


def _imported(module: _Module, stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if isinstance(stmt, ast.ImportFrom):
        base = module._from_module(stmt)
        return f"{base}.{alias.name}" if base else alias.name
    return alias.name


def _asserted_names(function: Function) -> set[str]:
    """The names and attributes a test's assertions use (`add` in `assert add(2, 3) == 5`)."""
    names: set[str] = set()
    for node in _own_nodes(function):
        if _is_assertion(node):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name):
                    names.add(inner.id)
                elif isinstance(inner, ast.Attribute):
                    names.add(inner.attr)
    return names


def _patch_targets(module: _Module) -> Iterator[tuple[ast.AST, str]]:
    """Each place the module replaces an attribute of another module: (node, dotted target)."""
    patching = (ast.Call, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)
    for node in sorted(module.nodes(*patching), key=lambda n: getattr(n, "lineno", 0)):
        if isinstance(node, ast.Call):
            yield from ((node, target) for target in _call_patches(module, node))
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                for element in _flatten(target):
                    dotted = _assigned(module, element)
                    if dotted:
                        yield node, dotted


def _flatten(target: ast.AST) -> Iterator[ast.AST]:
    if isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _flatten(element)
    else:
        yield target


def _assigned(module: _Module, target: ast.AST) -> str | None:
    """`calc.add = ...`, `sys.modules["calc"] = ...`, `vars(calc)["add"] = ...`."""
    if isinstance(target, ast.Attribute) and module._root_imported(target.value):
        base = module.resolve(target.value)
        return f"{base}.{target.attr}" if base else None
    if isinstance(target, ast.Subscript):
        key = _string(target.slice)
        if key and module.resolve(target.value) == "sys.modules":
            return key
        holder = _namespace_of(module, target.value)
        if key and holder:
            return f"{holder}.{key}"
    return None


def _namespace_of(module: _Module, node: ast.AST) -> str | None:
    """`vars(calc)` or `calc.__dict__`: the module whose namespace it is."""
    if (
        isinstance(node, ast.Call)
        and module.resolve(node.func) == "vars"
        and len(node.args) == 1
        and module._root_imported(node.args[0])
    ):
        return module.resolve(node.args[0])
    if (
        isinstance(node, ast.Attribute)
        and node.attr == "__dict__"
        and module._root_imported(node.value)
    ):
        return module.resolve(node.value)
    return None


def _call_patches(module: _Module, call: ast.Call) -> Iterator[str]:
    """monkeypatch.setattr/delattr/setitem, mock.patch and its forms, setattr()."""
    name = _method_name(call)
    args = call.args
    func = call.func
    patcher = isinstance(func, ast.Attribute) and (
        (module.resolve(func.value) or "").endswith("patch")
        or (isinstance(func.value, ast.Attribute) and func.value.attr == "patch")
        or (isinstance(func.value, ast.Name) and func.value.id == "patch")
    )
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if name in ("setattr", "delattr") and args:
        text = _string(args[0])
        if text and "." in text and (len(args) == (2 if name == "setattr" else 1)):
            yield text  # monkeypatch.setattr("calc.add", fake)
        elif (
            len(args) >= 2
            and (attribute := _string(args[1]))
            and module._root_imported(args[0])
            and (base := module.resolve(args[0]))
        ):
            yield f"{base}.{attribute}"
    elif name == "setitem" and len(args) >= 2 and (key := _string(args[1])):
        if module.resolve(args[0]) == "sys.modules":
            yield key
        elif holder := _namespace_of(module, args[0]):
            yield f"{holder}.{key}"
    elif name == "object" and patcher and len(args) >= 2 and (attribute := _string(args[1])):
        if module._root_imported(args[0]) and (base := module.resolve(args[0])):
            yield f"{base}.{attribute}"
    elif name == "multiple" and patcher and args:
        base = _string(args[0]) or (
            module.resolve(args[0]) if module._root_imported(args[0]) else None
        )
        for keyword in call.keywords:
            if base and keyword.arg:
                yield f"{base}.{keyword.arg}"
    elif name == "dict" and patcher and args:
        if _string(args[0]) == "sys.modules" or module.resolve(args[0]) == "sys.modules":
            values = args[1] if len(args) > 1 else None
            if isinstance(values, ast.Dict):
                yield from (key for k in values.keys if (key := _string(k)))
    elif name == "patch" or (module.resolve(func) or "").endswith("mock.patch"):
        target = _string(args[0]) if args else _string(keywords.get("target"))
        if target:
            yield target


def _own_nodes(function: Function) -> list[ast.AST]:
    """The function's nodes in source order, without those of functions and classes defined
    inside it. Kept on the function's node: every check of a test reads them."""
    cached: list[ast.AST] | None = getattr(function, "_honk_own_nodes", None)
    if cached is not None:
        return cached
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = list(reversed(function.body))
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, Function | ast.ClassDef | ast.Lambda):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    setattr(function, "_honk_own_nodes", nodes)  # noqa: B010 - a name of Honk's on ast's node
    return nodes


def _top_statement(function: Function, node: ast.AST) -> ast.AST:
    for stmt in function.body:
        if any(child is node for child in ast.walk(stmt)):
            return stmt
    return node


def _early_return(function: Function) -> tuple[ast.Return, int] | None:
    """The first `return` with assertions after it, and the first such assertion's line."""
    nodes = list(_own_nodes(function))
    returns = sorted(
        (n for n in nodes if isinstance(n, ast.Return)), key=lambda n: (n.lineno, n.col_offset)
    )
    asserts = sorted(n.lineno for n in nodes if _is_assertion(n))  # type: ignore[attr-defined]
    for returned in returns:
        later = [line for line in asserts if line > (returned.end_lineno or returned.lineno)]
        if later:
            return returned, later[0]
    return None


def _always_passes(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return _truth(node.test) is True
    if not isinstance(node, ast.Call) or not node.args:
        return False
    name = _method_name(node)
    first = node.args[0]
    if name in _TRUE_METHODS:
        return _truth(first) is True
    if name in _FALSE_METHODS:
        return _truth(first) is False
    if name in _EQUAL_METHODS and len(node.args) >= 2:
        second = node.args[1]
        if _dump(first) == _dump(second):
            return True
        a, b = _constant(first), _constant(second)
        return a is not UNKNOWN and b is not UNKNOWN and _safe_compare(ast.Eq(), a, b) is True
    if name == "assertIsNotNone":
        value = _constant(first)
        return value is not UNKNOWN and value is not None
    return False


def _truth(node: ast.AST) -> bool | None:
    """Whether an expression is true (or false) whatever the code does; None: it depends."""
    value = _constant(node)
    if value is not UNKNOWN:
        try:
            return bool(value)
        except Exception:
            return None
    if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
        size = len(node.keys) if isinstance(node, ast.Dict) else len(node.elts)
        return True if size else None  # `assert (x, "message")`: a non-empty tuple
    if isinstance(node, ast.JoinedStr):
        parts = [v for v in node.values if isinstance(v, ast.Constant) and v.value]
        return True if parts else None
    if isinstance(node, ast.BoolOp):
        truths = [_truth(v) for v in node.values]
        if isinstance(node.op, ast.Or):
            return True if True in truths else (False if all(t is False for t in truths) else None)
        return False if False in truths else (True if all(t is True for t in truths) else None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _truth(node.operand)
        return None if inner is None else not inner
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        same = _dump(node.left) == _dump(node.comparators[0])
        if same and isinstance(node.ops[0], ast.Eq | ast.Is | ast.LtE | ast.GtE):
            return True
        if same and isinstance(node.ops[0], ast.NotEq | ast.IsNot | ast.Lt | ast.Gt):
            return False
    return None


def _constant(node: ast.AST) -> Any:
    """The value of an expression made of literals only (`1 == 1`, `-1`, `(1, 2)`)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Compare):
        values = [_constant(node.left), *(_constant(c) for c in node.comparators)]
        return _compare_chain(node.ops, values)
    if isinstance(node, ast.BoolOp):
        values = [_constant(v) for v in node.values]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        result = values[0]
        for value in values[1:]:
            result = (result or value) if isinstance(node.op, ast.Or) else (result and value)
        return result
    if isinstance(node, ast.BinOp):
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(left, int | float) and isinstance(right, int | float):
            ops: dict[type, Callable[[Any, Any], Any]] = {
                ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
            }  # fmt: skip
            if type(node.op) in ops and abs(left) < 1e12 and abs(right) < 1e12:
                return ops[type(node.op)](left, right)
    return UNKNOWN


def _compare_chain(ops: list[ast.cmpop], values: list[Any]) -> Any:
    """`a < b < c` over known values: True, False, or UNKNOWN when any value or comparison
    cannot be known here."""
    if any(v is UNKNOWN for v in values):
        return UNKNOWN
    for op, left, right in zip(ops, values, values[1:], strict=False):
        result = _safe_compare(op, left, right)
        if result is None:
            return UNKNOWN
        if not result:
            return False
    return True


def _safe_compare(op: ast.cmpop, left: Any, right: Any) -> bool | None:
    try:
        return bool(_COMPARE[type(op)](left, right))
    except Exception:
        return None


def _swallowed(module: _Module, node: ast.AST, function: Function) -> str | None:
    """Where a failing assertion is caught: a `try` whose handler swallows AssertionError, or
    `pytest.raises(AssertionError)` / `contextlib.suppress(AssertionError)` around it."""
    current = node
    while current in module.parents and current is not function:
        parent = module.parents[current]
        if isinstance(parent, ast.Try | ast.TryStar) and current in parent.body:
            for handler in parent.handlers:
                caught = _catches(module, handler.type)
                if caught and not _reraises(module, handler):
                    return f"{code('try')} whose {code(caught)} (line {handler.lineno}) swallows it"
        if isinstance(parent, ast.With | ast.AsyncWith) and current in parent.body:
            for item in parent.items:
                context = item.context_expr
                if not isinstance(context, ast.Call):
                    continue
                helper = module.resolve(context.func)
                caught = next((c for a in context.args if (c := _catches(module, a))), None)
                if caught and helper == "pytest.raises":
                    return f"{code(_snippet(context))}, which passes only when it fails"
                if caught and helper == "contextlib.suppress":
                    return f"{code(_snippet(context))}, which swallows its failure"
        current = parent
    return None


def _catches(module: _Module, kind: ast.AST | None) -> str | None:
    """`except` (bare), `except AssertionError`, `except (ValueError, Exception)`: in words."""
    if kind is None:
        return "except"
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    for name in names:
        dotted = module.resolve(name)
        if dotted in _ASSERT_FAILS:
            return f"except {ast.unparse(kind)}"
    return None


def _reraises(module: _Module, handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(handler):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call) and (
            module.resolve(node.func) == "pytest.fail" or _method_name(node) == "fail"
        ):
            return True
    return False


def _condition(module: _Module, node: ast.AST, dotted: str) -> tuple[ast.AST, bool] | None:
    """A conditional skip's condition, and whether it skips when that is true: the argument
    of `skipif`/`skipIf`/`skipUnless` (through an alias too: `windows_only =
    pytest.mark.skipif(...)`), or the `if` right around `pytest.skip()`; None: unconditional."""
    parent = module.parents.get(node)
    call = parent if isinstance(parent, ast.Call) and parent.func is node else None
    if call is None and isinstance(node, ast.Name):
        call = module.alias_calls.get(node.id)
    if call is None:
        return None
    if dotted in ("pytest.mark.skipif", "unittest.skipIf", "unittest.skipUnless"):
        keywords = {k.arg: k.value for k in call.keywords}
        condition = call.args[0] if call.args else keywords.get("condition")
        return (condition, dotted != "unittest.skipUnless") if condition is not None else None
    if dotted in ("pytest.skip", "pytest.xfail") or dotted.endswith("skipTest"):
        statement = module.parents.get(call)
        guard = module.parents.get(statement) if isinstance(statement, ast.Expr) else None
        if isinstance(guard, ast.If):
            return guard.test, statement in guard.body
    return None


def _skips_here(module: _Module, node: ast.AST, dotted: str) -> bool | _Unknown | None:
    """Whether a conditional skip skips on this machine (its condition read with this
    machine's platform facts); UNKNOWN when the condition cannot be read so; None when the
    skip has no condition."""
    found = _condition(module, node, dotted)
    if found is None:
        return None
    condition, skips_when = found
    value = _platform_value(module, condition)
    if value is UNKNOWN:
        return UNKNOWN
    try:
        return bool(value) == skips_when
    except Exception:
        return UNKNOWN


def _platform_value(module: _Module, node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        values = [_platform_value(module, e) for e in node.elts]
        return UNKNOWN if any(v is UNKNOWN for v in values) else tuple(values)
    if isinstance(node, ast.Name | ast.Attribute):
        dotted = module.resolve(node)
        return _PLATFORM.get(dotted or "", UNKNOWN)
    if isinstance(node, ast.Call) and not node.keywords:
        dotted = module.resolve(node.func)
        if dotted in _PLATFORM_CALLS and not node.args:
            return _PLATFORM_CALLS[dotted]()
        if isinstance(node.func, ast.Attribute) and node.func.attr in (
            "startswith",
            "endswith",
            "lower",
        ):
            subject = _platform_value(module, node.func.value)
            args = [_platform_value(module, a) for a in node.args]
            if isinstance(subject, str) and all(isinstance(a, str | tuple) for a in args):
                return getattr(subject, node.func.attr)(*args)
        return UNKNOWN
    if isinstance(node, ast.Subscript):
        subject = _platform_value(module, node.value)
        index = node.slice
        if isinstance(subject, tuple) and isinstance(index, ast.Slice):
            lower = _platform_value(module, index.lower) if index.lower else None
            upper = _platform_value(module, index.upper) if index.upper else None
            if lower is not UNKNOWN and upper is not UNKNOWN:
                return subject[lower:upper]
        elif isinstance(subject, tuple):
            position = _platform_value(module, index)
            if isinstance(position, int) and -len(subject) <= position < len(subject):
                return subject[position]
        return UNKNOWN
    if isinstance(node, ast.Compare):
        values = [_platform_value(module, node.left)]
        values += [_platform_value(module, c) for c in node.comparators]
        return _compare_chain(node.ops, values)
    if isinstance(node, ast.BoolOp):
        values = [_platform_value(module, v) for v in node.values]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        if isinstance(node.op, ast.Or):
            return any(values)
        return all(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _platform_value(module, node.operand)
        return UNKNOWN if inner is UNKNOWN else not inner
    return UNKNOWN


# -- expected values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One exact check in a test: what it looks at, the value it expects, where."""

    subject: str  # the dump of the expression checked
    expected: str | None  # the dump of a literal expected value; None: not a literal
    shown: str  # the expected value as written
    node: ast.AST


def _literal(node: ast.AST, locals_: dict[str, ast.AST]) -> ast.AST | None:
    """A literal expected value (`5`, `-1`, `(1, 2)`, `pytest.approx(0.3)`), through a local
    name assigned a literal once in the test (`expected = 5`)."""
    if isinstance(node, ast.Name) and node.id in locals_:
        node = locals_[node.id]
    if _constant(node) is not UNKNOWN:
        return node
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "approx"
        and node.args
        and _constant(node.args[0]) is not UNKNOWN
    ):
        return node
    return None


def _literal_locals(function: Function) -> dict[str, ast.AST]:
    assigned: Counter[str] = Counter()
    values: dict[str, ast.AST] = {}
    for node in _own_nodes(function):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in _bound_names(target):
                    assigned[name] += 1
                    if isinstance(node, ast.Assign) and isinstance(target, ast.Name):
                        values[name] = node.value
    return {
        name: value
        for name, value in values.items()
        if assigned[name] == 1 and _constant(value) is not UNKNOWN
    }


def _exact_checks(function: Function) -> list[_Check]:
    locals_ = _literal_locals(function)
    checks = []
    for node in _own_nodes(function):
        pair: tuple[ast.AST, ast.AST] | None = None
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            test = node.test
            if len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
                pair = (test.left, test.comparators[0])
        elif (
            isinstance(node, ast.Call)
            and _method_name(node) in _EQUAL_METHODS
            and len(node.args) >= 2
        ):
            pair = (node.args[0], node.args[1])
        if pair is None:
            continue
        left, right = pair
        left_literal, right_literal = _literal(left, locals_), _literal(right, locals_)
        if left_literal is not None and right_literal is None:
            left, right, right_literal = right, left, left_literal
        if right_literal is not None and _literal(left, locals_) is not None:
            continue  # two literals: the vacuous check's business
        expected = _dump(right_literal) if right_literal is not None else None
        shown = _snippet(right_literal if right_literal is not None else right)
        checks.append(_Check(_dump(left), expected, shown, node))
    return checks


def _expectations(
    new_function: Function, old_function: Function, short: str, *, values: bool
) -> list[_Fact]:
    """Exact checks made loose; with `values`, exact checks now expecting another literal."""
    before = _exact_checks(old_function)
    after = _exact_checks(new_function)
    facts: list[_Fact] = []
    used: set[int] = set()
    for check in before:
        same_subject = [c for c in after if c.subject == check.subject]
        if any(c.expected == check.expected for c in same_subject):
            continue
        if check.expected is not None and values:
            changed = [
                c
                for c in same_subject
                if c.expected is not None
                and id(c) not in used
                and not any(b.subject == c.subject and b.expected == c.expected for b in before)
            ]
            if changed:
                now = changed[0]
                used.add(id(now))
                facts.append(
                    _Fact(
                        ("expected", short, check.subject),
                        getattr(now.node, "lineno", None),
                        ASSERTIONS,
                        f"the expected value of {code(short)} changed from {code(check.shown)} "
                        f"to {code(now.shown)}, and the code it tests did not change: "
                        f"{code(_snippet(now.node))}",
                        short,
                    )
                )
                continue
        if same_subject:
            continue  # checked exactly still, against something that is not a literal
        looser = _looser_check(new_function, check)
        if looser is not None:
            facts.append(
                _Fact(
                    ("weakened", short, check.subject),
                    getattr(looser, "lineno", None),
                    ASSERTIONS,
                    f"an assertion in {code(short)} was weakened: {code(_snippet(check.node))} "
                    f"became {code(_snippet(looser))}",
                    short,
                )
            )
    return facts


def _looser_check(function: Function, check: _Check) -> ast.AST | None:
    """An assertion that now only checks that what an exact check looked at is there: `assert
    x`, `x is not None`, `isinstance(x, int)`, `self.assertTrue(x)`, `assertIsNotNone(x)`."""
    for node in _own_nodes(function):
        if not _is_assertion(node) or _always_passes(node):
            continue  # one that always passes is reported as such
        if any(_dump(checked) == check.subject for checked in _there_or_not(node)):
            return node
    return None


_THERE_METHODS = frozenset({"assertTrue", "assert_", "assertIsNotNone", "assertIsInstance"})


def _there_or_not(node: ast.AST) -> list[ast.AST]:
    """What an assertion checks only the presence (or type) of."""
    if isinstance(node, ast.Call):
        name = _method_name(node)
        return [node.args[0]] if name in _THERE_METHODS and node.args else []
    test = node.test if isinstance(node, ast.Assert) else None
    while isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):  # `not not x`
        inner = test.operand
        if not (isinstance(inner, ast.UnaryOp) and isinstance(inner.op, ast.Not)):
            return []
        test = inner.operand
    if test is None:
        return []
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        other = test.comparators[0]
        nothing = isinstance(other, ast.Constant) and other.value is None
        if isinstance(test.ops[0], ast.IsNot | ast.NotEq) and nothing:
            return [test.left]
        return []
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Name)
        and test.func.id in ("isinstance", "bool", "callable", "len")
        and test.args
    ):
        return [test.args[0]]
    return [test]


def _parametrize(function: Function) -> dict[str, list[tuple[ast.AST, list[ast.AST]]]]:
    """Each `@pytest.mark.parametrize(names, [cases])` of a test: names -> (case, values)."""
    found: dict[str, list[tuple[ast.AST, list[ast.AST]]]] = {}
    for decorator in function.decorator_list:
        if not (isinstance(decorator, ast.Call) and len(decorator.args) >= 2):
            continue
        func = decorator.func
        if not (isinstance(func, ast.Attribute) and func.attr == "parametrize"):
            continue
        names = _string(decorator.args[0]) or ",".join(
            _string(e) or "?" for e in getattr(decorator.args[0], "elts", [])
        )
        cases = decorator.args[1]
        if not isinstance(cases, ast.List | ast.Tuple):
            continue
        rows: list[tuple[ast.AST, list[ast.AST]]] = []
        for case in cases.elts:
            if isinstance(case, ast.Call) and _method_name(case) == "param":
                rows.append((case, list(case.args)))
            elif isinstance(case, ast.Tuple | ast.List):
                rows.append((case, list(case.elts)))
            else:
                rows.append((case, [case]))
        found[names.replace(" ", "")] = rows
    return found


def _cases(new_function: Function, old_function: Function, short: str) -> list[_Fact]:
    """A parametrize case whose one value changed (`(2, 3, 5)` -> `(2, 3, -1)`)."""
    facts = []
    before, after = _parametrize(old_function), _parametrize(new_function)
    for names, old_rows in before.items():
        new_rows = after.get(names, [])
        old_keys = {tuple(_dump(v) for v in values) for _case, values in old_rows}
        new_keys = {tuple(_dump(v) for v in values) for _case, values in new_rows}
        taken: set[int] = set()
        for _case, values in old_rows:
            key = tuple(_dump(v) for v in values)
            if key in new_keys:
                continue
            for index, (case, new_values) in enumerate(new_rows):
                new_key = tuple(_dump(v) for v in new_values)
                if index in taken or new_key in old_keys or len(new_key) != len(key):
                    continue
                differ = [i for i, (a, b) in enumerate(zip(key, new_key, strict=True)) if a != b]
                if len(differ) != 1 or _constant(new_values[differ[0]]) is UNKNOWN:
                    continue
                taken.add(index)
                position = differ[0]
                labels = names.split(",")
                label = labels[position] if position < len(labels) else f"value {position + 1}"
                facts.append(
                    _Fact(
                        ("case", short, names, key[position]),
                        getattr(case, "lineno", None),
                        ASSERTIONS,
                        f"a case of {code(short)} changed its {code(label)} from "
                        f"{code(_snippet(values[position]))} to "
                        f"{code(_snippet(new_values[position]))}, and the code it tests did "
                        f"not change: {code(_snippet(case))}",
                        short,
                    )
                )
                break
    return facts
