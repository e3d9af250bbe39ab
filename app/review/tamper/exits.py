"""The test process ended before pytest reports: `os._exit`, `sys.exit`, `raise SystemExit`
and their kin at a conftest's or test file's top."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from app.review.tamper.comparison import Comparison
from app.review.tamper.findings import EXIT, Fact
from app.review.tamper.module import Module, snippet
from app.untrusted import code

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


def exits(c: Comparison, module: Module) -> Iterator[Fact]:
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
        if not c.conftest and owner.kind not in ("module", "class"):
            continue  # a test may check that code exits (inside pytest.raises)
        if (owner.name, dotted) in seen:
            continue
        seen.add((owner.name, dotted))
        shown = node if isinstance(node, ast.Raise) else _call_of(module, node)
        spelling = snippet(shown)
        if c.conftest:
            message = (
                f"conftest.py ends the test process with {code(spelling)}: pytest never "
                f"reports how {c.tests_here()} went, and the exit status is this call's"
            )
        else:
            message = (
                f"this test file ends the test process with {code(spelling)} as it is "
                "imported: pytest never reports how its tests went"
            )
        yield Fact(("exit", owner.name, dotted), getattr(node, "lineno", None), EXIT, message)


def _call_of(module: Module, node: ast.AST) -> ast.AST:
    parent = module.parents.get(node)
    return parent if isinstance(parent, ast.Call) and parent.func is node else node
