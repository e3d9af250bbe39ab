"""`paths:` and `review: allow:` globs, read as CODEOWNERS reads them (GitHub's own convention
for rules about paths), `!glob` taking paths back out, the last matching glob deciding."""

from __future__ import annotations

import functools
import re


def globs_match(globs: tuple[str, ...], path: str) -> bool:
    """Whether `path` (a file's path in the repository) matches `globs` as `paths:` and
    `review.allow` read them: each glob read as CODEOWNERS reads it (see `path_glob`),
    `!glob` taking paths back out, the last matching glob deciding."""
    decided = False
    for negated, pattern in _compiled_globs(tuple(globs)):
        if pattern.fullmatch(path):
            decided = not negated
    return decided


@functools.lru_cache(maxsize=256)
def _compiled_globs(globs: tuple[str, ...]) -> tuple[tuple[bool, re.Pattern[str]], ...]:
    return tuple((glob.startswith("!"), path_glob(glob.removeprefix("!"))) for glob in globs)


def path_glob(glob: str) -> re.Pattern[str]:
    """One glob as a regular expression over a file's path, in CODEOWNERS' reading (GitHub's
    own convention for rules about paths), since `paths:` restricts what may change:

    - `*` and `?` stay inside one path segment, `[abc]` is one character of a class;
    - `**` as a whole segment crosses segments: `**/x` is x at any depth, `a/**/x` is x
      anywhere below a, `a/**` everything below a;
    - a glob with a `/` at its start or middle is anchored at the repository's root
      (`/calc.py` the top-level file, `docs/*` docs/ at the top); one without (`*.py`,
      `Makefile`, `build/`) matches at any depth;
    - a trailing `/` names a directory, everything below it (`docs/`);
    - a last segment without wildcards is a file or a directory, everything below it then
      (`src/app`, `**/logs`);
    - a last segment with a wildcard matches files at that level only: `docs/*` is the files
      directly in docs/, never docs/_ext/hook.py because `*` matched the directory `_ext`.
      gitignore's reading (a pattern matching a directory matches all below it) would widen a
      restriction through any directory a wildcard happens to match; CODEOWNERS already reads
      `docs/*` this way, and here `*.py` or `docs/build*` do not reach through a directory so
      named either.

    ValueError for what is no glob (empty, or a lone `/`)."""
    body = glob[1:] if glob.startswith("/") else glob
    directory = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        raise ValueError("an empty pattern")
    anchored = glob.startswith("/") or "/" in body
    segments = body.split("/")
    regex = "" if anchored else "(?:.*/)?"
    for index, segment in enumerate(segments):
        at_end = index == len(segments) - 1
        if segment == "**":
            regex += ".+" if at_end else "(?:.*/)?"
            continue
        regex += _segment(segment) + ("" if at_end else "/")
    final = segments[-1]
    if directory and final != "**":
        regex += "/.+"  # everything below the directory, not a file of that name
    elif not directory and final != "**" and not _has_wildcard(final):
        regex += "(?:/.+)?"  # the file, or everything below the directory
    return re.compile(regex, re.DOTALL)


def _segment(segment: str) -> str:
    """One path segment's glob as a regular expression that never crosses a `/`."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if char == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1  # `**` inside a segment is `*` (gitignore's rule)
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := _class_end(segment, i)) is not None:
            inner = segment[i + 1 : end]
            negate = inner[:1] in ("!", "^")
            out.append(f"(?!/)[{'^' if negate else ''}{_class(inner[1:] if negate else inner)}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _class(inner: str) -> str:
    """A class's characters and ranges (`a-z`), each character escaped for `re`."""
    out: list[str] = []
    i = 0
    while i < len(inner):
        if i + 2 < len(inner) and inner[i + 1] == "-":
            out.append(f"{re.escape(inner[i])}-{re.escape(inner[i + 2])}")
            i += 3
        else:
            out.append(re.escape(inner[i]))
            i += 1
    return "".join(out)


def _class_end(segment: str, start: int) -> int | None:
    """Where the character class opened at `start` closes (its `]`), or None: a literal `[`."""
    i = start + 1
    if i < len(segment) and segment[i] in ("!", "^"):
        i += 1
    if i < len(segment) and segment[i] == "]":
        i += 1  # a `]` first in the class is one of its characters
    end = segment.find("]", i)
    return end if end != -1 else None


def _has_wildcard(segment: str) -> bool:
    i = 0
    while i < len(segment):
        if segment[i] == "\\":
            i += 2
            continue
        if segment[i] in "*?" or (segment[i] == "[" and _class_end(segment, i) is not None):
            return True
        i += 1
    return False
