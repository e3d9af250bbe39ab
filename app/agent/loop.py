"""The tool-use loop on the Anthropic Messages API: turns, tools, limits, streamed requests
retried, a model cut off or paused asked to go on. What a run is given and gives back is
results.py's; the request's messages and cache, messages.py's; the API's errors, api_errors.py's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message

from app.agent.api_errors import describe_api_error, overloaded_mid_stream
from app.agent.messages import (
    EPHEMERAL,
    assistant_blocks,
    cached_tools,
    usage_of,
    with_cache_breakpoints,
)
from app.agent.prompts import NO_CHANGE_MARKER, AgentTask
from app.agent.results import (
    AgentEvent,
    AgentLimits,
    AgentResult,
    EventHandler,
    Outcome,
)
from app.agent.tools import ToolBox
from app.config import AgentSettings
from app.models import Usage

log = logging.getLogger(__name__)

MAX_RETRIES = 4
# Read timeout between streamed chunks (the API pings while it thinks); connect fails fast.
CLIENT_TIMEOUT = anthropic.Timeout(300.0, connect=10.0)
# Overloads that arrive inside a 200 stream are not retried by the SDK: retry them here.
STREAM_RETRIES = 2
STREAM_RETRY_DELAY = 0.5
# In a row, before giving up on a model that keeps running out of output tokens.
MAX_CONTINUATIONS = 3

CONTINUE_PROMPT = (
    "Your last message was cut off at the output limit, and any tool call in it was "
    "dropped. Continue; keep each tool call small (write big files in several steps)."
)
PAUSE_PROMPT = "Continue."


def make_client(agent: AgentSettings) -> anthropic.AsyncAnthropic:
    """The Anthropic client; the SDK retries 408/409/429/5xx/529 with backoff and retry-after."""
    if not agent.anthropic_api_key:
        raise ValueError("ANTHROPIC_API_KEY is not set")
    return anthropic.AsyncAnthropic(
        api_key=agent.anthropic_api_key,
        base_url=agent.anthropic_base_url,
        max_retries=MAX_RETRIES,
        timeout=CLIENT_TIMEOUT,
    )


class _Stop(Exception):
    def __init__(self, outcome: Outcome, error: str | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.error = error


@dataclass
class _Conversation:
    task: AgentTask
    tools: ToolBox
    limits: AgentLimits
    on_event: EventHandler | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    turns: int = 0
    last_text: str = ""

    async def emit(self, event: AgentEvent) -> None:
        if self.on_event is None:
            return
        try:
            await self.on_event(event)
        except Exception:
            # A failed progress report must not end a long run; the result has the totals.
            log.exception("agent event handler failed on %s", type(event).__name__)


async def run_agent(
    client: anthropic.AsyncAnthropic,
    *,
    model: str,
    task: AgentTask,
    tools: ToolBox,
    limits: AgentLimits,
    on_event: EventHandler | None = None,
    should_stop: Callable[[], Awaitable[bool]] | None = None,
) -> AgentResult:
    """Run the model with the tools until it finishes, a limit is hit, or it is stopped."""
    chat = _Conversation(task, tools, limits, on_event)
    first_command = len(tools.commands)
    chat.messages.append({"role": "user", "content": [{"type": "text", "text": task.prompt}]})
    outcome: Outcome
    error: str | None = None
    try:
        async with asyncio.timeout(limits.max_seconds):
            outcome = await _converse(client, model, chat, should_stop)
    except TimeoutError:
        outcome, error = "timeout", f"the agent ran out of time ({limits.max_seconds:g}s)"
    except _Stop as stop:
        outcome, error = stop.outcome, stop.error
    summary = chat.last_text.strip()
    commands = tools.commands[first_command:]
    if outcome == "no_change":
        summary = summary[len(NO_CHANGE_MARKER) :].strip()
    return AgentResult(
        outcome=outcome,
        summary=summary,
        turns=chat.turns,
        usage=chat.usage,
        commands=commands,
        # Only this run's: a ToolBox may serve a second run on the same checkout.
        last_test=next((c for c in commands if c is tools.last_test), None),
        error=error,
    )


async def _converse(
    client: anthropic.AsyncAnthropic,
    model: str,
    chat: _Conversation,
    should_stop: Callable[[], Awaitable[bool]] | None,
) -> Outcome:
    continuations = 0
    while True:
        if should_stop is not None and await should_stop():
            raise _Stop("cancelled", "the run was cancelled")
        if chat.turns >= chat.limits.max_turns:
            raise _Stop("max_turns", f"the agent used all {chat.limits.max_turns} turns")
        if chat.usage.total_tokens >= chat.limits.max_tokens:
            raise _Stop(
                "max_tokens",
                f"the agent used {chat.usage.total_tokens:,} tokens "
                f"(limit {chat.limits.max_tokens:,})",
            )
        chat.turns += 1
        await chat.emit(AgentEvent("turn", chat.turns))
        message = await _request(client, model, chat)
        text = "\n".join(b.text for b in message.content if b.type == "text" and b.text.strip())
        if text:
            chat.last_text = text
            await chat.emit(AgentEvent("text", chat.turns, detail=text))
        stop_reason = message.stop_reason
        if stop_reason == "tool_use" and any(b.type == "tool_use" for b in message.content):
            continuations = 0
            chat.messages.append({"role": "assistant", "content": assistant_blocks(message)})
            chat.messages.append({"role": "user", "content": await _run_tools(message, chat)})
        elif stop_reason in ("end_turn", "stop_sequence", "tool_use"):
            # (tool_use without a tool call has nothing left to do: it is an end too.)
            return "no_change" if text.lstrip().startswith(NO_CHANGE_MARKER) else "done"
        elif stop_reason == "max_tokens":
            continuations += 1
            if continuations > MAX_CONTINUATIONS:
                raise _Stop(
                    "error", f"the model hit the output limit {continuations} times in a row"
                )
            _continue_after(chat, message, CONTINUE_PROMPT)
        elif stop_reason == "pause_turn":
            _continue_after(chat, message, PAUSE_PROMPT)
        elif stop_reason == "refusal":
            raise _Stop("error", "the model declined the task (stop_reason: refusal)")
        elif stop_reason == "model_context_window_exceeded":
            raise _Stop("error", "the conversation outgrew the model's context window")
        else:
            raise _Stop("error", f"unexpected stop_reason from the API: {stop_reason!r}")


class _StreamBroke(Exception):
    """The response had begun (the API was reached) when its stream broke off."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


async def _request(client: anthropic.AsyncAnthropic, model: str, chat: _Conversation) -> Message:
    """One streamed request (the SDK retries HTTP errors); its usage is recorded at once."""
    for attempt in range(STREAM_RETRIES + 1):
        try:
            # Entering sends the request (the SDK retries failures to connect or an HTTP
            # error); what fails after that is the stream, which the SDK never retries.
            async with client.messages.stream(
                model=model,
                max_tokens=chat.limits.max_output_tokens,
                system=[{"type": "text", "text": chat.task.system, "cache_control": EPHEMERAL}],
                tools=cached_tools(chat.tools.definitions),
                messages=with_cache_breakpoints(chat.messages),  # type: ignore[arg-type]
            ) as stream:
                message = await _final_message(stream)
        except anthropic.APIStatusError as error:
            if not overloaded_mid_stream(error) or attempt == STREAM_RETRIES:
                raise _Stop("error", describe_api_error(error)) from None
            failure = "overloaded"
        except anthropic.APIError as error:
            raise _Stop("error", describe_api_error(error)) from None
        except _StreamBroke as error:
            failure = error.failure
            if attempt == STREAM_RETRIES:
                raise _Stop("error", f"the Anthropic API stream failed ({failure})") from None
        else:
            usage = usage_of(message)
            chat.usage += usage
            await chat.emit(AgentEvent("usage", chat.turns, usage=usage))
            return message
        log.warning("Anthropic stream failed (%s); retrying", failure)
        await asyncio.sleep(STREAM_RETRY_DELAY * 2**attempt)
    raise AssertionError("unreachable")


async def _final_message(stream: AsyncMessageStream) -> Message:
    """The streamed message; a stream that breaks off or carries broken JSON is _StreamBroke.

    anthropic 2.x reports a connection lost mid-stream as APIConnectionError (whose
    message would say the API could not be reached, after retries it never made); older
    releases let httpx's TransportError through. Both mean the same here, as does the
    model's tool input arriving as JSON that does not parse (ValueError).
    """
    try:
        return await stream.get_final_message()
    except anthropic.APIConnectionError as error:
        cause = error.__cause__
        reason = "timed out" if isinstance(error, anthropic.APITimeoutError) else None
        raise _StreamBroke(reason or type(cause or error).__name__) from error
    except (httpx2.TransportError, ValueError) as error:
        raise _StreamBroke(type(error).__name__) from error


async def _run_tools(message: Message, chat: _Conversation) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for block in message.content:
        if block.type != "tool_use":
            continue
        tool_input = block.input if isinstance(block.input, dict) else {}
        description = chat.tools.describe(block.name, tool_input)
        await chat.emit(
            AgentEvent(
                "tool", chat.turns, block.name, description, tool_id=block.id, tool_input=tool_input
            )
        )
        outcome = await chat.tools.run(block.name, tool_input)
        await chat.emit(
            AgentEvent(
                "tool_done",
                chat.turns,
                block.name,
                description,
                is_error=outcome.is_error,
                result=_summary(outcome.content),
                tool_id=block.id,
                output=outcome.content,
            )
        )
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": block.id,
            "content": outcome.content,
        }
        if outcome.is_error:
            result["is_error"] = True
        results.append(result)
    return results


def _summary(content: str) -> str:
    lines = [line for line in content.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    # Bash results end with "[exit code N]" or a timeout note: the most useful line.
    return last if last.startswith("[") else lines[0][:200]


def _continue_after(chat: _Conversation, message: Message, prompt: str) -> None:
    """Keep what the model said (minus cut-off tool calls) and ask it to go on."""
    blocks = assistant_blocks(message, drop_tool_use=True)
    if blocks:
        chat.messages.append({"role": "assistant", "content": blocks})
        chat.messages.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
    else:
        # Nothing usable came back: the user turn stays last, so add the note to it.
        chat.messages[-1]["content"].append({"type": "text", "text": prompt})
