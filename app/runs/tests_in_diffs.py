"""What tests look like in each language: test files, test definitions, assertions, skip markers.

Patterns over single lines of a diff, nothing more: the review's deterministic checks need to
recognise what a line does to the tests, not to parse the language.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

PY = frozenset({".py"})
JS = frozenset({".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".mts", ".cts"})
GO = frozenset({".go"})
JVM = frozenset({".java", ".kt", ".kts", ".scala", ".groovy"})
RB = frozenset({".rb"})
RS = frozenset({".rs"})
PHP = frozenset({".php"})
CODE = PY | JS | GO | JVM | RB | RS | PHP

_TEST_NAME = re.compile(
    r"""^(
        test_.*\.py | .*_test\.py | conftest\.py
      | .*\.(test|spec)\.[cm]?[jt]sx? | .*\.(test|spec)\.[cm][jt]s
      | .*_test\.go
      | .*(Test|Tests|IT|Spec)\.(java|kt|scala|groovy)
      | .*_(spec|test)\.rb
      | .*Test\.php
    )$""",
    re.VERBOSE,
)
_TEST_DIRS = frozenset({"test", "tests", "__tests__", "spec", "specs", "testing"})


@functools.lru_cache(maxsize=4096)
def suffix(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


@functools.lru_cache(maxsize=4096)
def is_test_file(path: str) -> bool:
    """A test module by its name, or code inside a test directory (src/test/, tests/, spec/)."""
    pure = PurePosixPath(path)
    if _TEST_NAME.match(pure.name):
        return True
    return pure.suffix.lower() in CODE and any(part in _TEST_DIRS for part in pure.parts[:-1])


@dataclass(frozen=True)
class Marker:
    """A skip, xfail, focus or to-do marker: its pattern and what it does, in words."""

    pattern: re.Pattern[str]
    does: str  # "was skipped", "was focused", ...
    test_files_only: bool = False  # the pattern is too plain to trust outside test files
    then: str = ""  # what follows from it, when that is not plain from `does`

    def describe(self, test: str | None, match: str) -> str:
        label = match.strip()
        if label.endswith("("):
            label = label[:-1].rstrip() + "()"
        return f"{f'`{test}`' if test else 'a test'} {self.does} with `{label}`{self.then}"


def _m(pattern: str, does: str, *, test_files_only: bool = False) -> Marker:
    if does == _FOCUSED:
        return Marker(re.compile(pattern), does, test_files_only, FOCUS_THEN)
    return Marker(re.compile(pattern), does, test_files_only)


_SKIPPED = "was skipped"
_FOCUSED = "was focused"
FOCUS_THEN = ": the other tests next to it no longer run"
_TODO = "was turned into a to-do"
_DISABLED = "was disabled"

# Python has none: its skips, in any spelling, are the parse checks' (app/review/tamper/).
MARKERS: dict[frozenset[str], tuple[Marker, ...]] = {
    JS: (
        _m(
            r"\b(it|test|describe|context|suite|specify)(\.concurrent|\.each)?"
            r"\.(skip|skipIf)\b",
            _SKIPPED,
            test_files_only=True,
        ),
        _m(
            r"\b(it|test|describe|context|suite|specify)(\.concurrent)?\.only\b",
            _FOCUSED,
            test_files_only=True,
        ),
        _m(r"\b(it|test|describe)\.(todo|fixme)\b", _TODO, test_files_only=True),
        _m(
            r"(?<![\w.$])(xit|xtest|xdescribe|xcontext|xspecify)\s*\(",
            _SKIPPED,
            test_files_only=True,
        ),
        _m(r"(?<![\w.$])(fit|fdescribe|fcontext)\s*\(", _FOCUSED, test_files_only=True),
    ),
    GO: (_m(r"\b\w+\.(Skip|SkipNow|Skipf)\s*\(", _SKIPPED, test_files_only=True),),
    JVM: (
        _m(r"@(Disabled\w*|Ignore)\b", _DISABLED),
        _m(r"\bassume(True|False)\s*\(\s*(false|true)\s*\)", _SKIPPED, test_files_only=True),
    ),
    RB: (
        _m(
            r"^\s*(xit|xspecify|xexample|xdescribe|xcontext|xscenario)\b",
            _SKIPPED,
            test_files_only=True,
        ),
        _m(r"^\s*(fit|fdescribe|fcontext)\b", _FOCUSED, test_files_only=True),
        _m(r"(:focus\b|\bfocus:\s*true)", _FOCUSED, test_files_only=True),
        _m(r"^\s*(pending|skip)\b", _SKIPPED, test_files_only=True),
    ),
    RS: (_m(r"#\[ignore\b", _DISABLED),),
    PHP: (_m(r"->markTest(Skipped|Incomplete)\s*\(", _SKIPPED),),
}


def markers_for(path: str) -> tuple[Marker, ...]:
    for extensions, markers in MARKERS.items():
        if suffix(path) in extensions:
            return markers
    return ()


# A line that defines a test; group "name" is its name (a quoted title for JS and RSpec).
_DEFINITIONS: dict[frozenset[str], tuple[re.Pattern[str], ...]] = {
    PY: (
        re.compile(r"^(?P<indent>\s*)(async\s+)?def\s+(?P<name>test\w*)\s*\("),
        re.compile(r"^(?P<indent>\s*)class\s+(?P<name>Test\w*)\b"),
    ),
    JS: (
        re.compile(
            r"^(?P<indent>\s*)[xf]?(it|test|specify)(\.\w+)*\s*\(\s*"
            r"(?P<q>['\"`])(?P<name>.+?)(?P=q)"
        ),
    ),
    GO: (re.compile(r"^(?P<indent>)func\s+(?P<name>(Test|Benchmark|Fuzz)\w*)\s*\("),),
    JVM: (
        re.compile(r"^(?P<indent>\s*)@Test\b.*?\b(void|fun)\s+(?P<name>\w+)\s*\("),  # on one line
        re.compile(r"^(?P<indent>\s*)(public\s+)?(void|fun)\s+(?P<name>test\w*)\s*\("),
    ),
    RB: (
        re.compile(
            r"^(?P<indent>\s*)[xf]?(it|specify|example|scenario)\s+(?P<q>['\"])(?P<name>.+?)(?P=q)"
        ),
    ),
    RS: (re.compile(r"^(?P<indent>\s*)(pub\s+)?(async\s+)?fn\s+(?P<name>test_\w*)\s*\("),),
    PHP: (re.compile(r"^(?P<indent>\s*)(public\s+)?function\s+(?P<name>test\w*)\s*\("),),
}
# Any definition at all: in Python one at or left of a test's indent ends that test.
_PY_ANY_DEF = re.compile(r"^(?P<indent>\s*)(async\s+def|def|class)\s+(?P<name>\w+)")
# JUnit and Rust mark tests with an annotation on the line before the method.
_ANNOTATION = re.compile(r"^\s*(@Test\b|#\[(tokio::)?test\b)")
_METHOD = re.compile(r"^(?P<indent>\s*)(?:[\w<>\[\],\s]*\s)?(void|fun|fn)\s+(?P<name>\w+)\s*\(")


def test_definition(path: str, line: str, after_annotation: bool = False) -> str | None:
    """The name of the test `line` defines, if it defines one."""
    extension = suffix(path)
    if after_annotation and extension in JVM | RS:
        method = _METHOD.match(line)
        if method:
            return method.group("name")
    for extensions, patterns in _DEFINITIONS.items():
        if extension in extensions:
            for pattern in patterns:
                match = pattern.match(line)
                if match:
                    return match.group("name")
    return None


def is_test_annotation(path: str, line: str) -> bool:
    return suffix(path) in JVM | RS and bool(_ANNOTATION.match(line))


def ends_python_test(line: str, test_indent: int) -> bool:
    """A Python definition at or left of the test's own indentation: the test is over."""
    match = _PY_ANY_DEF.match(line)
    return match is not None and len(match.group("indent").expandtabs()) <= test_indent


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip()) if line.strip() else 1 << 30


_ASSERTIONS: dict[frozenset[str], re.Pattern[str]] = {
    PY: re.compile(
        r"^\s*assert\b|\bself\.(assert|fail)\w*\s*\(|\bpytest\.(raises|warns|approx)\b"
        r"|\.assert_\w+\s*\(|\bassert_\w+\s*\("
    ),
    JS: re.compile(r"\bexpect\s*\(|\bassert(\.\w+)?\s*\(|\.should\b|\bt\.(is|deepEqual|true)\("),
    GO: re.compile(
        r"\b[tb]\.(Error|Errorf|Fatal|Fatalf|Fail|FailNow)\s*\(|\b(assert|require)\.\w+\s*\("
    ),
    JVM: re.compile(r"\bassert\w*\s*\(|\bverify\s*\(|\bfail\s*\("),
    RB: re.compile(r"\bexpect\s*[({]|\bassert\w*\b|\.to\s|\bshould\b|\brefute\w*\b"),
    RS: re.compile(r"\b(debug_)?assert(_eq|_ne)?!\s*\("),
    PHP: re.compile(r"(\$this->|self::|static::)assert\w+\s*\(|->expect\w*\s*\("),
}


def is_assertion(path: str, line: str) -> bool:
    code = line.split("#", 1)[0] if suffix(path) in PY | RB else line
    for extensions, pattern in _ASSERTIONS.items():
        if suffix(path) in extensions:
            return bool(pattern.search(code))
    return False


# Assertions that hold whatever the code does (Python's are the parse checks': they read the
# expression, `assert x or True` included).
_ALWAYS_TRUE = re.compile(
    r"\bassert(True|\.ok|\.isTrue)?\s*\(\s*(true|1)\s*\)"
    r"|\bassert\.True\s*\(\s*t\s*,\s*true\s*\)"
    r"|\bexpect\s*\(\s*(true|1)\s*\)\s*\.\s*(toBe|toEqual|toBeTruthy)\s*\(\s*(true|1)?\s*\)"
    r"|\bassert!\s*\(\s*true\s*\)"
)
# Checks of a particular value...
_EXACT = re.compile(
    r"==|\bassert(Equal|Equals|Is|In|Raises|AlmostEqual|CountEqual|DictEqual|ListEqual)\b"
    r"|\.(toBe|toEqual|toStrictEqual|toMatchObject|toHaveBeenCalledWith|toThrow|isEqualTo)\s*\("
    r"|\bassert_eq!|\b(assert|require)\.(Equal|EqualValues|ErrorIs)\b|\beq\s*\("
)
# ...and checks that only something is there (the weaker kind).
_LOOSE = re.compile(
    r"\bassert(True|NotNil|NotNull|\.ok)\b|\.(toBeDefined|toBeTruthy)\s*\("
    r"|\.not\.(toBeNull|toBeUndefined)\b|\bassert!\s*\("
    r"|\b(assert|require)\.(NotNil|True|NotEmpty)\b"
)


def always_true(line: str) -> bool:
    return bool(_ALWAYS_TRUE.search(line))


def looser(before: str, after: str) -> bool:
    """`after` checks less than `before` did: an exact check became a there-or-not check."""
    if not _EXACT.search(before) or _EXACT.search(after):
        return False
    return bool(_LOOSE.search(after))
