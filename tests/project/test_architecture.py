"""The layout's rules, checked: import contracts, kv namespace owners, who reads env or forks."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import app
from app.store import kv

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
KV_CALLS = re.compile(r"\.kv\.(get|put|put_if_absent|delete|prune)\(")
SUBPROCESS = re.compile(r"create_subprocess_(exec|shell)|\bsubprocess\.(run|Popen|call|check_)")
ENVIRON = re.compile(r"os\.environ|os\.getenv|getenv\(")


LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filenames=tuple(sys.argv[1:]), no_cache=True, no_logo=True))"
)


def lint_imports(*config: str) -> subprocess.CompletedProcess[str]:
    """import-linter's own check, in a process of its own (it imports nothing of Honk)."""
    command = [sys.executable, "-c", LINT, *config]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def app_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for path in APP.rglob("*.py")
        if "migrations" not in path.parts
    }


def test_the_import_contracts_hold() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The checker is not vacuous: a contract the code breaks fails it."""
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "app"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "the store below plain data (false: it uses models)"\n'
        'type = "layers"\nlayers = ["app.models", "app.store"]\n'
    )
    result = lint_imports(str(config))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "app.store" in result.stdout


def import_graph(package: Path) -> dict[str, set[str]]:
    """Which of the package's modules each module imports, read from the source with `ast`.

    Every import statement counts wherever it stands: at the top, in a function, and under
    `if TYPE_CHECKING:` (a circle only the type checker follows is still one a reader has to
    hold). `from a.b import c` is an import of `a.b.c` when that is a module, else of `a.b`;
    relative imports are resolved. Importing a module's package (`__init__`) is not implied.
    """
    top = package.parent

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(top).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    files = {name_of(p): p for p in package.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `app.x.Name` -> `app.x`
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles: its strongly connected components of more than one module
    (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_module_of_app_imports_itself_through_others() -> None:
    """No circle of imports anywhere in app/, counting those under `if TYPE_CHECKING:`."""
    graph = import_graph(APP)
    assert graph["app.runs.pipeline"] >= {"app.runs.context", "app.runs.review"}  # it reads
    assert import_cycles(graph) == []


def test_an_import_circle_is_reported(tmp_path: Path) -> None:
    """The check is not vacuous: a circle through a TYPE_CHECKING import and a relative one."""
    package = tmp_path / "pkg"
    (package / "runs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "runs" / "__init__.py").write_text("")
    (package / "runs" / "context.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.runs.review import R\n"
    )
    (package / "runs" / "review.py").write_text("from . import subject\n")
    (package / "runs" / "subject.py").write_text("from pkg.runs.context import C\n")
    (package / "alone.py").write_text("import pkg.runs.review\n")
    graph = import_graph(package)
    assert graph["pkg.runs.review"] == {"pkg.runs.subject"}
    assert import_cycles(graph) == [["pkg.runs.context", "pkg.runs.review", "pkg.runs.subject"]]


def test_every_kv_namespace_has_one_owner_and_only_owners_build_keys() -> None:
    for module in pkgutil.walk_packages(app.__path__, "app."):
        if ".migrations" not in module.name and module.name != "app.__main__":
            importlib.import_module(module.name)
    declared = kv.declared()
    # The namespaces Honk keeps, each declared by the one module that owns it.
    assert len(declared) >= 12
    assert all(owner.startswith("app.") for owner in declared.values())
    callers = [
        name
        for name, text in app_sources().items()
        if KV_CALLS.search(text) and not name.startswith("app/store/")
    ]
    assert callers == [], f"kv keys built outside their owner: {callers}"


def test_only_the_workspace_starts_processes_and_only_config_reads_the_environment() -> None:
    sources = app_sources()
    forks = [n for n, t in sources.items() if SUBPROCESS.search(t)]
    assert forks and all(n.startswith("app/workspace/") for n in forks), forks
    readers = sorted(n for n, t in sources.items() if ENVIRON.search(t))
    # git inherits PATH and the proxy variables: the one reading outside the settings.
    assert readers == ["app/config/settings.py", "app/workspace/git.py"], readers
