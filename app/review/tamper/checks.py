"""The parse checks over changed files: each file's two versions parsed and compared, every
concern's facts matched between them, what the change brought returned as findings."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence

from app.review.tamper.assertions import vacuous
from app.review.tamper.comparison import Comparison
from app.review.tamper.exits import exits
from app.review.tamper.expectations import changed_expectations
from app.review.tamper.findings import UNREADABLE, Fact, Found, new_facts, under_old_name
from app.review.tamper.hooks import hooks
from app.review.tamper.markers import collection, skips
from app.review.tamper.module import Module
from app.review.tamper.patches import patches
from app.review.tamper.project import Project, PythonFile


def check_python(files: Sequence[PythonFile], project: Project) -> list[Found]:
    """Every finding of the parse checks over the changed Python files, in file and line order."""
    changed = frozenset(
        module
        for file in files
        if not file.is_test
        and _code_changed(file.before, file.after)
        and (module := project.module_of(file.path)) is not None
    )
    found: list[Found] = []
    for file in files:
        found.extend(check_file(file, project, changed))
    return sorted(set(found), key=lambda f: (f.path, f.line or 0, f.kind, f.message))


def _code_changed(before: str | None, after: str | None) -> bool:
    """The module's code changed, not only its comments or layout (a touched comment does not
    make a rewritten expected value the code's doing)."""
    if before is None or after is None:
        return before != after
    try:
        return ast.dump(ast.parse(before)) != ast.dump(ast.parse(after))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return before != after


def check_file(
    file: PythonFile, project: Project, changed: frozenset[str] = frozenset()
) -> list[Found]:
    """The findings of one file; `changed`: the project modules (not tests) the change touched."""
    if file.after is None:
        if file.unread and file.is_test:
            return [
                Found(
                    file.path,
                    None,
                    UNREADABLE,
                    f"is {file.unread}, which Honk does not read: what it does to the tests "
                    "was not checked",
                )
            ]
        return []  # deleted: the checks of the diff say so
    try:
        new = Module(file.path, file.after, project)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        line = getattr(error, "lineno", None)
        why = getattr(error, "msg", None) or type(error).__name__
        return [
            Found(
                file.path,
                line if isinstance(line, int) else None,
                UNREADABLE,
                f"could not be read as Python ({why}), so what it does to the tests was not "
                "checked",
            )
        ]
    old: Module | None = None
    if file.before is not None:
        try:
            old = Module(file.path, file.before, project)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            old = None  # the start did not parse: everything in the new version is new
    try:
        return compare(Comparison(file, new, old, project, changed))
    except RecursionError:  # nesting deeper than Python's own tools go: said, never passed
        return [
            Found(
                file.path,
                None,
                UNREADABLE,
                "is nested too deeply to read, so what it does to the tests was not checked",
            )
        ]


# What each version of a file is read for; a fact of the agent's version that the start's had
# too is the repository's, not the change's. Other modules' code is read for skips only.
Extract = Callable[[Comparison, Module], Iterable[Fact]]
EVERY_FILE: tuple[Extract, ...] = (skips,)
TEST_FILES: tuple[Extract, ...] = (skips, collection, patches, exits, vacuous)


def compare(c: Comparison) -> list[Found]:
    """What the change brought to one file: new facts of each concern, hooks, expectations."""
    facts: list[Fact] = []
    renamed = {new: old for new, old in c.pairs.items() if new != old}
    for extract in TEST_FILES if c.is_test else EVERY_FILE:
        # A renamed test's facts are matched under its old name.
        after = [under_old_name(fact, renamed) for fact in extract(c, c.new)]
        before = list(extract(c, c.old)) if c.old is not None else []
        facts += new_facts(after, before)
    if c.is_test:
        facts += hooks(c)
        facts += changed_expectations(c)
    return [Found(c.path, f.line, f.kind, f.message, f.test) for f in facts]
