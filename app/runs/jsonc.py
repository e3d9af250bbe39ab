"""JSON with comments (JSONC, devcontainer.json's format): `read_jsonc` strips `//` and
`/* */` comments and trailing commas, leaving strings alone and every character where it
was, so the standard JSON parser reads the rest and its errors name the file's own line and
column."""

from __future__ import annotations

import json
import re
from typing import Any


class JsoncError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column = line, column


def read_jsonc(text: str) -> Any:
    """`text` as JSON with comments and trailing commas (devcontainer.json's format).

    JsoncError names the line and column (of `text` itself) of the first problem.
    """
    stripped = _without_trailing_commas(_without_comments(text.removeprefix("\ufeff")))
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise JsoncError(exc.msg, exc.lineno, exc.colno) from None


def _without_comments(text: str) -> str:
    """Comments replaced by spaces (their line breaks kept): positions stay the file's."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                line, column = _position(text, i)
                raise JsoncError("a /* comment is never closed", line, column)
            out.append(re.sub(r"[^\n]", " ", text[i : end + 2]))
            i = end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _without_trailing_commas(text: str) -> str:
    """A comma followed (past blanks) by `]` or `}` becomes a space (comments are gone)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        if char == ",":
            after = i + 1
            while after < n and text[after] in " \t\r\n":
                after += 1
            if after < n and text[after] in "]}":
                char = " "
        out.append(char)
        i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Just past the string opened at `start` (or the end of the line: JSON reports it)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        elif text[i] == "\n":
            return i
        else:
            i += 1
    return len(text)


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1
