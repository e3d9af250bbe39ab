"""Assertions that cannot fail, in tests that were there at the start: one that always passes,
one whose failure is caught, a `return` before the assertions."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import ASSERTIONS, Fact
from app.review.tamper.module import Function, Module, dump, method_name, snippet
from app.review.tamper.values import UNKNOWN, constant, safe_compare, truth
from app.untrusted import code

_ASSERT_FAILS = frozenset({"AssertionError", "Exception", "BaseException"})
EQUAL_METHODS = frozenset(
    {
        "assertEqual", "assertEquals", "failUnlessEqual", "assert_equal", "assertAlmostEqual",
        "assertAlmostEquals", "assertListEqual", "assertDictEqual", "assertTupleEqual",
        "assertSetEqual", "assertSequenceEqual", "assertCountEqual", "assertMultiLineEqual",
        "assertIs",
    }
)  # fmt: skip
_TRUE_METHODS = frozenset({"assertTrue", "assert_", "failUnless"})
_FALSE_METHODS = frozenset({"assertFalse", "failIf"})


def is_assertion(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Call):
        name = method_name(node) or ""
        return name.startswith("assert") or name in _TRUE_METHODS | _FALSE_METHODS
    return False


def own_nodes(function: Function) -> list[ast.AST]:
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
    nodes = list(own_nodes(function))
    returns = sorted(
        (n for n in nodes if isinstance(n, ast.Return)), key=lambda n: (n.lineno, n.col_offset)
    )
    asserts = sorted(n.lineno for n in nodes if is_assertion(n))  # type: ignore[attr-defined]
    for returned in returns:
        later = [line for line in asserts if line > (returned.end_lineno or returned.lineno)]
        if later:
            return returned, later[0]
    return None


def always_passes(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return truth(node.test) is True
    if not isinstance(node, ast.Call) or not node.args:
        return False
    name = method_name(node)
    first = node.args[0]
    if name in _TRUE_METHODS:
        return truth(first) is True
    if name in _FALSE_METHODS:
        return truth(first) is False
    if name in EQUAL_METHODS and len(node.args) >= 2:
        second = node.args[1]
        if dump(first) == dump(second):
            return True
        a, b = constant(first), constant(second)
        return a is not UNKNOWN and b is not UNKNOWN and safe_compare(ast.Eq(), a, b) is True
    if name == "assertIsNotNone":
        value = constant(first)
        return value is not UNKNOWN and value is not None
    return False


def _swallowed(module: Module, node: ast.AST, function: Function) -> str | None:
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
                    return f"{code(snippet(context))}, which passes only when it fails"
                if caught and helper == "contextlib.suppress":
                    return f"{code(snippet(context))}, which swallows its failure"
        current = parent
    return None


def _catches(module: Module, kind: ast.AST | None) -> str | None:
    """`except` (bare), `except AssertionError`, `except (ValueError, Exception)`: in words."""
    if kind is None:
        return "except"
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    for name in names:
        dotted = module.resolve(name)
        if dotted in _ASSERT_FAILS:
            return f"except {ast.unparse(kind)}"
    return None


def _reraises(module: Module, handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(handler):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call) and (
            module.resolve(node.func) == "pytest.fail" or method_name(node) == "fail"
        ):
            return True
    return False


def vacuous(c: Comparison, module: Module) -> Iterator[Fact]:
    """In tests that were there at the start (a new test is judged by the outcome checks):
    assertions that always pass, assertions whose failure is caught, an early return."""
    for name, function in module.tests.items():
        if module is c.new and name in c.new_tests:
            continue
        short = name.rsplit(".", 1)[-1]
        for node in own_nodes(function):
            if is_assertion(node) and always_passes(node):
                yield Fact(
                    ("vacuous", name, dump(node)),
                    node.lineno,  # type: ignore[attr-defined]
                    ASSERTIONS,
                    f"an assertion that always passes was added in {code(short)}: "
                    f"{code(snippet(node))}",
                    short,
                )
            elif is_assertion(node) and (catcher := _swallowed(module, node, function)):
                yield Fact(
                    ("swallowed", name, dump(node)),
                    node.lineno,  # type: ignore[attr-defined]
                    ASSERTIONS,
                    f"an assertion in {code(short)} cannot fail: {code(snippet(node))} is "
                    f"inside {catcher}",
                    short,
                )
        early = _early_return(function)
        if early is not None:
            returned, first_after = early
            yield Fact(
                ("return", name, dump(_top_statement(function, returned))),
                returned.lineno,
                ASSERTIONS,
                f"{code(short)} returns at line {returned.lineno}, before its assertions "
                f"from line {first_after} on can run",
                short,
            )
