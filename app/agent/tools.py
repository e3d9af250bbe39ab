"""Claude's bash and text-editor tools on a sandboxed checkout; failures go back as is_error."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.workspace.sandbox import (
    PathOutsideWorkspace,
    Sandbox,
    SandboxUnavailable,
    resolve_inside,
)

log = logging.getLogger(__name__)

BASH_TOOL_NAME = "bash"
EDITOR_TOOL_NAME = "str_replace_based_edit_tool"
SNIPPET_CONTEXT_LINES = 4
MAX_LISTING_ENTRIES = 1000
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")

# Commands that run a test suite: the last one of these is what Honk reports as "tested with".
_TEST_COMMAND = re.compile(
    r"(^|[\s;&|(/])("
    r"pytest|py\.test|tox|nox|unittest|nosetests|"
    r"(npm|pnpm|yarn|bun)( run)? test|npx (jest|vitest|mocha)|jest|vitest|mocha|"
    r"make (test|check)|cargo (test|nextest)|go test|"
    r"mvn( -\S+)* (test|verify)|(\./)?gradlew? test|dotnet test|"
    r"rspec|(bundle exec )?rake( test| spec)?$|phpunit|ctest|mix test|deno test|"
    r"swift test|stack test|cabal test|zig build test"
    r")(?=$|[\s;&|)])"
)


def tool_definitions(max_characters: int | None = None) -> list[dict[str, Any]]:
    """The two Anthropic-defined client tools, as sent in `tools`."""
    editor: dict[str, Any] = {"type": "text_editor_20250728", "name": EDITOR_TOOL_NAME}
    if max_characters:
        editor["max_characters"] = max_characters
    return [{"type": "bash_20250124", "name": BASH_TOOL_NAME}, editor]


def is_test_command(command: str) -> bool:
    return bool(_TEST_COMMAND.search(command.strip()))


def cut_middle(text: str, limit: int) -> str:
    """Keep the head and tail of `text` within about `limit` characters, saying what was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = text[head : len(text) - tail]
    note = f"\n\n[... {len(cut):,} characters ({cut.count(chr(10)):,} lines) cut ...]\n\n"
    return text[:head] + note + text[len(text) - tail :]


@dataclass
class CommandRecord:
    """A command the agent ran, for "what Honk ran"."""

    command: str
    exit_code: int | None
    timed_out: bool = False


@dataclass
class ToolOutcome:
    """What goes back to the model in one tool_result."""

    content: str
    is_error: bool = False


class ToolError(Exception):
    """A tool call that cannot be done; its message goes to the model."""


class ToolBox:
    """Runs the model's tool calls on one sandboxed checkout and records what it ran."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        output_limit: int = 30_000,
        command_timeout: float | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.output_limit = output_limit
        self.command_timeout = command_timeout
        self.commands: list[CommandRecord] = []
        self.last_test: CommandRecord | None = None
        self.edited: list[str] = []

    @property
    def definitions(self) -> list[dict[str, Any]]:
        return tool_definitions(max_characters=self.output_limit)

    @property
    def visible_root(self) -> str:
        return self.sandbox.visible_root

    def describe(self, name: str, tool_input: dict[str, Any]) -> str:
        """A one-line description of a call, for progress reports."""
        if name == BASH_TOOL_NAME:
            if tool_input.get("restart"):
                return "restart"
            return _one_line(str(tool_input.get("command", "")), 200)
        if name == EDITOR_TOOL_NAME:
            return f"{tool_input.get('command', '?')} {tool_input.get('path', '')}".strip()
        return name

    async def run(self, name: str, tool_input: dict[str, Any]) -> ToolOutcome:
        """Run one call; never raises for the model's mistakes or failed commands."""
        try:
            if not isinstance(tool_input, dict):
                raise ToolError("the tool input must be a JSON object")
            if name == BASH_TOOL_NAME:
                outcome = await self._bash(tool_input)
            elif name == EDITOR_TOOL_NAME:
                outcome = ToolOutcome(await self._edit(tool_input))
            else:
                raise ToolError(f"unknown tool {name!r}; use bash or {EDITOR_TOOL_NAME}")
        except ToolError as error:
            outcome = ToolOutcome(f"Error: {error}", is_error=True)
        except PathOutsideWorkspace as error:
            outcome = ToolOutcome(
                f"Error: {error}. Only paths inside {self.visible_root} can be used.",
                is_error=True,
            )
        except SandboxUnavailable as error:
            outcome = ToolOutcome(f"Error: the sandbox cannot run commands: {error}", True)
        except OSError as error:
            outcome = ToolOutcome(f"Error: {error.strerror or error}", is_error=True)
        except Exception as error:
            # A bug here must not end the run: the model hears of it and can work around it.
            log.exception("tool %s failed", name)
            outcome = ToolOutcome(f"Error: the tool failed ({type(error).__name__})", True)
        return ToolOutcome(cut_middle(outcome.content, self.output_limit), outcome.is_error)

    async def _bash(self, tool_input: dict[str, Any]) -> ToolOutcome:
        if tool_input.get("restart"):
            return ToolOutcome("tool has been restarted.")
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("no command given")
        result = await self.sandbox.run(command, timeout=self.command_timeout)
        record = CommandRecord(command, result.exit_code, result.timed_out)
        self.commands.append(record)
        if is_test_command(command):
            self.last_test = record
        output = result.output if result.output.strip() else "(no output)"
        if result.timed_out:
            limit = self.command_timeout or self.sandbox.timeout
            return ToolOutcome(f"{output}\n\n[command timed out after {limit:g}s]", is_error=True)
        if result.exit_code != 0:
            output += f"\n\n[exit code {result.exit_code}]"
        return ToolOutcome(output)

    async def _edit(self, tool_input: dict[str, Any]) -> str:
        command = tool_input.get("command")
        raw_path = tool_input.get("path")
        if not isinstance(raw_path, str) or not raw_path:
            raise ToolError("`path` is required")
        path = resolve_inside(self.sandbox.root, raw_path, visible_root=self.visible_root)
        shown = self._shown(path)
        if command == "view":
            return await asyncio.to_thread(self._view, path, shown, tool_input.get("view_range"))
        if ".git" in path.relative_to(self.sandbox.root).parts:
            # Honk's own git commands run on the host: hooks or config planted there would too.
            raise ToolError(f"{shown} is inside .git, which cannot be changed")
        if command == "create":
            file_text = _text_arg(tool_input, "file_text")
            existed = await asyncio.to_thread(_write_new, path, file_text)
            self._note_edit(shown)
            return f"File {'overwritten' if existed else 'created'}: {shown}"
        if command == "str_replace":
            old = _text_arg(tool_input, "old_str")
            new = tool_input.get("new_str") or ""
            if not isinstance(new, str):
                raise ToolError("`new_str` must be a string")
            result = await asyncio.to_thread(_str_replace, path, shown, old, new)
            self._note_edit(shown)
            return result
        if command == "insert":
            line = tool_input.get("insert_line")
            # Older editor versions called the text new_str.
            inserted = tool_input.get("insert_text", tool_input.get("new_str"))
            if not isinstance(line, int) or isinstance(line, bool):
                raise ToolError("`insert_line` (a line number) is required")
            if not isinstance(inserted, str):
                raise ToolError("`insert_text` is required")
            result = await asyncio.to_thread(_insert, path, shown, line, inserted)
            self._note_edit(shown)
            return result
        if command == "undo_edit":
            raise ToolError("undo_edit is not supported; use str_replace to change the text back")
        raise ToolError(
            f"unknown command {command!r}; use one of: view, create, str_replace, insert"
        )

    def _shown(self, path: Path) -> str:
        """The path as the model sees it, under the sandbox's visible root."""
        relative = path.relative_to(self.sandbox.root).as_posix()
        root = self.visible_root.rstrip("/")
        return root if relative == "." else f"{root}/{relative}"

    def _note_edit(self, shown: str) -> None:
        if shown not in self.edited:
            self.edited.append(shown)

    def _view(self, path: Path, shown: str, view_range: Any) -> str:
        if path.is_dir():
            if view_range is not None:
                raise ToolError("`view_range` cannot be used when viewing a directory")
            return _listing(path, shown)
        content = _read(path, shown)
        lines = content.split("\n")
        if content.endswith("\n"):
            lines.pop()
        start, end = 1, len(lines)
        if view_range is not None:
            start, end = _check_range(view_range, len(lines))
        numbered = "\n".join(
            f"{number:6}\t{line}" for number, line in enumerate(lines[start - 1 : end], start)
        )
        return cut_middle(numbered, self.output_limit)


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _text_arg(tool_input: dict[str, Any], name: str) -> str:
    value = tool_input.get(name)
    if not isinstance(value, str):
        raise ToolError(f"`{name}` is required")
    return value


def _read(path: Path, shown: str) -> str:
    if not path.exists():
        raise ToolError(f"the path {shown} does not exist")
    if not path.is_file():
        raise ToolError(f"{shown} is not a regular file")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise ToolError(f"{shown} is not UTF-8 text (binary file?)") from None


def _write(path: Path, text: str) -> None:
    # newline="" keeps the file's own line endings.
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _write_new(path: Path, text: str) -> bool:
    if path.is_dir():
        raise ToolError("the path is a directory; give a file path to create")
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)
    return existed


def _str_replace(path: Path, shown: str, old: str, new: str) -> str:
    if not old:
        raise ToolError("`old_str` must not be empty; use insert or create to add text")
    content = _read(path, shown)
    count = content.count(old)
    if count == 0:
        raise ToolError(
            f"No replacement was performed, old_str `{_one_line(old, 200)}` did not appear "
            f"verbatim in {shown}."
        )
    if count > 1:
        lines = _occurrence_lines(content, old)
        raise ToolError(
            f"No replacement was performed. Multiple occurrences ({count}) of old_str "
            f"`{_one_line(old, 200)}` in lines {lines}. Please ensure it is unique."
        )
    before = content[: content.index(old)]
    _write(path, before + new + content[len(before) + len(old) :])
    first = before.count("\n") + 1
    snippet = _snippet(before + new + content[len(before) + len(old) :], first, new.count("\n"))
    return (
        f"The file {shown} has been edited. Here's the result of running `cat -n` on a snippet:"
        f"\n{snippet}\nReview the changes and make sure they are as expected."
    )


def _insert(path: Path, shown: str, line: int, text: str) -> str:
    content = _read(path, shown)
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
    _write(path, updated)
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


def _check_range(view_range: Any, line_count: int) -> tuple[int, int]:
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


def _listing(path: Path, shown: str) -> str:
    """Files and directories up to 2 levels deep, hidden ones skipped (like `find -maxdepth 2`)."""
    entries: list[str] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        entries.append(f"{shown}/{entry.name}" + ("/" if entry.is_dir() else ""))
        if entry.is_dir() and not entry.is_symlink():
            try:
                children = sorted(entry.iterdir())
            except OSError:
                continue
            entries += [
                f"{shown}/{entry.name}/{child.name}" + ("/" if child.is_dir() else "")
                for child in children
                if not child.name.startswith(".")
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
