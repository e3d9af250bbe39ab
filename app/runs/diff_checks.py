"""The review's deterministic checks: what a diff does to the tests, CI and secrets (no model).

They read the unified diff of the run's change (`Checkout.unified_diff`, parsed by `unidiff`)
and, for Python, the changed test files and conftests whole on both sides, parsed
(`app/review/tamper/`: what a line cannot say, such as which `mark` a decorator is). They
cannot be talked out of a finding: each names the file and line and says it in words.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchedFile, PatchSet

from app.repo_config import globs_match
from app.review import tamper
from app.runs import build_files as build
from app.runs import tests_in_diffs as syntax
from app.runs.build_files import TEST_CONFIG
from app.untrusted import code
from app.workspace.changes import ChangedText
from app.workspace.checkout import Checkout

TEST_DELETED, TEST_REMOVED, SECRET = "test-deleted", "test-removed", "secret"
# The same words for the same things, whichever check finds them.
ASSERTIONS, MARKER, PATCH, EXIT = tamper.ASSERTIONS, tamper.MARKER, tamper.PATCH, tamper.EXIT
UNREADABLE = tamper.UNREADABLE
# Which check made a finding (the run page says which caught what).
DIFF_CHECK, PARSE_CHECK = "diff", tamper.CHECK
# The largest Python file the parse checks read; a larger changed test file is a finding.
MAX_PYTHON_BYTES = 2_000_000


@dataclass(frozen=True, order=True)
class Finding:
    """One thing the diff does to the tests or the build, with where it is."""

    path: str
    line: int | None  # in the new file; in the old one when `before` (a removed line)
    kind: str
    message: str  # plain words, e.g. "`test_add` was skipped with `@pytest.mark.skip`"
    before: bool = False
    check: str = DIFF_CHECK  # which check found it: the diff's lines, or the parsed files

    def describe(self) -> str:
        """In plain words; the file's name (the agent's to choose) as a code span of its own."""
        if self.line is None:
            where = code(self.path)
        else:
            where = f"{code(self.path)} line {self.line}" + (
                " (before the change)" if self.before else ""
            )
        return f"{where}: {self.message}"


@dataclass
class DiffFacts:
    """What the checks need to know across files (tests moved between files are not gone)."""

    removed: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    added: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    asserts: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    first_assert: dict[tuple[str, str | None], tuple[int, bool]] = field(default_factory=dict)

    def added_anywhere(self, name: str) -> bool:
        return any(name in names for names in self.added.values())


@dataclass(frozen=True)
class Change:
    """What the checks read of a run's change: its diff, and the changed Python files whole."""

    diff: str
    python: tuple[tamper.PythonFile, ...] = ()
    project: tamper.Project = field(default_factory=tamper.Project)


async def read_change(checkout: Checkout, *, max_bytes: int = MAX_PYTHON_BYTES) -> Change:
    """The change as the checks read it: the diff, both sides of each changed Python file
    (of at most `max_bytes`), and the repository's own modules (what a test may not replace)."""
    diff = await checkout.unified_diff()
    changed = await checkout.changed_texts(_is_python, max_bytes=max_bytes)
    # The repository's files as the commit would hold them: the start's, with the change's.
    paths = set(await checkout.start_paths())
    for text in changed:
        paths.discard(text.old_path)
        if text.after is not None or text.unread:
            paths.add(text.path)
    python = tuple(python_file(text) for text in changed if _is_python(text.path))
    return Change(diff, python, tamper.Project.from_paths(paths, syntax.is_test_file))


def _is_python(path: str) -> bool:
    return syntax.suffix(path) in syntax.PY


def python_file(text: ChangedText) -> tamper.PythonFile:
    return tamper.PythonFile(
        text.path, text.before, text.after, syntax.is_test_file(text.path), text.unread
    )


def check_change(change: Change, *, request: str = "", allow: Sequence[str] = ()) -> list[Finding]:
    """Every finding of the deterministic checks, the diff's and the parsed files', in file
    and line order; where both say the same of one line, the parsed one is kept."""
    findings = check_diff(change.diff, request=request, allow=allow)
    parsed = [
        Finding(f.path, f.line, f.kind, f.message, check=PARSE_CHECK)
        for f in tamper.check_python(change.python, change.project)
    ]
    return sorted([*findings, *parsed], key=lambda f: (f.path, f.line or 0, f.kind, f.message))


def parse_diff(diff: str) -> PatchSet:
    """The diff as unidiff's PatchSet; a diff it cannot read is an error, never no findings."""
    try:
        return PatchSet(diff)
    except UnidiffParseError as exc:
        raise ValueError(f"the change's diff could not be read: {exc}") from None


def check_diff(diff: str, *, request: str = "", allow: Sequence[str] = ()) -> list[Finding]:
    """The findings of the diff's lines alone, in file and line order (Python's skips, hooks
    and weakened assertions are the parse checks': `check_change`)."""
    findings: set[Finding] = set()
    facts = DiffFacts()
    for patched in parse_diff(diff):
        findings.update(_path_findings(patched, request, allow))
        if not patched.is_binary_file:
            findings.update(_file_findings(patched, facts, allow))
    findings.update(_removed_tests(facts))
    findings.update(_fewer_assertions(facts))
    return sorted(findings, key=lambda f: (f.path, f.line or 0, f.kind, f.message))


def source_path(patched: PatchedFile) -> str:
    return unquote_path(patched.source_file).removeprefix("a/")


def target_path(patched: PatchedFile) -> str:
    return unquote_path(patched.target_file).removeprefix("b/")


def unquote_path(name: str) -> str:
    """A name as git writes it in a diff: C-quoted when unusual ("a/t\\303\\251st.py"), a tab
    after one with spaces."""
    name = name.strip()
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def _allowed(path: str, allow: Sequence[str]) -> bool:
    """`review: allow:` globs, read as `paths:` reads them (CODEOWNERS' reading, `path_glob`)."""
    return globs_match(tuple(allow), path)


def _path_findings(patched: PatchedFile, request: str, allow: Sequence[str]) -> Iterable[Finding]:
    """Deleted or renamed-away tests; CI, lock and vendored files the request did not ask for."""
    old, new = source_path(patched), target_path(patched)
    if patched.is_removed_file and syntax.is_test_file(old):
        yield Finding(old, None, TEST_DELETED, "the test file was deleted")
    elif patched.is_rename and syntax.is_test_file(old) and not syntax.is_test_file(new):
        yield Finding(
            old,
            None,
            TEST_DELETED,
            f"the test file was renamed to `{new}`, where no test runner looks",
        )
    path = old if patched.is_removed_file else new
    kind = build.kind_of_path(path) or (build.kind_of_path(old) if patched.is_rename else None)
    if kind is None or _allowed(path, allow) or build.asked_for(kind, path, request):
        return
    line = None if patched.is_removed_file else _first_changed_line(patched)
    how = "deleted" if patched.is_removed_file else "added" if patched.is_added_file else "changed"
    yield Finding(
        path, line, kind, f"{build.WHAT[kind]} was {how}, which the request did not ask for"
    )


def _first_changed_line(patched: PatchedFile) -> int | None:
    for hunk in patched:
        for line in hunk:
            if line.is_added:
                return line.target_line_no
            if line.is_removed:
                return line.source_line_no
    return None


@dataclass
class _Walk:
    """One hunk read line by line on both sides: which test each line is in."""

    path: str
    old_test: str | None = None
    new_test: str | None = None
    old_indent: int = 0
    new_indent: int = 0
    annotated_old: bool = False
    annotated_new: bool = False

    def see(self, text: str, *, old: bool, new: bool) -> str | None:
        """Follow a line on the sides it is on; the test it defines, if any."""
        name = None
        for side in ("old", "new") if old and new else ("old",) if old else ("new",):
            annotated = getattr(self, f"annotated_{side}")
            found = syntax.test_definition(self.path, text, after_annotation=annotated)
            setattr(self, f"annotated_{side}", syntax.is_test_annotation(self.path, text))
            if found:
                setattr(self, f"{side}_test", found)
                setattr(self, f"{side}_indent", syntax.indent_of(text))
                name = found
            elif syntax.suffix(self.path) in syntax.PY and syntax.ends_python_test(
                text, getattr(self, f"{side}_indent")
            ):
                setattr(self, f"{side}_test", None)
        return name


def _file_findings(patched: PatchedFile, facts: DiffFacts, allow: Sequence[str]) -> list[Finding]:
    old_path, path = source_path(patched), target_path(patched)
    is_test = syntax.is_test_file(path) or syntax.is_test_file(old_path)
    markers = syntax.markers_for(path)
    findings: list[Finding] = []
    config_allowed = _allowed(path, allow)
    for hunk in patched:
        walk = _Walk(path)
        header_test = syntax.test_definition(path, hunk.section_header or "")
        walk.old_test = walk.new_test = header_test
        lines = list(hunk)
        removed_asserts: list[str] = []
        # A changed setting shows as a removed and an added line: the added one says it.
        config_before: list[Finding] = []
        config_after: list[Finding] = []
        for index, line in enumerate(lines):
            text = line.value.rstrip("\n")
            defined = walk.see(text, old=not line.is_added, new=not line.is_removed)
            if line.is_context:
                removed_asserts = []
                continue
            if line.is_removed:
                old_number = line.source_line_no
                assert old_number is not None  # unidiff numbers a removed line in the old file
                if is_test and defined and not patched.is_removed_file:
                    facts.removed[path].append((defined, old_number))
                if is_test and syntax.is_assertion(path, text) and not patched.is_removed_file:
                    _count(facts, path, walk.old_test, -1, old_number, before=True)
                    removed_asserts.append(text)
                config_before += _config_lines(path, text, old_number, config_allowed, True)
                continue
            if not line.is_added:
                continue  # "\\ No newline at end of file" (a symbolic link's diff has one)
            number = line.target_line_no
            assert number is not None  # and an added one in the new file
            if is_test and defined:
                facts.added[path].add(defined)
            config_after += _config_lines(path, text, number, config_allowed, False)
            findings.extend(_secrets(path, text, number))
            if defined:
                test: str | None = defined
            elif text.lstrip().startswith(("@", "#[")):
                test = _next_test(path, lines[index + 1 :])
            else:
                test = walk.new_test
            for marker in markers:
                match = marker.pattern.search(text)
                if match and (is_test or not marker.test_files_only):
                    message = marker.describe(test, match.group(0))
                    findings.append(Finding(path, number, MARKER, message))
            if is_test and syntax.is_assertion(path, text):
                _count(facts, path, walk.new_test, +1, number, before=False)
                new_test = walk.new_test in facts.added[path]
                if syntax.suffix(path) not in syntax.PY:  # Python's: the parse checks
                    findings.extend(
                        _weakened(path, number, walk.new_test, text, removed_asserts, new_test)
                    )
        findings += config_after or config_before
    return findings


def _next_test(path: str, following: Sequence[object]) -> str | None:
    """The test a decorator or annotation on an added line belongs to: the next definition."""
    for line in following[:6]:
        text = getattr(line, "value", "").rstrip("\n")
        if getattr(line, "is_removed", False):
            continue
        found = syntax.test_definition(path, text, after_annotation=True)
        if found:
            return found
    return None


def _count(
    facts: DiffFacts, path: str, test: str | None, delta: int, number: int, *, before: bool
) -> None:
    key = (path, test)
    facts.asserts[key] += delta
    if delta < 0 and key not in facts.first_assert:
        facts.first_assert[key] = (number, before)


def _weakened(
    path: str, number: int, test: str | None, text: str, removed: list[str], new_test: bool
) -> list[Finding]:
    """An assertion that passes whatever the code does, or an exact check made loose."""
    what = f"in `{test}`" if test else "in a test"
    # A new test's `assert 1 == 1` weakens nothing that was there.
    if syntax.always_true(text) and (removed or not new_test):
        return [
            Finding(
                path,
                number,
                ASSERTIONS,
                f"an assertion that always passes was added {what}: `{text.strip()[:120]}`",
            )
        ]
    if removed:
        before = removed.pop(0)
        if syntax.looser(before, text):
            return [
                Finding(
                    path,
                    number,
                    ASSERTIONS,
                    f"an assertion {what} was weakened: `{before.strip()[:120]}` "
                    f"became `{text.strip()[:120]}`",
                )
            ]
    return []


def _config_lines(
    path: str, text: str, number: int | None, allowed: bool, removed: bool
) -> list[Finding]:
    message = None if allowed else build.config_change(path, text, removed=removed)
    return [Finding(path, number, TEST_CONFIG, message, removed)] if message else []


def _secrets(path: str, text: str, number: int | None) -> list[Finding]:
    return [
        Finding(path, number, SECRET, f"a token-shaped secret (`{shape[:6]}…`) was added")
        for shape in build.secret_shapes(text)
    ]


def _removed_tests(facts: DiffFacts) -> Iterable[Finding]:
    """Tests whose definition went and came back nowhere (renames keep their count)."""
    for path, removed in facts.removed.items():
        gone = [(name, line) for name, line in removed if not facts.added_anywhere(name)]
        renamed = {name for name in facts.added[path] if name not in {n for n, _ in removed}}
        if len(gone) <= len(renamed):
            continue
        for name, line in gone:
            yield Finding(path, line, TEST_REMOVED, f"the test `{name}` was removed", before=True)


def _fewer_assertions(facts: DiffFacts) -> Iterable[Finding]:
    """A test that stays (where it was, or moved to another file) but asserts less."""
    moved: dict[tuple[str, str | None], tuple[str, str | None]] = {}
    gone: set[tuple[str, str | None]] = set()
    for path, removed in facts.removed.items():
        for name, _line in removed:
            elsewhere = [p for p, names in facts.added.items() if name in names and p != path]
            if elsewhere:
                moved[(path, name)] = (elsewhere[0], name)
            elif name not in facts.added[path]:
                gone.add((path, name))
    totals: Counter[tuple[str, str | None]] = Counter()
    first: dict[tuple[str, str | None], tuple[str, int, bool]] = {}
    for key, delta in facts.asserts.items():
        if key in gone:
            continue  # the whole test went: its own finding says so
        now = moved.get(key, key)
        totals[now] += delta
        if key in facts.first_assert:
            first.setdefault(now, (key[0], *facts.first_assert[key]))
    for (_path, test), delta in totals.items():
        if delta >= 0 or (_path, test) not in first:
            continue
        path, number, before = first[(_path, test)]
        what = f"`{test}`" if test else "the tests"
        noun = "assertion" if delta == -1 else "assertions"
        yield Finding(
            path, number, ASSERTIONS, f"{-delta} {noun} removed from {what}, which stays", before
        )
