"""One version of a module, parsed: its tree, what its names stand for (through imports and
assignments), its tests and fixtures, whom a node is about, and code quoted in a finding."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from app.log import redact
from app.review.tamper.project import Project
from app.untrusted import code

SNIPPET = 100  # the most characters of code a finding quotes


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
class Owner:
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


class Module:
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
                base = self.from_module(node)
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
                            if self.root_imported(node.value):
                                self.imported.add(target.id)

    def from_module(self, node: ast.ImportFrom) -> str:
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
            key = string(node.slice)
            if key and self.resolve(node.value) == "sys.modules":
                return key
            return None
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            if func == "getattr" and len(node.args) >= 2:
                base, name = self.resolve(node.args[0], calls=calls), string(node.args[1])
                return _canonical(f"{base}.{name}") if base and name else None
            if func in ("__import__", "importlib.import_module") and node.args:
                return string(node.args[0])
            if calls and func is not None and func.startswith("pytest.mark."):
                return func  # a marker given its arguments is still that marker
        return None

    def root_imported(self, node: ast.AST) -> bool:
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

    def owner(self, node: ast.AST) -> Owner:
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
                return Owner("test", qualified)
            if function.name in self.fixtures:
                return Owner("fixture", function.name)
            return Owner("function", qualified)
        if cls is not None:
            return Owner("class", cls.name)
        return Owner("module")

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
                    and any(string(c) == "__main__" for c in test.comparators)
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
        text = snippet(node)
        case = self.param_of(node)
        if case is not None:
            return snippet(case)
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

    def param_of(self, node: ast.AST) -> ast.Call | None:
        """The `pytest.param(...)` whose `marks=` holds `node`, if one does."""
        current = node
        while current in self.parents:
            parent = self.parents[current]
            if isinstance(parent, ast.keyword) and parent.arg == "marks":
                call = self.parents.get(parent)
                if isinstance(call, ast.Call) and method_name(call) == "param":
                    return call
                return None
            if not isinstance(parent, ast.expr):
                return None
            current = parent
        return None


# Calls that name a module or an attribute by a string.
_DYNAMIC = ("getattr", "__import__", "importlib.import_module")


def string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def snippet(node: ast.AST) -> str:
    """Code quoted in a finding: one line, bounded, token-shaped secrets redacted (a finding
    is published on the PR, the check run and Slack)."""
    text = redact(" ".join(ast.unparse(node).split()))
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False)


def method_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def bound_names(target: ast.AST | None) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from bound_names(target.value)
