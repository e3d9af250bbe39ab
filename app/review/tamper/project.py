"""What the parse checks read: a changed Python file on both sides, and the repository's own
modules (what a test may not replace) and test files."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True)
class PythonFile:
    """One changed Python file: its text at the run's start and as the agent left it."""

    path: str  # where it is now (where it was, when deleted)
    before: str | None  # None: not there at the start
    after: str | None  # None: deleted, or not readable (`unread` says why)
    is_test: bool  # a test module or conftest.py: every check; other modules: skips only
    unread: str = ""  # why `after` is missing though the file is there ("a symbolic link")


# Where Python projects keep importable code, besides the top of the repository.
_ROOTS = ("src/", "lib/", "python/", "")


@dataclass(frozen=True)
class Project:
    """The repository's own Python modules (what a test may not replace) and its test files."""

    modules: dict[str, bool] = field(default_factory=dict)  # dotted name -> is test code
    test_files: tuple[str, ...] = ()

    @classmethod
    def from_paths(cls, paths: Iterable[str], is_test: Callable[[str], bool]) -> Project:
        modules: dict[str, bool] = {}
        tests = []
        for path in paths:
            if not path.endswith(".py"):
                continue
            test = is_test(path)
            name = PurePosixPath(path).name
            if test and (name.startswith("test_") or name.endswith("_test.py")):
                tests.append(path)  # what pytest collects by default (helpers are test code)
            for root in _ROOTS:
                if not path.startswith(root):
                    continue
                parts = _module_parts(path[len(root) :])
                if parts is None:
                    continue
                for depth in range(1, len(parts)):  # its packages
                    package = "/".join(parts[:depth])
                    modules.setdefault(".".join(parts[:depth]), is_test(f"{package}/__init__.py"))
                if parts:
                    modules[".".join(parts)] = test
        return cls(modules, tuple(sorted(tests)))

    def module_of(self, path: str) -> str | None:
        """The dotted name `path` is imported by (under the first root that fits)."""
        for root in _ROOTS:
            if path.startswith(root):
                parts = _module_parts(path[len(root) :])
                if parts and ".".join(parts) in self.modules:
                    return ".".join(parts)
        parts = _module_parts(path)
        return ".".join(parts) if parts else None

    def code_under_test(self, dotted: str) -> str | None:
        """The project module `dotted` is in (its longest known prefix), unless that module is
        test code (a test double the tests own) or not the repository's at all."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            name = ".".join(parts[:end])
            if name in self.modules:
                return None if self.modules[name] else name
        return None

    def tests_under(self, directory: str) -> list[str]:
        prefix = f"{directory}/" if directory else ""
        return [path for path in self.test_files if path.startswith(prefix)]


def _module_parts(relative: str) -> list[str] | None:
    parts = relative.removesuffix(".py").split("/")
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return parts if all(part.isidentifier() for part in parts) else None
