"""Both versions of one file, paired: which tests are new or renamed, whether the code they
import changed, and whom a finding reaches, in words; each check reads it."""

from __future__ import annotations

import ast
from pathlib import PurePosixPath

from app.review.tamper.module import Module, Owner
from app.review.tamper.project import Project, PythonFile
from app.untrusted import code


class Comparison:
    """Both versions of one file: the agent's (`new`) and the run's start (`old`; None when
    the file is new or the start did not parse)."""

    def __init__(
        self,
        file: PythonFile,
        new: Module,
        old: Module | None,
        project: Project,
        changed: frozenset[str] = frozenset(),
    ) -> None:
        self.file = file
        self.new = new
        self.old = old
        self.project = project
        self.path = file.path
        self.conftest = PurePosixPath(file.path).name == "conftest.py"
        self.is_test = file.is_test or self.conftest
        # A test is "new" when the start had no test of its name and lost none in the change
        # (else it may be one renamed); vacuous checks leave new tests to the outcome checks.
        old_tests = set(old.tests) if old else set()
        gone = [name for name in (old.tests if old else {}) if name not in new.tests]
        added = [name for name in new.tests if name not in old_tests]
        self.pairs = {name: name for name in new.tests if name in old_tests}
        if gone and len(gone) == len(added):
            self.pairs.update(zip(added, gone, strict=True))  # renamed, in order
            added = []
        self.new_tests = set(added)
        # Only where the code the file's tests import did not change is a rewritten expected
        # value the tests' doing (where it did, the outcome checks judge the new value).
        self.code_changed = _imports_changed(new, project, changed)

    def tests_of(self, module: Module, owner: Owner) -> list[str]:
        """The tests a module-level or class-level finding reaches, by name."""
        if owner.kind == "module":
            return [name.rsplit(".", 1)[-1] for name in module.tests]
        if owner.kind == "class":
            prefix = owner.name + "."
            return [name.rsplit(".", 1)[-1] for name in module.tests if name.startswith(prefix)]
        return []

    def where(self) -> str:
        if self.conftest:
            return "conftest.py"
        return "this test file" if self.file.is_test else "this module"

    def tests_here(self) -> str:
        """Which tests a conftest reaches: the test files in its directory and below."""
        directory = str(PurePosixPath(self.path).parent).removeprefix(".")
        files = self.project.tests_under(directory)
        if len(files) == 1:
            return f"every test in {code(files[0])}"
        if files:
            return f"every test in the {len(files)} test files under {code(directory or '.')}"
        return "every test in this directory and below"


def _imports_changed(module: Module, project: Project, changed: frozenset[str]) -> bool:
    """Whether the change touched the project's code this file imports (any of the project's
    code when it imports none of it, as tests that run a command line do)."""
    imported: set[str] = set()
    for node in module.nodes(ast.Import, ast.ImportFrom):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = module.from_module(node)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            found = project.code_under_test(name) if name else None
            if found is not None:
                imported.add(found.split(".")[0])
    if not imported:
        return bool(changed)
    return any(name.split(".")[0] in imported for name in changed)
