"""The text editor tool's file work on the host: regular files only, bounded, links unfollowed."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

SNIPPET_CONTEXT_LINES = 4
MAX_LISTING_ENTRIES = 1000
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
# Never follow a link when opening, never wait for a FIFO's other end.
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
}
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


class ToolError(Exception):
    """A tool call that cannot be done; its message goes to the model."""


class FileAccess:
    """The editor's reads and writes: regular files only, within a size bound.

    The agent can leave FIFOs, sockets and sparse files of any size in the checkout, and
    the editor runs on the host in a thread of the default executor: a FIFO opened the
    usual way blocks that thread forever, and a huge file would be read into memory.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def read(self, path: Path, shown: str) -> str:
        try:
            fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            raise ToolError(f"the path {shown} does not exist") from None
        except OSError:
            self._refuse_odd(path, shown)
            raise
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            self._check(info, shown)
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise ToolError(self._too_big(shown, len(data)))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{shown} is not UTF-8 text (binary file?)") from None

    def write(self, path: Path, shown: str, text: str) -> None:
        """Replace the file's content in place (keeping its mode), creating it if missing."""
        data = text.encode("utf-8")
        if len(data) > self.max_bytes:
            raise ToolError(self._too_big(shown, len(data)))
        self._refuse_odd(path, shown)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | _OPEN_FLAGS, 0o644)
        except OSError:
            self._refuse_odd(path, shown)
            raise
        with os.fdopen(fd, "wb") as handle:
            info = os.fstat(fd)
            self._check(info, shown)
            if info.st_nlink > 1:
                raise ToolError(f"{shown} has other hard links; Honk edits only files of its own")
            handle.truncate(0)
            handle.write(data)

    def create(self, path: Path, shown: str, text: str) -> bool:
        if path.is_dir():
            raise ToolError("the path is a directory; give a file path to create")
        existed = os.path.lexists(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.write(path, shown, text)
        return existed

    def _refuse_odd(self, path: Path, shown: str) -> None:
        """Anything but a regular file (or nothing) is refused before it is opened."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        self._check(info, shown)

    def _check(self, info: os.stat_result, shown: str) -> None:
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            what = _KINDS.get(kind, "not a regular file")
            raise ToolError(f"{shown} is {what}; the editor works on regular files only")
        if info.st_size > self.max_bytes:
            raise ToolError(self._too_big(shown, info.st_size))

    def _too_big(self, shown: str, size: int) -> str:
        return (
            f"{shown} is {_size(size)}, more than the editor's limit of {_size(self.max_bytes)} "
            "(HONK_EDITOR_MAX_FILE_MB); use bash (head, sed -n, grep) to work on parts of it"
        )


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):,.1f} MiB"
    return f"{count:,} bytes"


def str_replace(files: FileAccess, path: Path, shown: str, old: str, new: str) -> str:
    if not old:
        raise ToolError("`old_str` must not be empty; use insert or create to add text")
    content = files.read(path, shown)
    count = content.count(old)
    if count == 0:
        raise ToolError(
            f"No replacement was performed, old_str `{one_line(old, 200)}` did not appear "
            f"verbatim in {shown}."
        )
    if count > 1:
        lines = _occurrence_lines(content, old)
        raise ToolError(
            f"No replacement was performed. Multiple occurrences ({count}) of old_str "
            f"`{one_line(old, 200)}` in lines {lines}. Please ensure it is unique."
        )
    before = content[: content.index(old)]
    files.write(path, shown, before + new + content[len(before) + len(old) :])
    first = before.count("\n") + 1
    snippet = _snippet(before + new + content[len(before) + len(old) :], first, new.count("\n"))
    return (
        f"The file {shown} has been edited. Here's the result of running `cat -n` on a snippet:"
        f"\n{snippet}\nReview the changes and make sure they are as expected."
    )


def insert(files: FileAccess, path: Path, shown: str, line: int, text: str) -> str:
    content = files.read(path, shown)
    lines = _LINE.findall(content)
    if line < 0 or line > len(lines):
        raise ToolError(
            f"Invalid `insert_line` parameter: {line}. It should be within the range of lines "
            f"of the file: [0, {len(lines)}]"
        )
    newline = "\r\n" if "\r\n" in content else "\n"
    added = text if not text or text.endswith("\n") else text + newline
    if line == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += newline
    updated = "".join(lines[:line]) + added + "".join(lines[line:])
    files.write(path, shown, updated)
    snippet = _snippet(updated, line + 1, added.count("\n"))
    return (
        f"The file {shown} has been edited. Here's the result of running `cat -n` on a snippet:"
        f"\n{snippet}\nReview the changes and make sure they are as expected."
    )


def _snippet(content: str, first_line: int, changed_lines: int) -> str:
    lines = content.split("\n")
    start = max(1, first_line - SNIPPET_CONTEXT_LINES)
    end = min(len(lines), first_line + changed_lines + SNIPPET_CONTEXT_LINES)
    return "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, end + 1))


def _occurrence_lines(content: str, old: str) -> list[int]:
    lines, start = [], 0
    while (found := content.find(old, start)) != -1:
        lines.append(content.count("\n", 0, found) + 1)
        start = found + 1
    return lines


def check_range(view_range: Any, line_count: int) -> tuple[int, int]:
    if (
        not isinstance(view_range, list)
        or len(view_range) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range)
    ):
        raise ToolError("`view_range` must be a list of two integers, e.g. [10, 40]")
    start, end = view_range
    if start < 1 or start > line_count:
        raise ToolError(
            f"Invalid `view_range`: {view_range}. Its first element `{start}` should be "
            f"within the range of lines of the file: [1, {line_count}]"
        )
    if end == -1:
        end = line_count
    if end < start:
        raise ToolError(
            f"Invalid `view_range`: {view_range}. Its second element `{end}` should be "
            f"larger or equal than its first `{start}`, or -1 for the end of the file"
        )
    return start, min(end, line_count)


def listing(path: Path, shown: str) -> str:
    """Files and directories up to 2 levels deep, hidden ones skipped (like `find -maxdepth 2`).

    Links are never followed (a link to a host directory must not look like one): they
    are listed with their target, as `ls -l` shows them.
    """
    entries: list[str] = []
    for entry in _entries(path):
        entries.append(_entry_line(f"{shown}/{entry.name}", entry))
        if entry.is_dir(follow_symlinks=False):
            entries += [
                _entry_line(f"{shown}/{entry.name}/{child.name}", child)
                for child in _entries(Path(entry.path))
            ]
        if len(entries) > MAX_LISTING_ENTRIES:
            break
    more = len(entries) > MAX_LISTING_ENTRIES
    entries = entries[:MAX_LISTING_ENTRIES]
    header = (
        f"Here are the files and directories up to 2 levels deep in {shown}, "
        "excluding hidden items:"
    )
    footer = f"\n[listing stopped at {MAX_LISTING_ENTRIES} entries]" if more else ""
    return "\n".join([header, shown + "/", *entries]) + footer


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as listing:
            return sorted((e for e in listing if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return []


def _entry_line(shown: str, entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        try:
            target = os.readlink(entry.path)
        except OSError:
            target = "?"
        return f"{shown} -> {one_line(target, 200)}"
    return shown + ("/" if entry.is_dir(follow_symlinks=False) else "")


def one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
