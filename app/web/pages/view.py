"""A run's stored events as the run page's entries, in order (pure; the templates escape all):
tool calls with their results, setup commands, notes, the diff, verification and review; the
top of the page is run_summary.py's.

Everything here comes from the store; transcript text is untrusted and is only ever
handed to the templates (which escape it) or to Pygments (which escapes it too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from app.store import RunEvent
from app.web.pages import markdown
from app.web.pages.run_summary import review_view, state_label

FOLD_LINES = 6  # a tool's output shows this many lines; the rest opens with <details>
OPEN_DIFF_LINES = 400  # a file's diff up to this long is shown open
HIGHLIGHT = HtmlFormatter(nowrap=True, classprefix="hl-")
SECTION_OF = {kind: kind for kind in ("verification", "diff", "review", "network")}


@dataclass
class Entry:
    """One piece of the page: `key` is its element id (replaced in place when it changes)."""

    key: str
    kind: str
    section: str  # transcript, verification, diff, review or network
    data: dict[str, Any] = field(default_factory=dict)


GONE = "gone"  # an Entry of this kind takes the entry with its key off the page


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


class Transcript:
    """The events as page entries, in order, as they come: a tool call and its result become
    one entry; a phase heading with nothing under it goes when the next phase starts, and when
    the run ends its last phase says how it ended (not "pushing" forever)."""

    def __init__(self) -> None:
        self.tools: dict[str, RunEvent] = {}
        self._phase: Entry | None = None  # the transcript's last phase heading
        self._filled = False  # whether anything was shown under it

    def feed(self, event: RunEvent) -> list[Entry]:
        """What the event changes: entries to add or to replace (by key), and GONE ones."""
        if event.kind == "tool":
            self.tools[str(event.data.get("id"))] = event
        made = entry(event, self.tools)
        if made is None:
            return []
        if made.section != "transcript":
            return [made]
        changes: list[Entry] = []
        if made.kind == "phase":
            if self._phase is not None and not self._filled:
                changes.append(Entry(self._phase.key, GONE, "transcript"))
            self._phase, self._filled = made, False
        elif made.kind == "finished":
            if self._phase is not None:
                ended = {**self._phase.data, "note": made.data["label"]}
                self._phase = Entry(self._phase.key, "phase", "transcript", ended)
                changes.append(self._phase)
                self._filled = True
        else:
            self._filled = True
        changes.append(made)
        return changes


def entries(events: list[RunEvent]) -> list[Entry]:
    """The page's entries for these events, in order (see Transcript)."""
    transcript = Transcript()
    shown: dict[str, Entry] = {}  # by key; a later entry with the same key replaces it in place
    for event in events:
        for change in transcript.feed(event):
            if change.kind == GONE:
                shown.pop(change.key, None)
            else:
                shown[change.key] = change
    return list(shown.values())


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
    if kind == "setup":
        return Entry(f"setup-{_safe(str(data.get('index')))}", kind, "transcript", _setup(data))
    if kind == "note":  # Honk's own Markdown, names from the repository as code spans
        return Entry(
            f"ev-{event.seq}",
            kind,
            "transcript",
            {"html": markdown.render_ours(str(data.get("text") or ""))},
        )
    if kind == "outcome":  # Honk's own words: which of the tests' outcome checks caught what
        return Entry(f"ev-{event.seq}", "note", "transcript", {"html": _outcome_html(data)})
    if kind in ("network", "subject"):
        return None  # summed up by `network_summary`; the page's heading
    if kind == "review":
        return Entry(_review_key(event), kind, "review", review_view(data))
    if kind == "finished":
        label = state_label(str(data.get("state") or ""))
        return Entry(f"ev-{event.seq}", kind, "transcript", {**data, "label": label})
    section = SECTION_OF.get(kind, "transcript")
    return Entry(f"ev-{event.seq}", kind, section, {**data, "at": event.at, "seq": event.seq})


def _review_key(event: RunEvent) -> str:
    """A verdict on the same look replaces the one recorded before (see review_record)."""
    look = event.data.get("round")
    return f"review-{int(look)}" if isinstance(look, int) else f"ev-{event.seq}"


def _tool(start: RunEvent | None, event: RunEvent) -> dict[str, Any]:
    begun = (start or event).data
    done = event.data if event.kind == "tool_done" else None
    given = begun.get("input")
    tool_input: dict[str, Any] = given if isinstance(given, dict) else {}
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


def _setup(data: dict[str, Any]) -> dict[str, Any]:
    """A setup command as shown: running until its end is recorded, then how it ended."""
    ended = "output" in data
    exit_code = data.get("exit_code")
    if not ended:
        status = "running…"
    elif data.get("timed_out"):
        status = "timed out"
    elif data.get("limit"):
        status = str(data["limit"])
    else:
        status = "ok" if exit_code == 0 else f"exit {exit_code}"
    return {
        "command": str(data.get("command") or ""),
        "origin": str(data.get("origin") or "setup"),
        "running": not ended,
        "failed": ended and exit_code != 0,
        "status": status,
        "output": fold(str(data.get("output") or "")) if ended else None,
    }


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


def _safe(value: str) -> str:
    """An element id from a tool-use id (letters, digits, _ and - only)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in value)[:80]


def _outcome_html(data: dict[str, Any]) -> Markup:
    """The tests' outcome checks as a note: the summary, each finding with its check, the
    notes (a runner judged by exit status, what was left out). Honk's own words, with names
    from the repository as code spans (`render_ours` renders one line each)."""
    summary = markdown.render_ours(str(data.get("summary") or data.get("error") or "no result"))
    findings = [f for f in data.get("findings") or [] if isinstance(f, dict)]
    items = [
        f"{markdown.render_ours(str(f.get('message', '')))} "
        f"({markdown.render_ours(str(f.get('check', '')))})"
        for f in findings
    ] + [markdown.render_ours(str(note)) for note in data.get("notes") or []]
    listed = "".join(f"<li>{item}</li>" for item in items)
    # Every part is escaped by render_ours; the tags around them are Honk's own.
    html = f"<strong>The tests' outcome:</strong> {summary}"
    return Markup(html + (f"<ul>{listed}</ul>" if items else ""))
