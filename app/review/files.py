"""Which files of a repository are its tests and its test infrastructure (pure).

The outcome checks move these between trees: the base's over the change's code (do the
tests that passed still pass?) and the change's over the base's code (do its new tests
fail without the fix?). Test material is moved whole: test modules, everything in a test
directory (helpers and fixture data too), and whatever decides how tests run (conftest
files, runner configuration, the files the test command itself reads).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

import pathspec

_PY_TEST = re.compile(r"^(test_.*|.*_test)\.py$")
_JS_TEST = re.compile(
    r"^(.*\.(test|spec)\.[cm]?[jt]sx?|.*[-_]test\.[cm]?[jt]s|test-.*\.[cm]?[jt]s|test\.[cm]?[jt]s)$"
)
_GO_TEST = re.compile(r"^.*_test\.go$")
TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs", "testdata"})

# What decides how tests are found and run, by file name anywhere in the tree.
_INFRA_NAMES = re.compile(
    r"""^(
        conftest.*\.py | pytest\.ini | setup\.cfg | tox\.ini | pyproject\.toml | noxfile\.py
      | sitecustomize\.py | usercustomize\.py
      | package\.json | \.mocharc\.\w+ | (jest|vitest|vite)\.config\.\w+ | vitest\.workspace\.\w+
      | jest\.setup\.\w+ | setupTests\.\w+ | babel\.config\.\w+ | \.babelrc(\.\w+)?
      | Cargo\.toml
    )$""",
    re.VERBOSE,
)
# Only at the top of the tree: Python reads `*.pth` from site directories, and `.cargo/`
# configures every cargo command run there.
_TOP_INFRA = re.compile(r"^([^/]+\.pth|\.cargo/config(\.toml)?)$")


@functools.lru_cache(maxsize=8192)
def is_test_file(path: str) -> bool:
    """Test code or data: a test module by its name, or anything inside a test directory."""
    pure = PurePosixPath(path)
    name = pure.name
    if _PY_TEST.match(name) or _JS_TEST.match(name) or _GO_TEST.match(name):
        return True
    return any(part in TEST_DIRS for part in pure.parts[:-1])


@functools.lru_cache(maxsize=8192)
def is_infrastructure(path: str) -> bool:
    """A file that decides how tests run (conftest, runner configuration)."""
    return bool(_INFRA_NAMES.match(PurePosixPath(path).name) or _TOP_INFRA.match(path))


class Material:
    """Tests and test infrastructure of one repository: the defaults, the repository's extra
    globs (`review: tests: files:`) and the files its test commands read."""

    def __init__(self, extra_globs: Iterable[str] = (), command_files: Iterable[str] = ()):
        self.extra_globs = tuple(extra_globs)
        self.command_files = frozenset(command_files)
        anchored = ["/" + g.lstrip("/") for g in self.extra_globs]
        self._extra = pathspec.GitIgnoreSpec.from_lines(anchored) if anchored else None

    def is_infrastructure(self, path: str) -> bool:
        if path in self.command_files or is_infrastructure(path):
            return True
        return self._extra is not None and self._extra.match_file(path)

    def covers(self, path: str) -> bool:
        """Moved with the tests: test code and data, or infrastructure."""
        return is_test_file(path) or self.is_infrastructure(path)

    def is_test(self, path: str) -> bool:
        """Test code or data, not infrastructure (what the fail-to-pass check runs)."""
        return is_test_file(path) and not self.is_infrastructure(path)


def is_python_test_module(path: str) -> bool:
    return bool(_PY_TEST.match(PurePosixPath(path).name))


def is_js_test_module(path: str) -> bool:
    name = PurePosixPath(path).name
    if _JS_TEST.match(name):
        return True
    pure = PurePosixPath(path)
    return pure.suffix in (".js", ".mjs", ".cjs") and "test" in pure.parts[:-1]


def is_go_test(path: str) -> bool:
    return bool(_GO_TEST.match(PurePosixPath(path).name))
