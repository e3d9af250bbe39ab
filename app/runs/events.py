"""A run's events into the store as they happen: redacted, bounded per run, cuts noted.

The run page reads them back (through the store), so what the agent said and ran, each
phase, the verification and the diff survive a restart and are served by any process.
Recording never fails a run: a store error is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from app.agent.results import AgentEvent, AgentLimits
from app.agent.tools import cut_middle
from app.log import describe_error, redact
from app.models import RunState
from app.runs.texts import Verification
from app.store import EventTotals, Store

log = logging.getLogger(__name__)

# A run's transcript (the agent's text and tool calls) in all; phases, the verification,
# the diff and the end are always kept (each bounded on its own).
MAX_RUN_CHARS = 2_000_000
MAX_RUN_EVENTS = 5_000
MAX_FIELD_CHARS = 20_000  # one text, command, edit or output: its middle is cut
MAX_DIFF_CHARS = 400_000  # the whole diff; past it, files are named but not shown
MAX_DIFF_FILE_CHARS = 100_000
_DIFF_FILE = re.compile(r"^diff --git ", re.MULTILINE)
_DIFF_PATH = re.compile(r"^diff --git a/(.*) b/(.*)$")

TRANSCRIPT_KINDS = frozenset({"turn", "text", "tool", "tool_done"})


class RunEvents:
    """One per run (attempt): appends its events to the store within the run's bounds."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        *,
        max_chars: int = MAX_RUN_CHARS,
        max_events: int = MAX_RUN_EVENTS,
        max_field: int = MAX_FIELD_CHARS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.max_chars = max_chars
        self.max_events = max_events
        self.max_field = max_field
        self._totals: EventTotals | None = None
        self.dropped_events = 0
        self.dropped_chars = 0
        self._noted = False

    async def record(
        self,
        kind: str,
        data: dict[str, Any],
        *,
        essential: bool = True,
        field_limit: int | None = None,
    ) -> None:
        """Store one event, redacted and bounded; a transcript event past the run's bound is
        counted and dropped (the first drop leaves a note)."""
        try:
            clean = _bounded(_redacted(data), field_limit or self.max_field)
            size = len(json.dumps(clean))
            totals = await self._loaded()
            full = totals.count + 1 > self.max_events or totals.size + size > self.max_chars
            if full and not essential:
                self.dropped_events += 1
                self.dropped_chars += size
                if not self._noted:
                    self._noted = True
                    await self._store("truncated", {"note": self._cut_note(first=True)})
                return
            await self._store(kind, clean)
        except Exception as exc:
            reason = describe_error(exc)
            log.warning("could not record a %s event of run %s: %s", kind, self.run_id, reason)

    async def agent(self, event: AgentEvent) -> None:
        """The agent's turns, text and tool calls (usage goes to the run's totals instead)."""
        if event.kind == "turn":
            await self.record("turn", {"turn": event.turn}, essential=False)
        elif event.kind == "text":
            await self.record("text", {"turn": event.turn, "text": event.detail}, essential=False)
        elif event.kind == "tool":
            data = {
                "turn": event.turn,
                "id": event.tool_id,
                "name": event.name,
                "detail": event.detail,
                "input": dict(event.tool_input or {}),
            }
            await self.record("tool", data, essential=False)
        elif event.kind == "tool_done":
            data = {
                "turn": event.turn,
                "id": event.tool_id,
                "name": event.name,
                "detail": event.detail,
                "is_error": event.is_error,
                "output": event.output,
            }
            await self.record("tool_done", data, essential=False)

    async def agent_started(self, model: str, limits: AgentLimits) -> None:
        data = {"model": model, "max_turns": limits.max_turns, "max_seconds": limits.max_seconds}
        await self.record("agent", data)

    async def subject(self, title: str) -> None:
        """What the run works on, by its title (the issue's as approved, else the PR's or the
        request's first line): the run page's heading."""
        await self.record("subject", {"title": title})

    async def phase(self, name: str, note: str = "") -> None:
        await self.record("phase", {"name": name, "note": note})

    async def setup_command(
        self,
        index: int,
        command: str,
        origin: str,
        *,
        exit_code: int | None = None,
        output: str | None = None,
        limit: str | None = None,
        timed_out: bool = False,
    ) -> None:
        """One setup command: recorded as it starts (`output` None), then again when it ends
        (the same `index`: the page shows the second in the first's place)."""
        data: dict[str, Any] = {"index": index, "command": command, "origin": origin}
        if output is not None:
            data |= {
                "exit_code": exit_code,
                "passed": exit_code == 0,
                "output": output,
                "limit": limit,
                "timed_out": timed_out,
            }
        await self.record("setup", data)

    async def note(self, text: str) -> None:
        """Something Honk did, or did not do, that the reader should know (Markdown of Honk's,
        names from the repository's files as inline code)."""
        await self.record("note", {"text": text})

    async def verification(self, verification: Verification) -> None:
        await self.record(
            "verification",
            {
                "command": verification.command,
                "passed": verification.passed,
                "output": verification.output,
                "source": verification.source,
                "summary": verification.describe(),
            },
        )

    async def review(self, record: dict[str, Any]) -> None:
        """The review's verdict and its reasons, as runs/review.py decided them (the judge's
        words as it wrote them: the page makes them inert when it shows them)."""
        await self.record("review", record)

    async def diff(self, text: str) -> None:
        """The change as published, per file; a huge diff keeps its first files whole."""
        await self.record("diff", split_diff(text), field_limit=MAX_DIFF_FILE_CHARS + 1)

    async def finished(
        self, state: RunState, *, error: str | None = None, note: str = "", summary: str = ""
    ) -> None:
        """The end, with the agent's summary (its last message): kept whatever the
        transcript's bound dropped, so the page can lead with it."""
        if self.dropped_events:
            await self._store("truncated", {"note": self._cut_note(first=False)})
        data = {"state": state.value, "error": error, "note": note, "summary": summary}
        await self.record("finished", data)

    async def _loaded(self) -> EventTotals:
        if self._totals is None:  # a run claimed again carries on where it stopped
            self._totals = await self.store.events.totals(self.run_id)
        return self._totals

    async def _store(self, kind: str, data: dict[str, Any]) -> None:
        size = len(json.dumps(data))
        event = await self.store.events.add(self.run_id, kind, data, size=size)
        totals = await self._loaded()
        self._totals = EventTotals(totals.count + 1, totals.size + size, event.seq)

    def _cut_note(self, *, first: bool) -> str:
        limit = f"{self.max_chars:,} characters or {self.max_events:,} events"
        if first:
            return f"The transcript reached its limit ({limit}); later agent events are left out."
        return (
            f"{self.dropped_events:,} agent events ({self.dropped_chars:,} characters) were left "
            f"out of this transcript (its limit: {limit})."
        )


def split_diff(text: str) -> dict[str, Any]:
    """A unified diff as {"files": [{path, patch, added, removed, cut}], "omitted": [paths]}."""
    files: list[dict[str, Any]] = []
    omitted: list[str] = []
    budget = MAX_DIFF_CHARS
    starts = [m.start() for m in _DIFF_FILE.finditer(text)]
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        patch = text[start:end]
        header = patch.split("\n", 1)[0]
        match = _DIFF_PATH.match(header)
        path = match.group(2) if match else header.removeprefix("diff --git ")
        if budget <= 0:
            omitted.append(path)
            continue
        lines = patch.splitlines()
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        limit = min(MAX_DIFF_FILE_CHARS, budget)
        cut = len(patch) > limit
        if cut:
            patch = patch[:limit].rsplit("\n", 1)[0] + "\n"
        budget -= len(patch)
        files.append({"path": path, "patch": patch, "added": added, "removed": removed, "cut": cut})
    return {"files": files, "omitted": omitted}


def _redacted(value: Any) -> Any:
    """Every string in `value` through the log redactor: no secret reaches the store."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _bounded(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return cut_middle(value, limit)
    if isinstance(value, dict):
        return {k: _bounded(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v, limit) for v in value[:100]]
    return value
