"""A run and its stored events as the run page shows them (pure; the templates escape all).

Everything here comes from the store; transcript text is untrusted and is only ever
handed to the templates (which escape it) or to Pygments (which escapes it too).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from app.models import Run, RunState
from app.store import RunEvent

FOLD_LINES = 6  # a tool's output shows this many lines; the rest opens with <details>
OPEN_DIFF_LINES = 400  # a file's diff up to this long is shown open
HIGHLIGHT = HtmlFormatter(nowrap=True, classprefix="hl-")
SECTION_OF = {kind: kind for kind in ("verification", "diff", "review", "network")}

STATE_LABELS = {
    RunState.QUEUED: "Queued",
    RunState.RUNNING: "Working",
    RunState.SUCCEEDED: "PR opened",
    RunState.NO_CHANGE: "No change needed",
    RunState.FAILED: "Failed",
    RunState.CANCELLED: "Cancelled",
}


@dataclass
class Entry:
    """One piece of the page: `key` is its element id (replaced in place when it changes)."""

    key: str
    kind: str
    section: str  # transcript, verification, diff, review or network
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Folded:
    head: str
    rest: str = ""
    more: int = 0  # lines in `rest`


def fold(text: str, lines: int = FOLD_LINES) -> Folded:
    parts = text.rstrip("\n").split("\n")
    if len(parts) <= lines + 1:
        return Folded(text.rstrip("\n"))
    return Folded("\n".join(parts[:lines]), "\n".join(parts[lines:]), len(parts) - lines)


def highlighted_diff(text: str) -> Markup:
    """A unified diff as highlighted HTML (Pygments escapes the text)."""
    return Markup(highlight(text, DiffLexer(), HIGHLIGHT))  # Pygments escapes the text


def entries(events: list[RunEvent], *, started: dict[str, RunEvent] | None = None) -> list[Entry]:
    """The events as page entries: a tool call and its result become one entry."""
    tools = started if started is not None else {}
    shown: list[Entry] = []
    where: dict[str, int] = {}  # key -> index in `shown`: a later entry replaces it there
    for event in events:
        if event.kind == "tool":
            tools[str(event.data.get("id"))] = event
        made = entry(event, tools)
        if made is None:
            continue
        if made.key in where:
            shown[where[made.key]] = made
        else:
            where[made.key] = len(shown)
            shown.append(made)
    return shown


def entry(event: RunEvent, tools: dict[str, RunEvent]) -> Entry | None:
    data, kind = event.data, event.kind
    if kind in ("tool", "tool_done"):
        call_id = str(data.get("id") or event.seq)
        start = tools.get(call_id)
        return Entry(f"call-{_safe(call_id)}", "tool", "transcript", _tool(start, event))
    if kind == "diff":
        return Entry("diff", kind, "diff", _diff(data))
    if kind == "verification":
        output = str(data.get("output") or "")
        return Entry("verification", kind, "verification", {**data, "folded": fold(output)})
    if kind == "network":
        return None  # summed up by `network_summary`
    section = SECTION_OF.get(kind, "transcript")
    return Entry(f"ev-{event.seq}", kind, section, {**data, "at": event.at, "seq": event.seq})


def network_summary(events: list[RunEvent]) -> list[tuple[str, str, int]]:
    """(host, verdict, how often) for the run's network events, most frequent first."""
    counts: Counter[tuple[str, str]] = Counter()
    for event in events:
        if event.kind != "network":
            continue
        data = event.data
        host = str(data.get("host") or data.get("destination") or data.get("url") or "?")
        verdict = data.get("verdict") or data.get("action")
        if verdict is None and "allowed" in data:
            verdict = "allowed" if data["allowed"] else "blocked"
        counts[(host, str(verdict or "seen"))] += int(data.get("count") or 1)
    return [(host, verdict, n) for (host, verdict), n in counts.most_common(50)]


def model_of(events: list[RunEvent], default: str) -> str:
    models = [str(e.data.get("model")) for e in events if e.kind == "agent" and e.data.get("model")]
    return models[-1] if models else default


def summary(run: Run, model: str, *, now: datetime | None = None) -> dict[str, Any]:
    """State, tokens, cost and duration, and the phases' timeline."""
    now = now or datetime.now(UTC)
    usage = run.usage
    end = run.finished_at or (now if run.state.active else run.updated_at)
    duration = (end - run.started_at).total_seconds() if run.started_at and end else None
    return {
        "state": run.state.value,
        "label": STATE_LABELS.get(run.state, run.state.value),
        "active": run.state.active,
        "cancel_requested": run.cancel_requested,
        "tokens_in": usage.input_tokens,
        "tokens_out": usage.output_tokens,
        "tokens_cached": usage.cache_read_input_tokens + usage.cache_creation_input_tokens,
        "requests": usage.requests,
        "cost": f"${usage.cost_usd(model):.2f}",
        "model": model,
        "duration": _duration(duration),
        "steps": [
            {"name": s.name, "detail": s.detail, "at": s.at, "time": s.at.strftime("%H:%M:%S")}
            for s in run.steps
        ],
    }


def _tool(start: RunEvent | None, event: RunEvent) -> dict[str, Any]:
    begun = (start or event).data
    done = event.data if event.kind == "tool_done" else None
    tool_input = begun.get("input") if isinstance(begun.get("input"), dict) else {}
    name = str(begun.get("name") or "")
    view: dict[str, Any] = {
        "name": name,
        "turn": begun.get("turn"),
        "detail": str(begun.get("detail") or (done or {}).get("detail") or ""),
        "running": done is None,
        "is_error": bool((done or {}).get("is_error")),
        "output": fold(str((done or {}).get("output") or "")) if done else None,
        "command": None,
        "edit": None,
    }
    if name == "bash" and isinstance(tool_input.get("command"), str):
        view["command"] = tool_input["command"]
    elif name == "str_replace_based_edit_tool":
        view["edit"] = _edit(tool_input)
    return view


def _edit(tool_input: dict[str, Any]) -> dict[str, Any]:
    command = str(tool_input.get("command") or "")
    path = str(tool_input.get("path") or "")
    text = ""
    if command == "str_replace":
        old = str(tool_input.get("old_str") or "").split("\n")
        new = str(tool_input.get("new_str") or "").split("\n")
        text = "\n".join([*(f"-{line}" for line in old), *(f"+{line}" for line in new)])
    elif command == "create":
        text = "\n".join(f"+{line}" for line in str(tool_input.get("file_text") or "").split("\n"))
    elif command == "insert":
        inserted = str(tool_input.get("insert_text") or tool_input.get("new_str") or "")
        text = "\n".join(f"+{line}" for line in inserted.split("\n"))
    folded = fold(text, FOLD_LINES * 2)
    return {
        "command": command,
        "path": path,
        "line": tool_input.get("insert_line"),
        "head": highlighted_diff(folded.head) if folded.head else None,
        "rest": highlighted_diff(folded.rest) if folded.rest else None,
        "more": folded.more,
    }


def _diff(data: dict[str, Any]) -> dict[str, Any]:
    files = []
    for item in data.get("files") or []:
        patch = str(item.get("patch") or "")
        files.append(
            {
                "path": str(item.get("path") or "?"),
                "added": int(item.get("added") or 0),
                "removed": int(item.get("removed") or 0),
                "cut": bool(item.get("cut")),
                "open": patch.count("\n") <= OPEN_DIFF_LINES,
                "html": highlighted_diff(patch),
            }
        )
    return {"files": files, "omitted": [str(p) for p in data.get("omitted") or []]}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not started"
    seconds = max(int(seconds), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _safe(value: str) -> str:
    """An element id from a tool-use id (letters, digits, _ and - only)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in value)[:80]
