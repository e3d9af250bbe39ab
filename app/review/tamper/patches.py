"""The code under test replaced by the tests themselves: monkeypatch, mock.patch, setattr,
assignments to a module's attributes or to `sys.modules`."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator

from app.review.tamper.assertions import is_assertion, own_nodes
from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import PATCH, Fact
from app.review.tamper.module import Function, Module, method_name, snippet, string
from app.untrusted import code


def patches(c: Comparison, module: Module) -> Iterator[Fact]:
    asserted = {name: _asserted_names(test) for name, test in module.tests.items()}
    anywhere = set().union(*asserted.values()) if asserted else set()
    for node, target in _patch_targets(module):
        project_module = c.project.code_under_test(target)
        if project_module is None:
            continue
        rest = target[len(project_module) + 1 :]
        first = rest.split(".")[0] if rest else None
        if first in sys.stdlib_module_names:
            continue  # `mirror.asyncio.sleep`: the standard library's, seen through a module
        owner = module.owner(node)
        in_function = owner.kind in ("test", "fixture", "function")
        if not c.conftest and first is not None:
            # In a test file, replacing a collaborator (`isatty`, a flag, a method spied
            # on) is a test double; replacing what the test's assertions then call is not.
            checked = asserted.get(owner.name, set()) if owner.kind == "test" else anywhere
            if first not in checked:
                continue
        if c.conftest:
            who = f"conftest.py replaces {code(target)}, the code under test, for "
            message = f"{who}{c.tests_here()}, with {code(snippet(node))}"
        elif in_function:
            message = (
                f"{owner.who()} {owner.does('replaces')} {code(target)}, the code under "
                f"test, with {code(snippet(node))}"
            )
        else:
            message = (
                f"this test file replaces {code(target)}, the code under test, for "
                f"{owner.who()} as it is imported, with {code(snippet(node))}"
            )
        yield Fact(
            ("patch", owner.name, target),
            getattr(node, "lineno", None),
            PATCH,
            message,
            owner.short if owner.kind == "test" else None,
        )


def _asserted_names(function: Function) -> set[str]:
    """The names and attributes a test's assertions use (`add` in `assert add(2, 3) == 5`)."""
    names: set[str] = set()
    for node in own_nodes(function):
        if is_assertion(node):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Name):
                    names.add(inner.id)
                elif isinstance(inner, ast.Attribute):
                    names.add(inner.attr)
    return names


def _patch_targets(module: Module) -> Iterator[tuple[ast.AST, str]]:
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


def _assigned(module: Module, target: ast.AST) -> str | None:
    """`calc.add = ...`, `sys.modules["calc"] = ...`, `vars(calc)["add"] = ...`."""
    if isinstance(target, ast.Attribute) and module.root_imported(target.value):
        base = module.resolve(target.value)
        return f"{base}.{target.attr}" if base else None
    if isinstance(target, ast.Subscript):
        key = string(target.slice)
        if key and module.resolve(target.value) == "sys.modules":
            return key
        holder = _namespace_of(module, target.value)
        if key and holder:
            return f"{holder}.{key}"
    return None


def _namespace_of(module: Module, node: ast.AST) -> str | None:
    """`vars(calc)` or `calc.__dict__`: the module whose namespace it is."""
    if (
        isinstance(node, ast.Call)
        and module.resolve(node.func) == "vars"
        and len(node.args) == 1
        and module.root_imported(node.args[0])
    ):
        return module.resolve(node.args[0])
    if (
        isinstance(node, ast.Attribute)
        and node.attr == "__dict__"
        and module.root_imported(node.value)
    ):
        return module.resolve(node.value)
    return None


def _call_patches(module: Module, call: ast.Call) -> Iterator[str]:
    """monkeypatch.setattr/delattr/setitem, mock.patch and its forms, setattr()."""
    name = method_name(call)
    args = call.args
    func = call.func
    patcher = isinstance(func, ast.Attribute) and (
        (module.resolve(func.value) or "").endswith("patch")
        or (isinstance(func.value, ast.Attribute) and func.value.attr == "patch")
        or (isinstance(func.value, ast.Name) and func.value.id == "patch")
    )
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if name in ("setattr", "delattr") and args:
        text = string(args[0])
        if text and "." in text and (len(args) == (2 if name == "setattr" else 1)):
            yield text  # monkeypatch.setattr("calc.add", fake)
        elif (
            len(args) >= 2
            and (attribute := string(args[1]))
            and module.root_imported(args[0])
            and (base := module.resolve(args[0]))
        ):
            yield f"{base}.{attribute}"
    elif name == "setitem" and len(args) >= 2 and (key := string(args[1])):
        if module.resolve(args[0]) == "sys.modules":
            yield key
        elif holder := _namespace_of(module, args[0]):
            yield f"{holder}.{key}"
    elif name == "object" and patcher and len(args) >= 2 and (attribute := string(args[1])):
        if module.root_imported(args[0]) and (base := module.resolve(args[0])):
            yield f"{base}.{attribute}"
    elif name == "multiple" and patcher and args:
        base = string(args[0]) or (
            module.resolve(args[0]) if module.root_imported(args[0]) else None
        )
        for keyword in call.keywords:
            if base and keyword.arg:
                yield f"{base}.{keyword.arg}"
    elif name == "dict" and patcher and args:
        if string(args[0]) == "sys.modules" or module.resolve(args[0]) == "sys.modules":
            values = args[1] if len(args) > 1 else None
            if isinstance(values, ast.Dict):
                yield from (key for k in values.keys if (key := string(k)))
    elif name == "patch" or (module.resolve(func) or "").endswith("mock.patch"):
        target = string(args[0]) if args else string(keywords.get("target"))
        if target:
            yield target
