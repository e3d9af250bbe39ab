"""The Messages API's side of a conversation: the model's message as request content again,
the prompt cache's breakpoints (system, tools, the last two user turns), a response's usage."""

from __future__ import annotations

from typing import Any

from anthropic.types import CacheControlEphemeralParam, Message

from app.models import Usage

EPHEMERAL: CacheControlEphemeralParam = {"type": "ephemeral"}


def usage_of(message: Message) -> Usage:
    u = message.usage
    return Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_creation_input_tokens=u.cache_creation_input_tokens or 0,
        cache_read_input_tokens=u.cache_read_input_tokens or 0,
        requests=1,
    )


def assistant_blocks(message: Message, *, drop_tool_use: bool = False) -> list[dict[str, Any]]:
    """The message's content as request params; empty text blocks are rejected by the API."""
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            if block.text.strip():
                blocks.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            if not drop_tool_use:
                blocks.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
        elif block.type == "thinking":
            blocks.append(
                {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
            )
        elif block.type == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block.data})
        else:
            blocks.append(block.to_dict())
    return blocks


def cached_tools(definitions: list[dict[str, Any]]) -> Any:
    tools = [dict(tool) for tool in definitions]
    tools[-1]["cache_control"] = EPHEMERAL
    return tools


def with_cache_breakpoints(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of `messages` with cache breakpoints on the last two user turns.

    With the system prompt and the tools that makes four, the API's maximum. The latest
    turn writes the cache for the next request; the one before reads what the previous
    request wrote, even when a turn carried many tool results.
    """
    marked = [dict(message) for message in messages]
    user_turns = [i for i, message in enumerate(marked) if message["role"] == "user"][-2:]
    for index in user_turns:
        content = list(marked[index]["content"])
        content[-1] = {**content[-1], "cache_control": EPHEMERAL}
        marked[index]["content"] = content
    return marked
