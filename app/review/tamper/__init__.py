"""Parse, don't grep: Python test files and conftests read with `ast`, the run's start beside
the agent's version, for what the change does to the tests.

The checks of the diff (runs/diff_checks.py) read lines, and a line does not say that `mark`
is pytest's, that `skip` was bound to `pytest.skip` three lines up, or that a hook was bound by
assignment. These checks read each changed module whole on both sides, resolve names through
its imports and assignments (`from pytest import mark as m`, `getattr(pytest, "skip")`,
`importlib.import_module("os")`), and report only what the change brought: what was there at
the start is the repository's, not the agent's. Each finding names the file, the line and the
test, in plain words. The outcome checks (running the tests) are the gate; these say why.

A package of its own below runs/: it imports nothing of Honk but `app.untrusted` and `app.log`.
Its modules: `project` (what is read: the files, the repository's modules), `module` (one
version parsed: names resolved, tests, whom a node is about), `values` (what an expression is
without running it), `comparison` (both versions paired), one module per concern (`markers`,
`hooks`, `patches`, `exits`, `assertions`, `expectations`), `findings` (what is said, and the
facts matched between versions) and `checks` (the whole, file by file). This package's names
are its callers' interface.
"""

from app.review.tamper.checks import check_file, check_python
from app.review.tamper.findings import (
    ASSERTIONS,
    CHECK,
    EXIT,
    MARKER,
    PATCH,
    TEST_CONFIG,
    UNREADABLE,
    Found,
)
from app.review.tamper.project import Project, PythonFile

__all__ = [
    "ASSERTIONS",
    "CHECK",
    "EXIT",
    "MARKER",
    "PATCH",
    "TEST_CONFIG",
    "UNREADABLE",
    "Found",
    "Project",
    "PythonFile",
    "check_file",
    "check_python",
]
