"""The layout's rules, checked: import contracts, kv namespace owners, who reads env or forks."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import app
from app.store import kv

ROOT = Path(__file__).resolve().parents[1]
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
