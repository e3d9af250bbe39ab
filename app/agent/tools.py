"""Claude's bash and text-editor tools on a sandboxed checkout; failures go back as is_error."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.agent.editor import (
    DEFAULT_MAX_FILE_BYTES,
    FileAccess,
    ToolError,
    check_range,
    insert,
    listing,
    one_line,
    str_replace,
)
from app.config import AgentSettings
from app.workspace.inside import PathOutsideWorkspace, resolve_inside
from app.workspace.sandbox import Sandbox, SandboxUnavailable

log = logging.getLogger(__name__)

BASH_TOOL_NAME = "bash"
EDITOR_TOOL_NAME = "str_replace_based_edit_tool"
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


class ToolBox:
    """Runs the model's tool calls on one sandboxed checkout and records what it ran."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        output_limit: int = 30_000,
        command_timeout: float | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.sandbox = sandbox
        self.output_limit = output_limit
        self.command_timeout = command_timeout
        self.files = FileAccess(max_file_bytes)
        self.commands: list[CommandRecord] = []
        self.last_test: CommandRecord | None = None
        self.edited: list[str] = []

    @classmethod
    def for_settings(cls, agent: AgentSettings, sandbox: Sandbox) -> ToolBox:
        return cls(
            sandbox,
            output_limit=agent.output_limit,
            command_timeout=agent.command_timeout,
            max_file_bytes=agent.editor_max_file_mb * 1024 * 1024,
        )

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
            return one_line(str(tool_input.get("command", "")), 200)
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
        if result.limit is not None:
            code = "" if result.exit_code is None else f"exit code {result.exit_code}; "
            return ToolOutcome(f"{output}\n\n[{code}{result.limit}]", is_error=True)
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
        if await asyncio.to_thread(self.sandbox.is_hidden, path):
            raise ToolError(f"{shown} is one of Honk's own files, hidden from the agent")
        files = self.files
        if command == "view":
            return await asyncio.to_thread(self._view, path, shown, tool_input.get("view_range"))
        if ".git" in path.relative_to(self.sandbox.root).parts:
            # Honk's own git commands run on the host: hooks or config planted there would too.
            raise ToolError(f"{shown} is inside .git, which cannot be changed")
        if command == "create":
            file_text = _text_arg(tool_input, "file_text")
            existed = await asyncio.to_thread(files.create, path, shown, file_text)
            self._note_edit(shown)
            return f"File {'overwritten' if existed else 'created'}: {shown}"
        if command == "str_replace":
            old = _text_arg(tool_input, "old_str")
            new = tool_input.get("new_str") or ""
            if not isinstance(new, str):
                raise ToolError("`new_str` must be a string")
            result = await asyncio.to_thread(str_replace, files, path, shown, old, new)
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
            result = await asyncio.to_thread(insert, files, path, shown, line, inserted)
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
            return listing(path, shown)
        content = self.files.read(path, shown)
        lines = content.split("\n")
        if content.endswith("\n"):
            lines.pop()
        start, end = 1, len(lines)
        if view_range is not None:
            start, end = check_range(view_range, len(lines))
        numbered = "\n".join(
            f"{number:6}\t{line}" for number, line in enumerate(lines[start - 1 : end], start)
        )
        return cut_middle(numbered, self.output_limit)


def _text_arg(tool_input: dict[str, Any], name: str) -> str:
    value = tool_input.get(name)
    if not isinstance(value, str):
        raise ToolError(f"`{name}` is required")
    return value
