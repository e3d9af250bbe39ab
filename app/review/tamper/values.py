"""What an expression's value is without running it: literals, comparisons of them, and skip
conditions read with this machine's platform facts; UNKNOWN where it cannot be known here."""

from __future__ import annotations

import ast
import operator
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

from app.review.tamper.module import Module, dump

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


class Unknown:
    pass


UNKNOWN = Unknown()


def truth(node: ast.AST) -> bool | None:
    """Whether an expression is true (or false) whatever the code does; None: it depends."""
    value = constant(node)
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
        truths = [truth(v) for v in node.values]
        if isinstance(node.op, ast.Or):
            return True if True in truths else (False if all(t is False for t in truths) else None)
        return False if False in truths else (True if all(t is True for t in truths) else None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = truth(node.operand)
        return None if inner is None else not inner
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        same = dump(node.left) == dump(node.comparators[0])
        if same and isinstance(node.ops[0], ast.Eq | ast.Is | ast.LtE | ast.GtE):
            return True
        if same and isinstance(node.ops[0], ast.NotEq | ast.IsNot | ast.Lt | ast.Gt):
            return False
    return None


def constant(node: ast.AST) -> Any:
    """The value of an expression made of literals only (`1 == 1`, `-1`, `(1, 2)`)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Compare):
        values = [constant(node.left), *(constant(c) for c in node.comparators)]
        return _compare_chain(node.ops, values)
    if isinstance(node, ast.BoolOp):
        values = [constant(v) for v in node.values]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        result = values[0]
        for value in values[1:]:
            result = (result or value) if isinstance(node.op, ast.Or) else (result and value)
        return result
    if isinstance(node, ast.BinOp):
        left, right = constant(node.left), constant(node.right)
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
        result = safe_compare(op, left, right)
        if result is None:
            return UNKNOWN
        if not result:
            return False
    return True


def safe_compare(op: ast.cmpop, left: Any, right: Any) -> bool | None:
    try:
        return bool(_COMPARE[type(op)](left, right))
    except Exception:
        return None


def platform_value(module: Module, node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple):
        values = [platform_value(module, e) for e in node.elts]
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
            subject = platform_value(module, node.func.value)
            args = [platform_value(module, a) for a in node.args]
            if isinstance(subject, str) and all(isinstance(a, str | tuple) for a in args):
                return getattr(subject, node.func.attr)(*args)
        return UNKNOWN
    if isinstance(node, ast.Subscript):
        subject = platform_value(module, node.value)
        index = node.slice
        if isinstance(subject, tuple) and isinstance(index, ast.Slice):
            lower = platform_value(module, index.lower) if index.lower else None
            upper = platform_value(module, index.upper) if index.upper else None
            if lower is not UNKNOWN and upper is not UNKNOWN:
                return subject[lower:upper]
        elif isinstance(subject, tuple):
            position = platform_value(module, index)
            if isinstance(position, int) and -len(subject) <= position < len(subject):
                return subject[position]
        return UNKNOWN
    if isinstance(node, ast.Compare):
        values = [platform_value(module, node.left)]
        values += [platform_value(module, c) for c in node.comparators]
        return _compare_chain(node.ops, values)
    if isinstance(node, ast.BoolOp):
        values = [platform_value(module, v) for v in node.values]
        if any(v is UNKNOWN for v in values):
            return UNKNOWN
        if isinstance(node.op, ast.Or):
            return any(values)
        return all(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = platform_value(module, node.operand)
        return UNKNOWN if inner is UNKNOWN else not inner
    return UNKNOWN
