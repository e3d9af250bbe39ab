"""`honk run`: the agent and sandbox on a local checkout, no GitHub; changes stay uncommitted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from app.agent.loop import AgentEvent, AgentLimits, AgentResult, make_client, run_agent
from app.agent.prompts import build_task, read_repo_instructions
from app.agent.tools import EDITOR_TOOL_NAME, ToolBox
from app.config import Settings
from app.log import redact
from app.workspace.sandbox import Sandbox

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
TEXT_LINES_SHOWN = 12

NO_SANDBOX = (
    "honk: refusing to run: the bwrap sandbox does not work here: {why}\n"
    "Install bubblewrap and allow unprivileged user namespaces, or set HONK_SANDBOX=off to "
    "let the agent run commands unconfined (unsafe: only on a machine and checkout you can "
    "afford to lose)."
)


async def run_local(repo_path: Path, task_text: str, settings: Settings, *, out: TextIO) -> int:
    """Run the agent on `repo_path` for `task_text`, printing its steps; 0 when it finished."""
    root = await asyncio.to_thread(lambda: repo_path.expanduser().resolve())
    if not await asyncio.to_thread(root.is_dir):
        _say(out, f"honk: {repo_path} is not a directory")
        return EXIT_UNUSABLE
    if not task_text.strip():
        _say(out, "honk: say what to do, e.g. honk run 'fix the failing date parsing test'")
        return EXIT_UNUSABLE
    if not settings.anthropic_api_key:
        _say(out, "honk: ANTHROPIC_API_KEY is not set")
        return EXIT_UNUSABLE
    if settings.sandbox != "off":
        problem = await Sandbox.check(settings.sandbox)
        if problem:
            _say(out, NO_SANDBOX.format(why=problem))
            return EXIT_UNUSABLE
    else:
        _say(out, "honk: WARNING: sandbox off; commands run unconfined on this machine")
    # The same sandbox as the server's runs: Honk's own files stay out of sight.
    sandbox = Sandbox.for_settings(settings, root)
    tools = ToolBox.for_settings(settings, sandbox)
    instructions = await asyncio.to_thread(read_repo_instructions, root)
    first_line = task_text.strip().splitlines()[0]
    task = build_task(
        repo=root.name,
        issue={"title": first_line[:100], "body": task_text},
        comments=[],
        repo_instructions=instructions,
        visible_root=sandbox.visible_root,
    )
    _say(out, f"honk: {settings.model} on {root} (sandbox: {settings.sandbox})")
    if instructions:
        _say(out, f"honk: following {', '.join(instructions)}")

    async def on_event(event: AgentEvent) -> None:
        _print_event(out, event)

    async with make_client(settings) as client:
        result = await run_agent(
            client,
            model=settings.model,
            task=task,
            tools=tools,
            limits=AgentLimits.from_settings(settings),
            on_event=on_event,
        )
    _print_result(out, result, tools, settings.model, root)
    return EXIT_OK if result.outcome in ("done", "no_change") else EXIT_FAILED


def _say(out: TextIO, line: str) -> None:
    out.write(redact(line) + "\n")
    out.flush()


def _print_event(out: TextIO, event: AgentEvent) -> None:
    if event.kind == "turn":
        _say(out, f"\n── turn {event.turn}")
    elif event.kind == "text":
        lines = event.detail.strip().splitlines()
        shown = lines[:TEXT_LINES_SHOWN]
        if len(lines) > len(shown):
            shown.append(f"… ({len(lines) - len(shown)} more lines)")
        for line in shown:
            _say(out, f"  {line}")
    elif event.kind == "tool":
        mark = "✎" if event.name == EDITOR_TOOL_NAME else "$"
        _say(out, f"  {mark} {event.detail}")
    elif event.kind == "tool_done" and (event.is_error or event.result.startswith("[")):
        _say(out, f"    {'error: ' if event.is_error else ''}{event.result[:300]}")


def _print_result(out: TextIO, result: AgentResult, tools: ToolBox, model: str, root: Path) -> None:
    _say(out, "")
    headline = {
        "done": "done",
        "no_change": "no change needed",
        "max_turns": "stopped: turn limit reached",
        "timeout": "stopped: time limit reached",
        "max_tokens": "stopped: token limit reached",
        "cancelled": "cancelled",
        "error": "failed",
    }.get(result.outcome, result.outcome)
    _say(out, f"honk: {headline} after {result.turns} turns")
    if result.error:
        _say(out, f"honk: {result.error}")
    if result.summary:
        _say(out, "\n" + result.summary + "\n")
    if result.last_test is not None:
        test = result.last_test
        status = "timed out" if test.timed_out else f"exit {test.exit_code}"
        _say(out, f"honk: last test run: {test.command} ({status})")
    _say(out, f"honk: tokens: {result.usage.describe(model)}")
    if tools.edited:
        _say(out, f"honk: edited {', '.join(tools.edited)}")
    _say(out, f"honk: changes are left uncommitted in {root} (review with `git diff`)")
