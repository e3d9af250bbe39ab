"""Expected values: an exact check of a test in both versions that now expects another literal
(while the code it tests did not change) or checks less; a parametrize case whose one value
changed."""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass

from app.review.tamper.assertions import EQUAL_METHODS, always_passes, is_assertion, own_nodes
from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import ASSERTIONS, Fact
from app.review.tamper.module import Function, bound_names, dump, method_name, snippet, string
from app.review.tamper.values import UNKNOWN, constant
from app.untrusted import code


def changed_expectations(c: Comparison) -> list[Fact]:
    """A test in both versions whose exact check now expects another value, or checks
    less; a parametrize case whose one value changed."""
    if c.old is None:
        return []
    values = not c.code_changed
    facts: list[Fact] = []
    for name, old_name in c.pairs.items():
        new_function, old_function = c.new.tests[name], c.old.tests[old_name]
        short = name.rsplit(".", 1)[-1]
        facts += _expectations(new_function, old_function, short, values=values)
        if values:
            facts += _cases(new_function, old_function, short)
    return facts


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
    if constant(node) is not UNKNOWN:
        return node
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "approx"
        and node.args
        and constant(node.args[0]) is not UNKNOWN
    ):
        return node
    return None


def _literal_locals(function: Function) -> dict[str, ast.AST]:
    assigned: Counter[str] = Counter()
    values: dict[str, ast.AST] = {}
    for node in own_nodes(function):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in bound_names(target):
                    assigned[name] += 1
                    if isinstance(node, ast.Assign) and isinstance(target, ast.Name):
                        values[name] = node.value
    return {
        name: value
        for name, value in values.items()
        if assigned[name] == 1 and constant(value) is not UNKNOWN
    }


def _exact_checks(function: Function) -> list[_Check]:
    locals_ = _literal_locals(function)
    checks = []
    for node in own_nodes(function):
        pair: tuple[ast.AST, ast.AST] | None = None
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            test = node.test
            if len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
                pair = (test.left, test.comparators[0])
        elif (
            isinstance(node, ast.Call)
            and method_name(node) in EQUAL_METHODS
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
        expected = dump(right_literal) if right_literal is not None else None
        shown = snippet(right_literal if right_literal is not None else right)
        checks.append(_Check(dump(left), expected, shown, node))
    return checks


def _expectations(
    new_function: Function, old_function: Function, short: str, *, values: bool
) -> list[Fact]:
    """Exact checks made loose; with `values`, exact checks now expecting another literal."""
    before = _exact_checks(old_function)
    after = _exact_checks(new_function)
    facts: list[Fact] = []
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
                    Fact(
                        ("expected", short, check.subject),
                        getattr(now.node, "lineno", None),
                        ASSERTIONS,
                        f"the expected value of {code(short)} changed from {code(check.shown)} "
                        f"to {code(now.shown)}, and the code it tests did not change: "
                        f"{code(snippet(now.node))}",
                        short,
                    )
                )
                continue
        if same_subject:
            continue  # checked exactly still, against something that is not a literal
        looser = _looser_check(new_function, check)
        if looser is not None:
            facts.append(
                Fact(
                    ("weakened", short, check.subject),
                    getattr(looser, "lineno", None),
                    ASSERTIONS,
                    f"an assertion in {code(short)} was weakened: {code(snippet(check.node))} "
                    f"became {code(snippet(looser))}",
                    short,
                )
            )
    return facts


def _looser_check(function: Function, check: _Check) -> ast.AST | None:
    """An assertion that now only checks that what an exact check looked at is there: `assert
    x`, `x is not None`, `isinstance(x, int)`, `self.assertTrue(x)`, `assertIsNotNone(x)`."""
    for node in own_nodes(function):
        if not is_assertion(node) or always_passes(node):
            continue  # one that always passes is reported as such
        if any(dump(checked) == check.subject for checked in _there_or_not(node)):
            return node
    return None


_THERE_METHODS = frozenset({"assertTrue", "assert_", "assertIsNotNone", "assertIsInstance"})


def _there_or_not(node: ast.AST) -> list[ast.AST]:
    """What an assertion checks only the presence (or type) of."""
    if isinstance(node, ast.Call):
        name = method_name(node)
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
        names = string(decorator.args[0]) or ",".join(
            string(e) or "?" for e in getattr(decorator.args[0], "elts", [])
        )
        cases = decorator.args[1]
        if not isinstance(cases, ast.List | ast.Tuple):
            continue
        rows: list[tuple[ast.AST, list[ast.AST]]] = []
        for case in cases.elts:
            if isinstance(case, ast.Call) and method_name(case) == "param":
                rows.append((case, list(case.args)))
            elif isinstance(case, ast.Tuple | ast.List):
                rows.append((case, list(case.elts)))
            else:
                rows.append((case, [case]))
        found[names.replace(" ", "")] = rows
    return found


def _cases(new_function: Function, old_function: Function, short: str) -> list[Fact]:
    """A parametrize case whose one value changed (`(2, 3, 5)` -> `(2, 3, -1)`)."""
    facts = []
    before, after = _parametrize(old_function), _parametrize(new_function)
    for names, old_rows in before.items():
        new_rows = after.get(names, [])
        old_keys = {tuple(dump(v) for v in values) for _case, values in old_rows}
        new_keys = {tuple(dump(v) for v in values) for _case, values in new_rows}
        taken: set[int] = set()
        for _case, values in old_rows:
            key = tuple(dump(v) for v in values)
            if key in new_keys:
                continue
            for index, (case, new_values) in enumerate(new_rows):
                new_key = tuple(dump(v) for v in new_values)
                if index in taken or new_key in old_keys or len(new_key) != len(key):
                    continue
                differ = [i for i, (a, b) in enumerate(zip(key, new_key, strict=True)) if a != b]
                if len(differ) != 1 or constant(new_values[differ[0]]) is UNKNOWN:
                    continue
                taken.add(index)
                position = differ[0]
                labels = names.split(",")
                label = labels[position] if position < len(labels) else f"value {position + 1}"
                facts.append(
                    Fact(
                        ("case", short, names, key[position]),
                        getattr(case, "lineno", None),
                        ASSERTIONS,
                        f"a case of {code(short)} changed its {code(label)} from "
                        f"{code(snippet(values[position]))} to "
                        f"{code(snippet(new_values[position]))}, and the code it tests did "
                        f"not change: {code(snippet(case))}",
                        short,
                    )
                )
                break
    return facts
