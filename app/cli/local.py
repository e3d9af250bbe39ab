"""`honk run`: the agent and sandbox on a local checkout, no GitHub; changes stay uncommitted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from app.agent.loop import make_client, run_agent
from app.agent.prompts import build_task, read_repo_instructions
from app.agent.results import AgentEvent, AgentLimits, AgentResult
from app.agent.tools import BASH_TOOL_NAME, EDITOR_TOOL_NAME, CommandRecord, ToolBox
from app.config import Settings
from app.log import redact
from app.workspace.caches import CacheScope, PackageCaches, head_key
from app.workspace.mirror import remove_tree
from app.workspace.run_home import SandboxHome, make_home
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose, read_declared
from app.workspace.toolchains import find_installed
from app.workspace.work_tree import NotACheckout, work_tree_state

# The exit statuses, as `honk run --help` tells them.
EXIT_OK = 0  # the checkout changed, and the last test run passed (or there was none)
EXIT_FAILED = 1  # the last test run failed, or the agent stopped (an error, a limit)
EXIT_UNUSABLE = 2  # nothing was run
EXIT_NO_CHANGE = 3  # the agent finished and the checkout is as it was
TEXT_LINES_SHOWN = 12
OUTPUT_TAIL_LINES = 15  # of a failing command's output

NO_SANDBOX = (
    "honk: refusing to run: the bwrap sandbox does not work here: {why}\n"
    "Install bubblewrap and allow unprivileged user namespaces, or set HONK_SANDBOX=off to "
    "let the agent run commands unconfined (unsafe: only on a machine and checkout you can "
    "afford to lose)."
)


class _Printer:
    """Prints the run's steps with the person's own paths: the checkout as they named it
    where the sandbox (/workspace/<name>) or the resolved path would show."""

    def __init__(self, out: TextIO, shown: str, *roots: str) -> None:
        self.out = out
        self.shown = shown
        alternatives = "|".join(re.escape(root) for root in dict.fromkeys(roots) if root)
        # A root followed by "/" or by no other path character: /workspace/widgets2 is not it.
        self.roots = re.compile(f"(?:{alternatives})(/|(?![\\w.-]))") if alternatives else None

    def paths(self, text: str) -> str:
        if self.roots is None:
            return text
        inside = "" if self.shown == "." else self.shown + "/"
        return self.roots.sub(lambda m: inside if m.group(1) else self.shown, text)

    def say(self, line: str) -> None:
        self.out.write(redact(self.paths(line)) + "\n")
        self.out.flush()


async def run_local(
    repo_path: Path,
    task_text: str,
    settings: Settings,
    *,
    out: TextIO,
    err: TextIO | None = None,
) -> int:
    """Run the agent on `repo_path` for `task_text`, printing its steps on `out` and why it
    cannot run on `err`; the exit status is one of the EXIT_ values."""
    err = err or sys.stderr
    shown = str(repo_path)
    root = await asyncio.to_thread(lambda: repo_path.expanduser().resolve())
    if not await asyncio.to_thread(root.is_dir):
        return _refuse(err, f"honk: {shown} is not a directory")
    try:
        before = await work_tree_state(root)
    except FileNotFoundError:
        return _refuse(err, "honk: git is not installed: honk run works on a git checkout")
    except NotACheckout as exc:
        if "not a git repository" in str(exc):
            return _refuse(
                err,
                f"honk: {shown} is not a git repository: run `git init` there first, "
                "or give --repo a git checkout",
            )
        return _refuse(err, f"honk: git cannot use {shown} as a checkout: {exc}")
    if not task_text.strip():
        return _refuse(err, "honk: say what to do, e.g. honk run 'fix the failing date test'")
    if not settings.agent.anthropic_api_key:
        return _refuse(err, "honk: ANTHROPIC_API_KEY is not set (in the environment or .env)")
    if settings.sandbox.mode != "off":
        problem = await Sandbox.check(settings.sandbox.mode)
        if problem:
            return _refuse(err, NO_SANDBOX.format(why=problem))
    async with _run_home(settings, root, out) as home:
        # The same sandbox as the server's runs: Honk's own files stay out of sight.
        sandbox = Sandbox.for_settings(settings, root, home=home)
        return await _run_agent(settings, root, shown, sandbox, task_text, before, out)


@contextlib.asynccontextmanager
async def _run_home(settings: Settings, root: Path, out: TextIO) -> AsyncIterator[SandboxHome]:
    """The run's HOME (a private directory, removed at the end) with the package caches of
    this directory restored; after the agent they are saved again for the next `honk run`
    here. Unlike a server's run (where only setup feeds them), the agent's writes are kept:
    it has no setup, and its changes to this checkout are kept anyway."""
    parent = settings.sandbox.checkout_dir
    await asyncio.to_thread(parent.mkdir, mode=0o700, parents=True, exist_ok=True)
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="home-", dir=parent))
    try:
        await asyncio.to_thread(make_home, path)
        caches = PackageCaches.for_settings(settings)
        restored, scope = None, CacheScope.directory(root)
        if caches is not None:
            restored = await caches.restore(scope, await head_key(root), path)
            out.write(f"honk: {restored.describe()}\n")
        yield SandboxHome(path)
        if caches is not None and restored is not None:
            await caches.save(scope, path, restored)
    finally:
        await asyncio.shield(asyncio.to_thread(remove_tree, path))


async def _run_agent(
    settings: Settings,
    root: Path,
    shown: str,
    sandbox: Sandbox,
    task_text: str,
    before: str,
    out: TextIO,
) -> int:
    printer = _Printer(out, shown, sandbox.visible_root, str(root))
    if settings.sandbox.mode == "off":
        printer.say("honk: WARNING: sandbox off; commands run unconfined on this machine")
    # The toolchains the checkout's declared versions choose, as a server's run has them.
    declared = await asyncio.to_thread(read_declared, root)
    choice = choose(
        await find_installed(settings.sandbox), declared, dict(settings.sandbox.toolchain_defaults)
    )
    sandbox.toolchains = choice.toolchains
    for note in choice.notes:
        printer.say(f"honk: {note}")
    tools = ToolBox.for_settings(settings.agent, sandbox)
    instructions = await asyncio.to_thread(read_repo_instructions, root)
    first_line = task_text.strip().splitlines()[0]
    task = build_task(
        repo=root.name,
        issue={"title": first_line[:100], "body": task_text},
        comments=[],
        repo_instructions=instructions,
        visible_root=sandbox.visible_root,
    )
    printer.say(f"honk: {settings.agent.model} on {shown} (sandbox: {settings.sandbox.mode})")
    if instructions:
        printer.say(f"honk: following {', '.join(instructions)}")
    commands = _CommandOutputs()

    async def on_event(event: AgentEvent) -> None:
        commands.note(event)
        _print_event(printer, event)

    async with make_client(settings.agent) as client:
        result = await run_agent(
            client,
            model=settings.agent.model,
            task=task,
            tools=tools,
            limits=AgentLimits.from_settings(settings.agent),
            on_event=on_event,
        )
    changed = await work_tree_state(root) != before
    _print_result(printer, result, tools, settings.agent.model)
    return _conclude(printer, result, commands, changed)


def _refuse(err: TextIO, line: str) -> int:
    err.write(redact(line) + "\n")
    err.flush()
    return EXIT_UNUSABLE


class _CommandOutputs:
    """The output of each command the agent ran, latest per command, to show the failing
    test run's again at the end."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}
        self.outputs: dict[str, str] = {}

    def note(self, event: AgentEvent) -> None:
        if event.name != BASH_TOOL_NAME:
            return
        if event.kind == "tool":
            command = (event.tool_input or {}).get("command")
            if isinstance(command, str):
                self._pending[event.tool_id] = command
        elif event.kind == "tool_done" and event.tool_id in self._pending:
            self.outputs[self._pending.pop(event.tool_id)] = event.output


def _print_event(printer: _Printer, event: AgentEvent) -> None:
    if event.kind == "turn":
        printer.say(f"\n── turn {event.turn}")
    elif event.kind == "text":
        lines = event.detail.strip().splitlines()
        shown = lines[:TEXT_LINES_SHOWN]
        if len(lines) > len(shown):
            shown.append(f"… ({len(lines) - len(shown)} more lines)")
        for line in shown:
            printer.say(f"  {line}")
    elif event.kind == "tool":
        mark = "✎" if event.name == EDITOR_TOOL_NAME else "$"
        printer.say(f"  {mark} {event.detail}")
    elif event.kind == "tool_done" and event.name == BASH_TOOL_NAME and _failed(event):
        # What went wrong is at the end of a failing command's output: show that much.
        for line in _tail(event.output):
            printer.say(f"    │ {line}")
        printer.say(f"    {event.result[:300]}")
    elif event.kind == "tool_done" and (event.is_error or event.result.startswith("[")):
        printer.say(f"    {'error: ' if event.is_error else ''}{event.result[:300]}")


def _failed(event: AgentEvent) -> bool:
    """A bash call that failed: an error (a timeout, a limit) or a non-zero exit code."""
    return event.is_error or event.result.startswith("[exit code")


def _tail(output: str, count: int = OUTPUT_TAIL_LINES) -> list[str]:
    """The last `count` lines of a command's output, without the closing "[exit code N]"."""
    lines = output.rstrip().splitlines()
    if lines and lines[-1].startswith("["):
        lines.pop()
    while lines and not lines[-1].strip():
        lines.pop()
    if lines == ["(no output)"]:
        return []
    if len(lines) <= count:
        return lines
    return [f"… ({len(lines) - count} lines before)", *lines[-count:]]


def _print_result(printer: _Printer, result: AgentResult, tools: ToolBox, model: str) -> None:
    printer.say("")
    headline = {
        "done": "done",
        "no_change": "no change needed",
        "max_turns": "stopped: turn limit reached",
        "timeout": "stopped: time limit reached",
        "max_tokens": "stopped: token limit reached",
        "cancelled": "cancelled",
        "error": "failed",
    }.get(result.outcome, result.outcome)
    printer.say(f"honk: {headline} after {result.turns} turns")
    if result.error:
        printer.say(f"honk: {result.error}")
    if result.summary:
        printer.say("\n" + result.summary + "\n")
    if result.last_test is not None and not _test_failed(result.last_test):
        printer.say(
            f"honk: last test run: {result.last_test.command} ({_status(result.last_test)})"
        )
    printer.say(f"honk: tokens: {result.usage.describe(model)}")
    if tools.edited:
        printer.say(f"honk: edited {', '.join(tools.edited)}")


def _conclude(
    printer: _Printer, result: AgentResult, commands: _CommandOutputs, changed: bool
) -> int:
    """The last lines (what is left where, and why the exit status is what it is)."""
    test = result.last_test
    if changed:
        printer.say(f"honk: changes are left uncommitted in {printer.shown} (review: git diff)")
    if test is not None and _test_failed(test):
        printer.say(f"honk: the last test run failed ({_status(test)}): {test.command}")
        tail = _tail(commands.outputs.get(test.command, ""))
        if tail:
            printer.say("honk: its output ended with:")
            for line in tail:
                printer.say(f"  │ {line}")
        return EXIT_FAILED
    if result.outcome not in ("done", "no_change"):
        return EXIT_FAILED
    if not changed:
        printer.say(f"honk: nothing changed in {printer.shown}")
        return EXIT_NO_CHANGE
    return EXIT_OK


def _test_failed(test: CommandRecord) -> bool:
    return test.timed_out or test.exit_code != 0


def _status(test: CommandRecord) -> str:
    return "timed out" if test.timed_out else f"exit {test.exit_code}"
