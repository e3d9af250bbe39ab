"""pytest hooks and plugins a change binds at the top of a conftest or test file, however the
name is bound (a definition, an assignment, an import, the module's namespace, `exec`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import TEST_CONFIG, Fact
from app.review.tamper.module import Function, Module, bound_names, dump, snippet, string
from app.untrusted import code

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


def hooks(c: Comparison) -> list[Fact]:
    """Hooks and plugins the change binds or changes at the top of a conftest or test file."""
    before: dict[str, set[str]] = {}
    if c.old is not None:
        for name, node, _how in _bindings(c.old):
            if _hook_name(c, name):
                before.setdefault(name, set()).add(dump(node))
    facts = []
    seen: set[str] = set()
    for name, node, how in _bindings(c.new):
        if not _hook_name(c, name) or name in seen:
            continue
        if dump(node) in before.get(name, set()):
            continue
        star = name == "*"
        seen.add(name)
        line = getattr(node, "lineno", None)
        if star:
            message = (
                f"conftest.py now imports every name of {code(how or '.')}, pytest hooks "
                f"included: what it binds reaches {c.tests_here()}"
            )
            facts.append(Fact(("hook", name), line, TEST_CONFIG, message))
            continue
        verb = "was changed in" if name in before else "was added to"
        if name == "pytest_plugins":
            plugins = [s for n in ast.walk(node) if (s := string(n))]
            what = ", ".join(code(p) for p in plugins[:5]) or "other modules"
            plugin = "a pytest plugin" if len(plugins) == 1 else "pytest plugins"
            effect = f"it loads {what} as {plugin}, whose hooks can change how tests run"
            how = ""
        else:
            effect = _HOOKS.get(name, _HOOK)
        reach = f", for {c.tests_here()}" if c.conftest else ""
        message = f"{code(name)} {verb} {c.where()}{how}: {effect}{reach}"
        facts.append(Fact(("hook", name), line, TEST_CONFIG, message))
    calls = c.new.nodes(ast.Call) if c.conftest else []
    for node in calls:  # collect_ignore.append(...), .extend(...)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in _COLLECT_IGNORE
            and node.func.value.id not in seen
            and dump(node) not in _old_dumps(c)
        ):
            seen.add(node.func.value.id)
            facts.append(
                Fact(
                    ("hook", node.func.value.id),
                    node.lineno,
                    TEST_CONFIG,
                    f"{code(snippet(node))} was added to conftest.py: it leaves files out "
                    f"of collection, for {c.tests_here()}",
                )
            )
    return facts


def _hook_name(c: Comparison, name: str) -> bool:
    """A name pytest reads at a module's top: a hook, `pytest_plugins`; in a conftest also
    `collect_ignore` and what a star import brings."""
    if name.startswith("pytest_"):
        return True
    return c.conftest and (name in _COLLECT_IGNORE or name == "*")


def _old_dumps(c: Comparison) -> set[str]:
    if c.old is None:
        return set()
    return {dump(node) for node in c.old.nodes(ast.Call)}


def _bindings(module: Module) -> Iterator[tuple[str, ast.AST, str]]:
    """Names bound at the module's top level, however: (name, node, how)."""
    for stmt in _top_statements(module.tree):
        if isinstance(stmt, Function | ast.ClassDef):
            yield stmt.name, stmt, ""
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for name in bound_names(target):
                    yield name, stmt, " (bound by assignment)"
                bound = _namespace_key(module, target)
                if bound:
                    yield bound, stmt, " (bound through the module's namespace)"
        elif isinstance(stmt, ast.Import):
            continue  # binds a module, and pytest takes only functions for hooks
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    yield "*", stmt, module.from_module(stmt)
                else:
                    bound = alias.asname or alias.name.split(".")[0]
                    source = code(_imported(module, stmt, alias))
                    yield bound, stmt, f" (imported from {source})"
        elif isinstance(stmt, ast.For | ast.AsyncFor):
            for name in bound_names(stmt.target):
                yield name, stmt, " (bound by a loop)"
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                for name in bound_names(item.optional_vars):
                    yield name, stmt, " (bound by `with`)"
        if isinstance(stmt, ast.Expr | ast.Assign):
            for call in (n for n in ast.walk(stmt) if isinstance(n, ast.Call)):
                yield from _namespace_calls(module, call)


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


def _is_namespace(module: Module, node: ast.AST) -> bool:
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


def _namespace_key(module: Module, target: ast.AST) -> str | None:
    """`globals()["pytest_x"] = ...` or `sys.modules[__name__].pytest_x = ...`: the name."""
    if isinstance(target, ast.Subscript) and _is_namespace(module, target.value):
        return string(target.slice)
    if isinstance(target, ast.Attribute) and _is_namespace(module, target.value):
        return target.attr
    return None


def _namespace_calls(module: Module, call: ast.Call) -> Iterator[tuple[str, ast.AST, str]]:
    """`setattr(sys.modules[__name__], "pytest_x", f)`, `globals().update(pytest_x=f)`,
    `exec("def pytest_x(...): ...")`: names bound without a binding statement."""
    func = module.resolve(call.func)
    how = " (bound through the module's namespace)"
    if func == "setattr" and len(call.args) >= 2 and _is_namespace(module, call.args[0]):
        name = string(call.args[1])
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
                    if (name := string(key)) is not None:
                        yield name, call, how
            elif (name := string(argument)) is not None:
                yield name, call, how
    elif func in ("exec", "eval", "compile"):
        for node in ast.walk(call):
            text = string(node)
            if text and "pytest_" in text:
                start = text.index("pytest_")
                name = text[start:].split("(")[0].split("=")[0].split()[0]
                yield name, call, f" (bound by {code(func + '()')})"


def _imported(module: Module, stmt: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    if isinstance(stmt, ast.ImportFrom):
        base = module.from_module(stmt)
        return f"{base}.{alias.name}" if base else alias.name
    return alias.name
