"""The agent loop with the real anthropic SDK against the fake Messages API over loopback."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from app.agent.loop import CONTINUE_PROMPT, make_client, run_agent
from app.agent.prompts import AgentTask
from app.agent.results import AgentEvent, AgentLimits, AgentResult
from app.agent.tools import ToolBox
from app.config import Settings
from app.models import Usage
from app.workspace.mounts import SandboxPython
from app.workspace.sandbox import Sandbox
from tests.fakes.anthropic import (
    API_KEY,
    FakeAnthropic,
    Turn,
    broken_stream,
    overloaded,
    rate_limited,
    result_text,
    server_error,
    text,
    tool_results,
    tool_use_bash,
    tool_use_edit,
    turn,
)

MODEL = "claude-sonnet-4-6"
TASK = AgentTask(system="You are Honk. Fix the bug.", prompt="add() subtracts; make it add.")
EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def settings(base_settings: Settings, fake_anthropic: FakeAnthropic) -> Settings:
    return base_settings.with_overrides(anthropic_base_url=fake_anthropic.url, model=MODEL)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = make_client(settings.agent)
    yield client
    await client.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    return root


@pytest.fixture
def tools(repo: Path, sandbox_python: SandboxPython) -> ToolBox:
    return ToolBox(Sandbox(repo, mode="off", timeout=60, python=sandbox_python))


async def run(
    client: anthropic.AsyncAnthropic,
    tools: ToolBox,
    limits: AgentLimits | None = None,
    **options: Any,
) -> tuple[AgentResult, list[AgentEvent]]:
    events: list[AgentEvent] = []

    async def on_event(event: AgentEvent) -> None:
        events.append(event)

    result = await run_agent(
        client,
        model=MODEL,
        task=TASK,
        tools=tools,
        limits=limits or AgentLimits(),
        on_event=on_event,
        **options,
    )
    return result, events


def last_result_text(request: dict[str, Any]) -> str:
    results = tool_results(request)
    return result_text(results[-1]) if results else ""


async def test_fake_answers_the_real_sdk_plain_and_streamed(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(text("plain answer"), tool_use_bash("ls -la", say="Looking."))
    plain = await client.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.content[0].type == "text" and plain.content[0].text == "plain answer"
    assert plain.stop_reason == "end_turn"
    assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0

    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "list files"}]
    ) as stream:
        streamed = await stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert [block.type for block in streamed.content] == ["text", "tool_use"]
    tool_block = streamed.content[1]
    assert tool_block.type == "tool_use"
    assert tool_block.name == "bash" and tool_block.input == {"command": "ls -la"}
    assert tool_block.id.startswith("toolu_")
    assert streamed.usage.output_tokens > 1  # the message_delta total, not message_start's 1
    assert [r.get("stream") for r in fake_anthropic.requests] == [None, True]

    counted = await client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert counted.input_tokens > 0

    wrong = anthropic.AsyncAnthropic(api_key="sk-ant-wrong", base_url=fake_anthropic.url)
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.messages.create(model=MODEL, max_tokens=10, messages=[])
    await wrong.close()


async def test_scripted_fix_views_edits_and_tests(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox, repo: Path
) -> None:
    root = tools.visible_root
    fake_anthropic.script(
        tool_use_edit(command="view", path=f"{root}/calc.py", say="Reading the code."),
        lambda request: (
            tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b")
            if "return a - b" in last_result_text(request)
            else text("calc.py did not show the bug")
        ),
        tool_use_bash("python -m pytest -q -p no:cacheprovider"),
        lambda request: (
            text("Fixed add() to add. Ran `python -m pytest -q`: 1 passed.")
            if "1 passed" in last_result_text(request)
            else text("the tests failed: " + last_result_text(request))
        ),
    )
    result, events = await run(client, tools)

    assert result.outcome == "done", result
    assert result.summary == "Fixed add() to add. Ran `python -m pytest -q`: 1 passed."
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert result.turns == 4
    assert result.last_test is not None and result.last_test.exit_code == 0
    assert result.last_test.command.startswith("python -m pytest")
    assert len(fake_anthropic.requests) == 4
    assert all(request["stream"] is True for request in fake_anthropic.requests)
    for request in fake_anthropic.requests[1:]:
        assert not any(r.get("is_error") for r in tool_results(request))
    # Every request's usage went through on_event, and the result holds their sum.
    usages = [e.usage for e in events if e.kind == "usage" and e.usage is not None]
    assert len(usages) == 4
    assert sum(usages, Usage()) == result.usage
    assert result.usage.requests == 4
    kinds = [e.kind for e in events if e.kind in ("turn", "tool", "tool_done")]
    assert kinds[:4] == ["turn", "tool", "tool_done", "turn"]
    tool_events = [e for e in events if e.kind == "tool"]
    assert [e.detail for e in tool_events] == [
        f"view {root}/calc.py",
        "str_replace calc.py",
        "python -m pytest -q -p no:cacheprovider",
    ]


async def test_cache_breakpoints_on_system_tools_and_latest_turns(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(*[tool_use_bash(f"echo {i}") for i in range(4)], text("done"))
    result, _ = await run(client, tools)
    assert result.outcome == "done"
    requests = fake_anthropic.requests
    assert len(requests) == 5
    for request in requests:
        assert request["system"][0]["cache_control"] == EPHEMERAL
        assert request["tools"][-1]["cache_control"] == EPHEMERAL
        assert all("cache_control" not in tool for tool in request["tools"][:-1])
        user_turns = [m for m in request["messages"] if m["role"] == "user"]
        marked = [bool(m["content"][-1].get("cache_control")) for m in user_turns]
        assert marked[-2:] == [True] * len(marked[-2:])
        assert not any(marked[:-2])
        blocks = [b for m in request["messages"] for b in m["content"]]
        breakpoints = sum(1 for b in blocks if b.get("cache_control")) + 2
        assert breakpoints <= 4
    # Breakpoints move: the first prompt is marked while it is recent, not later on.
    assert requests[0]["messages"][0]["content"][-1]["cache_control"] == EPHEMERAL
    assert "cache_control" not in requests[-1]["messages"][0]["content"][-1]
    assert result.usage.cache_read_input_tokens > 0
    assert result.usage.cache_creation_input_tokens > 0


async def test_max_turns_stops_the_loop(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(*[tool_use_bash("echo again")] * 10)
    result, _ = await run(client, tools, AgentLimits(max_turns=3))
    assert result.outcome == "max_turns" and result.limit_hit
    assert result.turns == 3 and len(fake_anthropic.requests) == 3
    assert len(result.commands) == 3
    assert "3 turns" in (result.error or "")


async def test_token_limit_stops_the_loop(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(*[tool_use_bash("echo again")] * 10)
    result, _ = await run(client, tools, AgentLimits(max_tokens=600))
    assert result.outcome == "max_tokens" and result.limit_hit
    assert result.usage.total_tokens >= 600
    assert 1 <= len(fake_anthropic.requests) < 10
    assert len(fake_anthropic.requests) == result.usage.requests


async def test_overloaded_twice_then_success(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(overloaded(), overloaded(), text("Fixed it."))
    result, _ = await run(client, tools)
    assert result.outcome == "done" and result.summary == "Fixed it."
    assert len(fake_anthropic.requests) == 3
    assert [h.get("x-stainless-retry-count") for h in fake_anthropic.headers] == ["0", "1", "2"]
    assert result.usage.requests == 1


async def test_rate_limited_then_success(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(rate_limited(), text("Fixed it."))
    result, _ = await run(client, tools)
    assert result.outcome == "done"
    assert len(fake_anthropic.requests) == 2


async def test_permanent_server_error_is_an_error_outcome(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(*[server_error()] * 5)
    result, _ = await run(client, tools)
    assert result.outcome == "error" and not result.limit_hit
    assert result.error == "Anthropic API internal error (500) after 5 attempts"
    assert len(fake_anthropic.requests) == 5


async def test_rejected_key_is_an_error_without_the_key(
    settings: Settings, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    wrong_key = "sk-ant-wrong-key-9876543210"
    async with make_client(settings.with_overrides(anthropic_api_key=wrong_key).agent) as client:
        result, _ = await run(client, tools)
    assert result.outcome == "error"
    assert result.error is not None and "rejected the API key (401)" in result.error
    assert wrong_key not in result.error and API_KEY not in result.error


async def test_stream_failures_are_retried_then_reported(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(overloaded(mid_stream=True), text("Fixed it."))
    result, _ = await run(client, tools)
    assert result.outcome == "done"
    assert len(fake_anthropic.requests) == 2
    assert result.usage.requests == 1

    # The API was reached each time: the stream broke off after its first event (the SDK
    # reports that as a connection error; it is no failure to connect, and not retried by it).
    fake_anthropic.script(*[broken_stream()] * 3)
    broken, _ = await run(client, tools)
    assert broken.outcome == "error"
    assert broken.error == "the Anthropic API stream failed (RemoteProtocolError)"
    assert len(fake_anthropic.requests) == 5


async def test_an_unreachable_api_is_reported_with_the_attempts_made(
    settings: Settings, tools: ToolBox
) -> None:
    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = anthropic.AsyncAnthropic(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1
    )
    async with unreachable:
        result, _ = await run(unreachable, tools)
    assert result.outcome == "error"
    assert result.error == "could not reach the Anthropic API after 2 attempts"


async def test_no_change_refusal_and_tool_errors(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(
        tool_use_edit(command="view", path="/etc/passwd"),
        text("NO_CHANGE: add() is already correct upstream."),
    )
    result, _ = await run(client, tools)
    assert result.outcome == "no_change"
    assert result.summary == "add() is already correct upstream."
    error_result = tool_results(fake_anthropic.requests[1])[0]
    assert error_result["is_error"] is True
    assert "outside the workspace" in result_text(error_result)

    fake_anthropic.script(Turn([{"type": "text", "text": "I can't help."}], "refusal"))
    refused, _ = await run(client, tools)
    assert refused.outcome == "error" and "refusal" in (refused.error or "")


async def test_output_limit_stop_asks_to_continue(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    cut_tool_call = turn(tool_use_bash("echo never run"), stop_reason="max_tokens")
    fake_anthropic.script(
        Turn([{"type": "text", "text": "Here is a very long"}], "max_tokens"),
        cut_tool_call,
        text("Done after all."),
    )
    result, _ = await run(client, tools)
    assert result.outcome == "done" and result.summary == "Done after all."
    assert result.commands == []  # the cut-off tool call was not run
    second, third = fake_anthropic.requests[1], fake_anthropic.requests[2]
    assert second["messages"][-2]["content"][0]["text"] == "Here is a very long"
    assert second["messages"][-1]["content"][0]["text"] == CONTINUE_PROMPT
    # Nothing usable came back the second time: the note joins the last user turn.
    assert [b["text"] for b in third["messages"][-1]["content"]] == [CONTINUE_PROMPT] * 2


async def test_should_stop_cancels_between_turns(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(*[tool_use_bash("echo again")] * 5)
    asked = 0

    async def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 2

    result, _ = await run(client, tools, should_stop=should_stop)
    assert result.outcome == "cancelled"
    assert result.turns == 2 and len(fake_anthropic.requests) == 2


async def test_wall_time_limit_stops_a_long_command(
    client: anthropic.AsyncAnthropic, fake_anthropic: FakeAnthropic, tools: ToolBox
) -> None:
    fake_anthropic.script(tool_use_bash("sleep 30"))
    started = time.monotonic()
    result, _ = await run(client, tools, AgentLimits(max_seconds=1.0))
    assert result.outcome == "timeout" and result.limit_hit
    assert time.monotonic() - started < 10


async def test_make_client_uses_settings(settings: Settings) -> None:
    async with make_client(settings.agent) as client:
        assert client.max_retries == 4
        assert str(client.base_url).rstrip("/") == settings.agent.anthropic_base_url
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        make_client(settings.with_overrides(anthropic_api_key=None).agent)
