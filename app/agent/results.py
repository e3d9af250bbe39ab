"""What a run of the agent is given and gives back: its limits (`AgentLimits`), the
progress it reports as it goes (`AgentEvent`), how it ended (`AgentResult`, `Outcome`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from app.agent.tools import CommandRecord
from app.config import AgentSettings
from app.models import Usage

Outcome = Literal["done", "no_change", "max_turns", "timeout", "max_tokens", "cancelled", "error"]
LIMIT_OUTCOMES = frozenset({"max_turns", "timeout", "max_tokens"})


@dataclass
class AgentLimits:
    """A run's limits; the defaults are the settings' (app/config/run.py, AgentSettings)."""

    max_turns: int = AgentSettings.max_turns
    max_seconds: float = AgentSettings.max_minutes * 60
    max_tokens: int = AgentSettings.max_tokens
    output_limit: int = AgentSettings.output_limit
    max_output_tokens: int = 16000

    @classmethod
    def from_settings(cls, agent: AgentSettings) -> AgentLimits:
        return cls(
            max_turns=agent.max_turns,
            max_seconds=agent.max_minutes * 60,
            max_tokens=agent.max_tokens,
            output_limit=agent.output_limit,
        )


@dataclass
class AgentResult:
    outcome: Outcome
    summary: str
    turns: int
    usage: Usage
    commands: list[CommandRecord]
    last_test: CommandRecord | None
    error: str | None = None

    @property
    def limit_hit(self) -> bool:
        return self.outcome in LIMIT_OUTCOMES


EventKind = Literal["turn", "tool", "tool_done", "usage", "text"]


@dataclass(frozen=True)
class AgentEvent:
    """Progress of a run, reported as it happens.

    kind "turn": turn `turn` starts; "tool": tool `name` is about to run `detail` (a command
    or "view <path>") with `tool_input`; "tool_done": it finished (`is_error`, `result`: its
    last line, `output`: what went back to the model, already cut to the output limit);
    "usage": one API request's `usage`, which the caller stores; "text": the model said `detail`.
    `tool_id` pairs a "tool" with its "tool_done".
    """

    kind: EventKind
    turn: int
    name: str = ""
    detail: str = ""
    usage: Usage | None = None
    is_error: bool = False
    result: str = ""
    tool_id: str = ""
    tool_input: dict[str, Any] | None = None
    output: str = ""


EventHandler = Callable[[AgentEvent], Awaitable[None]]
