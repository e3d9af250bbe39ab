"""Fake Anthropic Messages API: a real aiohttp app answering /v1/messages from a script."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

API_KEY = "sk-ant-test-key-0123456789"
MAX_CACHE_BREAKPOINTS = 4
# The agent's client tools, by type: a review request must carry neither.
AGENT_TOOL_TYPES = ("bash_20250124", "text_editor_20250728")
AGENT_TOOL_NAMES = ("bash", "str_replace_based_edit_tool")
REVIEW_TOOL = "verdict"
DEFAULT_APPROVAL = "The change does what the request asks, and the tests stay as they were."

Block = dict[str, Any]


@dataclass
class Turn:
    """One scripted assistant message."""

    content: list[Block]
    stop_reason: str = "end_turn"
    output_tokens: int | None = None


@dataclass
class HttpError:
    """One scripted failure: an HTTP error before any data, or an SSE `error` event mid-stream."""

    status: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    mid_stream: bool = False
    cut_connection: bool = False  # mid-stream: drop the connection instead of an error event


class Hold:
    """A scripted turn the fake keeps back until the test releases it: the agent waits on the
    model meanwhile, as it does on a slow answer. `reached` is set when the request arrives."""

    def __init__(self, then: Turn, *, timeout: float = 60.0) -> None:
        self.then = then
        self.timeout = timeout
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()

    async def wait(self) -> Turn:
        self.reached.set()
        # Bounded, so a test that never releases still lets the server stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.released.wait()
        return self.then


Responder = Callable[[dict[str, Any]], "Turn | list[Block] | str"]
ScriptItem = Turn | HttpError | Hold | Responder

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_01{next(_ids):022d}"


def text(message: str) -> Turn:
    """A plain text answer that ends the turn."""
    return Turn([{"type": "text", "text": message}], "end_turn")


def tool_use_bash(command: str, *, say: str | None = None) -> Turn:
    return tool_use("bash", {"command": command}, say=say)


def tool_use_edit(*, say: str | None = None, **tool_input: Any) -> Turn:
    """An editor call, e.g. tool_use_edit(command="view", path="/workspace/calc/app.py")."""
    return tool_use("str_replace_based_edit_tool", tool_input, say=say)


def tool_use(name: str, tool_input: dict[str, Any], *, say: str | None = None) -> Turn:
    content: list[Block] = [{"type": "text", "text": say}] if say else []
    # The id is given when the turn is sent, so a turn can be scripted more than once.
    content.append({"type": "tool_use", "id": "", "name": name, "input": tool_input})
    return Turn(content, "tool_use")


def turn(*parts: Turn, stop_reason: str | None = None) -> Turn:
    """Several blocks in one message, e.g. two tool calls at once."""
    content = [block for part in parts for block in part.content]
    has_tool = any(block["type"] == "tool_use" for block in content)
    return Turn(content, stop_reason or ("tool_use" if has_tool else "end_turn"))


def overloaded(*, mid_stream: bool = False) -> HttpError:
    return HttpError(
        529, "overloaded_error", "Overloaded", {"retry-after-ms": "1"}, mid_stream=mid_stream
    )


def broken_stream() -> HttpError:
    """A stream whose connection drops after the first events."""
    return HttpError(0, "", "", mid_stream=True, cut_connection=True)


def rate_limited(retry_after: str = "0") -> HttpError:
    # retry-after-ms keeps the SDK's wait at a millisecond; retry-after is what it also sends.
    return HttpError(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        {"retry-after": retry_after, "retry-after-ms": "1"},
    )


def server_error() -> HttpError:
    return HttpError(500, "api_error", "Internal server error", {"retry-after-ms": "1"})


def approve(summary: str = DEFAULT_APPROVAL, *, beyond_request: bool = False) -> Turn:
    """The judge's approval, as the forced `verdict` tool call."""
    return verdict("approve", summary, [], beyond_request=beyond_request)


def veto(*reasons: str, summary: str = "The change does not do what was asked.") -> Turn:
    """The judge's veto with its reasons."""
    return verdict("veto", summary, list(reasons))


def verdict(
    decision: str, summary: str, reasons: list[str], *, beyond_request: bool = False
) -> Turn:
    tool_input = {
        "decision": decision,
        "summary": summary,
        "reasons": reasons,
        "beyond_request": beyond_request,
    }
    return tool_use(REVIEW_TOOL, tool_input)


def is_review_request(body: dict[str, Any]) -> bool:
    """A review (the judge) offers the `verdict` tool; an agent turn offers bash and the editor."""
    return any(tool.get("name") == REVIEW_TOOL for tool in body.get("tools") or [])


def tool_results(request: dict[str, Any]) -> list[Block]:
    """The tool_result blocks of a request's last user message (for callable script items)."""
    last = request["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    return [block for block in content if block.get("type") == "tool_result"]


def result_text(block: Block) -> str:
    content = block.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def _api_error(status: int, error_type: str, message: str, **headers: str) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status, headers={"request-id": _new_id("req"), **headers})


class FakeAnthropic:
    """POST /v1/messages (plain and streamed) and /v1/messages/count_tokens, from a script."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []  # the agent's turns
        self.review_requests: list[dict[str, Any]] = []  # the judge's (by their tools)
        self.complaints: list[str] = []  # review requests refused for carrying agent tools
        self.headers: list[dict[str, str]] = []
        self.count_token_requests: list[dict[str, Any]] = []
        self.url = ""
        self._script: deque[ScriptItem] = deque()
        self._review_script: deque[ScriptItem] = deque()
        self._holds: list[Hold] = []
        self._cache: dict[str, int] = {}
        self.app = web.Application()
        self.app.router.add_post("/v1/messages", self._messages)
        self.app.router.add_post("/v1/messages/count_tokens", self._count_tokens)

    def script(self, *turns: ScriptItem) -> None:
        self._script.extend(turns)

    def script_review(self, *answers: ScriptItem) -> None:
        """The judge's answers, apart from the agent's turns; unscripted, the judge approves."""
        self._review_script.extend(answers)

    @property
    def reviews_remaining(self) -> int:
        return len(self._review_script)

    @property
    def remaining(self) -> int:
        return len(self._script)

    def release_all(self) -> None:
        """Let every held turn go (at teardown, so no request is left waiting)."""
        for hold in [*self._holds, *(i for i in self._script if isinstance(i, Hold))]:
            hold.release()

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._read(request)
        if failure is not None:
            return failure
        review = is_review_request(body)
        (self.review_requests if review else self.requests).append(body)
        self.headers.append(dict(request.headers))
        invalid = _validate(body)
        if invalid:
            return _api_error(400, "invalid_request_error", invalid)
        if review:
            carried = _agent_tools(body)
            if carried:
                complaint = f"a review request carried the agent's tools: {', '.join(carried)}"
                self.complaints.append(complaint)
                return _api_error(400, "invalid_request_error", complaint)
            item: ScriptItem = self._review_script.popleft() if self._review_script else approve()
        else:
            item = self._script.popleft() if self._script else text("done")
        if isinstance(item, Hold):
            self._holds.append(item)
            item = await item.wait()
        if isinstance(item, HttpError) and not (item.mid_stream and body.get("stream")):
            return _api_error(item.status, item.error_type, item.message, **item.headers)
        if isinstance(item, HttpError):
            return await self._stream_error(request, item)
        answer = item if isinstance(item, Turn) else _as_turn(item(body))
        message = self._message(body, answer)
        if body.get("stream"):
            return await self._stream(request, message)
        return web.json_response(message, headers={"request-id": _new_id("req")})

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._read(request)
        if failure is not None:
            return failure
        self.count_token_requests.append(body)
        segments, _ = _segments(body)
        return web.json_response({"input_tokens": sum(tokens for _, tokens in segments)})

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        # Older SDKs send the key as x-api-key, newer ones as a bearer token.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return {}, _api_error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return {}, _api_error(400, "invalid_request_error", "anthropic-version: required")
        try:
            body = await request.json()
        except ValueError:
            return {}, _api_error(400, "invalid_request_error", "request body is not JSON")
        return body, None

    def _message(self, body: dict[str, Any], answer: Turn) -> dict[str, Any]:
        content = [_with_ids(block) for block in answer.content]
        output_tokens = answer.output_tokens or _tokens(content)
        return {
            "id": _new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "usage": {**self._input_usage(body), "output_tokens": output_tokens},
        }

    def _input_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """Input tokens as the API counts them: cache reads, cache writes, and the rest."""
        segments, breakpoints = _segments(body)
        total = sum(tokens for _, tokens in segments)
        read = written = 0
        digest = hashlib.sha256()
        prefix_tokens = 0
        hashes: list[tuple[str, int]] = []
        for index, (key, tokens) in enumerate(segments):
            digest.update(key.encode())
            prefix_tokens += tokens
            if index in breakpoints:
                hashes.append((digest.hexdigest(), prefix_tokens))
        for prefix_hash, tokens in hashes:
            if prefix_hash in self._cache:
                read = max(read, tokens)
        if hashes:
            written = hashes[-1][1] - read
            self._cache.update(hashes)
        return {
            "input_tokens": total - read - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written,
                "ephemeral_1h_input_tokens": 0,
            },
            "service_tier": "standard",
        }

    async def _stream(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = await _sse_response(request)
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**message["usage"], "output_tokens": 1}
        await _send(response, "message_start", {"type": "message_start", "message": start})
        await _send(response, "ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            await _send_block(response, index, block)
        usage = {k: v for k, v in message["usage"].items() if k.endswith("tokens")}
        await _send(
            response,
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": usage,
            },
        )
        await _send(response, "message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response

    async def _stream_error(self, request: web.Request, item: HttpError) -> web.StreamResponse:
        response = await _sse_response(request)
        start = self._message(self.requests[-1], Turn([], "end_turn"))
        start.update(stop_reason=None)
        await _send(response, "message_start", {"type": "message_start", "message": start})
        if item.cut_connection and request.transport is not None:
            request.transport.close()
            return response
        error = {"type": "error", "error": {"type": item.error_type, "message": item.message}}
        await _send(response, "error", error)
        await response.write_eof()
        return response


def _as_turn(answer: Turn | list[Block] | str) -> Turn:
    if isinstance(answer, Turn):
        return answer
    if isinstance(answer, str):
        return text(answer)
    has_tool = any(block["type"] == "tool_use" for block in answer)
    return Turn(list(answer), "tool_use" if has_tool else "end_turn")


def _with_ids(block: Block) -> Block:
    if block["type"] == "tool_use" and not block.get("id"):
        return {**block, "id": _new_id("toolu")}
    return dict(block)


async def _sse_response(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "request-id": _new_id("req"),
        }
    )
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())


async def _send_block(response: web.StreamResponse, index: int, block: Block) -> None:
    """content_block_start, deltas in small pieces (as the API chunks them), content_block_stop."""
    if block["type"] == "text":
        start: Block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
    elif block["type"] == "tool_use":
        start = {**block, "input": {}}
        raw = json.dumps(block["input"])
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [{"type": "input_json_delta", "partial_json": piece} for piece in _pieces(raw)]
    else:
        start, deltas = block, []
    await _send(
        response,
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": start},
    )
    for delta in deltas:
        await _send(
            response,
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )
        await asyncio.sleep(0)
    await _send(response, "content_block_stop", {"type": "content_block_stop", "index": index})


def _pieces(value: str, size: int = 24) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def _segments(body: dict[str, Any]) -> tuple[list[tuple[str, int]], set[int]]:
    """The prompt in cache order (tools, system, messages) as (key, tokens), and breakpoints."""
    segments: list[tuple[str, int]] = []
    breakpoints: set[int] = set()

    def add(block: Any) -> None:
        if isinstance(block, dict) and block.get("cache_control"):
            breakpoints.add(len(segments))
            block = {k: v for k, v in block.items() if k != "cache_control"}
        segments.append((json.dumps(block, sort_keys=True), _tokens(block)))

    for tool in body.get("tools") or []:
        add(tool)
    system = body.get("system")
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system or []:
        add(block)
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        segments.append((message.get("role", ""), 1))
        for block in blocks or []:
            add(block)
    return segments, breakpoints


def _agent_tools(body: dict[str, Any]) -> list[str]:
    return [
        str(tool.get("name"))
        for tool in body.get("tools") or []
        if tool.get("type") in AGENT_TOOL_TYPES or tool.get("name") in AGENT_TOOL_NAMES
    ]


def _validate(body: dict[str, Any]) -> str | None:
    """The checks of the real API that catch agent-loop bugs."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    tools = body.get("tools") or []
    for index, tool in enumerate(tools):
        if not tool.get("type") and not isinstance(tool.get("input_schema"), dict):
            return f"tools.{index}.custom.input_schema: Field required"
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            return "tool_choice may only be specified while providing tools"
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return f"tool_choice.type: unknown type {choice.get('type')!r}"
        names = {tool.get("name") for tool in tools}
        if choice.get("type") == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: tool {choice.get('name')!r} is not among the tools"
        if choice.get("type") in ("any", "tool") and body.get("thinking"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    messages = body["messages"]
    if not messages or messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    _, breakpoints = _segments(body)
    if len(breakpoints) > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(breakpoints)}."
        )
    for index, message in enumerate(messages):
        if index and message.get("role") == messages[index - 1].get("role") == "user":
            return 'messages: roles must alternate between "user" and "assistant"'
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{index}: text content blocks must be non-empty"
        if message.get("role") != "assistant":
            continue
        wanted = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        if not wanted:
            continue
        following = messages[index + 1]["content"] if index + 1 < len(messages) else []
        answered = {
            b.get("tool_use_id")
            for b in following
            if isinstance(b, dict) and b.get("type") == "tool_result"
        }
        if wanted - answered:
            missing = sorted(wanted - answered)[0]
            return (
                f"messages.{index + 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {missing}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
    return None


@pytest.fixture
async def fake_anthropic(aiohttp_server: Any) -> AsyncIterator[FakeAnthropic]:
    """A running FakeAnthropic; point settings.agent.anthropic_base_url at `.url`."""
    fake = FakeAnthropic()
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.release_all()
