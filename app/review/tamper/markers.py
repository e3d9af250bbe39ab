"""Tests skipped, expected to fail or no longer collected, however the marker is spelled; a
skip whose condition does not hold on this machine (or a new test's unreadable one) is let be."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator

from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import MARKER, Fact
from app.review.tamper.module import Module, Owner, snippet, string
from app.review.tamper.values import UNKNOWN, Unknown, platform_value, truth
from app.untrusted import code

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


def skips(c: Comparison, module: Module) -> Iterator[Fact]:
    seen: set[tuple[str, str]] = set()
    for node, dotted, does in module.references(_skip_cause):
        owner = module.owner(node)
        spelling = module.spelling(node)
        statement = module.statement(node)
        if owner.kind in ("module", "class") and isinstance(statement, ast.Assign):
            names = [t.id for t in statement.targets if isinstance(t, ast.Name)]
            prefix = f"{owner.name}." if owner.kind == "class" else ""
            if "pytestmark" in names:
                spelling = f"pytestmark = {snippet(statement.value)}"
            elif any(f"{prefix}{name}" in module.tests for name in names):
                test = next(f"{prefix}{n}" for n in names if f"{prefix}{n}" in module.tests)
                owner, spelling = Owner("test", test), snippet(statement)
            elif module.resolve(statement.value, calls=True) == dotted:
                continue  # `skip = pytest.mark.skip`: an alias; its uses are the findings
            elif names:
                owner = Owner("data", names[0])
        if module is c.new and _lenient(c, module, node, dotted, owner):
            continue
        if (owner.name, dotted) in seen:
            continue
        seen.add((owner.name, dotted))
        alias = "" if dotted in spelling.replace("@", "") else f" ({code(dotted)})"
        condition = skip_condition(module, node, dotted)
        if condition is not None:
            alias += f" {'when' if condition[1] else 'unless'} {code(snippet(condition[0]))}"
        who = owner.who(c.tests_of(module, owner))
        if module.param_of(node) is not None:
            who = f"a case of {who}"
        yield Fact(
            ("skip", owner.name, dotted),
            getattr(node, "lineno", None),
            MARKER,
            f"{who} {owner.was(does)} with {code(spelling)}{alias}",
            owner.short if owner.kind == "test" else None,
        )


def _lenient(c: Comparison, module: Module, node: ast.AST, dotted: str, owner: Owner) -> bool:
    """A skip with a real reason, not a way around a failing test: one whose condition
    Honk reads with this machine's platform facts and that does not skip here (any test:
    it changes nothing in this run); on a new test, or a new file's, also one whose
    condition Honk cannot read (a project's `WIN`, `shutil.which("less")`), since a new
    test hides no old one and the outcome checks run it. Unconditional, skipped here, or
    an old test's unreadable condition: said."""
    here = _skips_here(module, node, dotted)
    if here is False:
        return True
    new_test = owner.kind == "test" and owner.name in c.new_tests
    new_file = owner.kind in ("module", "class") and c.old is None
    return here is UNKNOWN and (new_test or new_file)


def collection(c: Comparison, module: Module) -> Iterator[Fact]:
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
            and string(node.args[1]) == "__test__"
        ):
            targets = [(ast.Attribute(node.args[0], "__test__", ast.Store()), node.args[2])]
        for target, value in targets:
            owner = _test_flag_owner(c, module, node, target)
            if owner is None or truth(value) is True:
                continue
            yield Fact(
                ("collect", owner.name),
                getattr(node, "lineno", None),
                MARKER,
                f"{owner.who(c.tests_of(module, owner))} is no longer collected: "
                f"{code(snippet(node))} tells pytest it holds no tests",
                owner.short if owner.kind == "test" else None,
            )


def _test_flag_owner(c: Comparison, module: Module, node: ast.AST, target: ast.AST) -> Owner | None:
    if isinstance(target, ast.Name) and target.id == "__test__":
        owner = module.owner(node)
        return owner if owner.kind in ("module", "class") else None
    if isinstance(target, ast.Attribute) and target.attr == "__test__":
        name = module.resolve(target.value) or ""
        if name in module.tests:
            return Owner("test", name)
        return Owner("class", name) if name else Owner("module")
    return None


def skip_condition(module: Module, node: ast.AST, dotted: str) -> tuple[ast.AST, bool] | None:
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


def _skips_here(module: Module, node: ast.AST, dotted: str) -> bool | Unknown | None:
    """Whether a conditional skip skips on this machine (its condition read with this
    machine's platform facts); UNKNOWN when the condition cannot be read so; None when the
    skip has no condition."""
    found = skip_condition(module, node, dotted)
    if found is None:
        return None
    condition, skips_when = found
    value = platform_value(module, condition)
    if isinstance(value, Unknown):  # (`value is UNKNOWN` would narrow UNKNOWN to Any)
        return UNKNOWN
    try:
        return bool(value) == skips_when
    except Exception:
        return UNKNOWN
