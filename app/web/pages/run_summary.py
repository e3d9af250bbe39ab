"""The top of the run page, gathered from the run and its stored events (pure; the templates
escape all): its state, tokens, cost and the phases' timeline (`summary`), the outcome card
(`Highlights` -> `outcome`: the agent's summary, the review's verdict in words), the network's
hosts, the model; the labels the run lists share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.agent.prompts import NO_CHANGE_MARKER
from app.models import ReviewVerdict, Run, RunState
from app.store import RunEvent
from app.web.pages import markdown

PHASES = ("checkout", "agent", "verify", "review", "publish")
INTERNAL_DETAILS = frozenset({"claimed"})  # steps whose detail names Honk's own parts

STATE_LABELS = {
    RunState.QUEUED: "Queued",
    RunState.RUNNING: "Working",
    RunState.SUCCEEDED: "PR opened",
    RunState.NO_CHANGE: "No change needed",
    RunState.FAILED: "Failed",
    RunState.CANCELLED: "Cancelled",
}
# The review's verdict in words, and how it looks (good, bad or plain).
REVIEW_LABELS: dict[str, tuple[str, str]] = {
    ReviewVerdict.APPROVED: ("Approved", "good"),
    ReviewVerdict.RECOVERED: ("Approved on the agent's second attempt", "good"),
    ReviewVerdict.VETOED: ("Vetoed", "bad"),
    ReviewVerdict.OUTCOME: ("Stopped by the tests' outcome", "bad"),
    ReviewVerdict.UNAVAILABLE: ("Not reviewed: the judge could not be asked", "bad"),
    ReviewVerdict.SKIPPED: ("Not reviewed", ""),
}
OUTCOME_KINDS = ("agent", "subject", "review", "finished", "text")  # what Highlights reads
SHOWN_REASONS = 3  # the outcome lists this many of the review's reasons; the card has all


def plural(count: int, word: str, words: str | None = None) -> str:
    """A count and its noun, agreeing: "1 request", "2 requests"."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def when(moment: datetime) -> str:
    """A time with its date and zone, as the page shows it without JavaScript (run.js shows
    it in the reader's own zone)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def review_view(data: dict[str, Any]) -> dict[str, Any]:
    """A review event as shown: its verdict in words, Honk's findings and the judge's reasons
    and summary as Markdown (the judge's made inert first)."""
    verdict = str(data.get("verdict") or data.get("decision") or "")
    label, tone = REVIEW_LABELS.get(verdict, (verdict, ""))
    if (
        verdict == ReviewVerdict.SKIPPED
        and data.get("final")
        and not data.get("checks")
        and not data.get("model")
    ):
        label = "Not reviewed: the checks and the model judge are off for this repository"
    if data.get("final") is False:
        label += ", before the agent's second attempt"
    summary = str(data.get("summary") or data.get("text") or "")
    return {
        "verdict": verdict,
        "label": label,
        "tone": tone,
        "model": data.get("model"),
        "checks": bool(data.get("checks")),
        "reasons": [markdown.render_ours(str(f)) for f in data.get("findings") or []]
        + [markdown.render_inline(str(r)) for r in data.get("reasons") or []],
        "summary": markdown.render(summary) if summary else None,
        "unavailable": data.get("unavailable"),
        "left_out": [str(p) for p in data.get("left_out") or []],
        "beyond_request": bool(data.get("beyond_request")),
    }


def state_label(state: str) -> str:
    """A run state's label, or the state as stored when Honk no longer knows it."""
    try:
        return STATE_LABELS.get(RunState(state), state)
    except ValueError:
        return state


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


@dataclass
class Highlights:
    """What the top of the page tells, gathered from the events as they come (OUTCOME_KINDS):
    what the run is about, the model, the review, the end and the agent's last words."""

    title: str | None = None
    model: str | None = None
    review: dict[str, Any] | None = None  # the last review event's data
    first_review: dict[str, Any] | None = None  # the first look's, when there were two
    finished: dict[str, Any] | None = None
    last_text: str | None = None

    def feed(self, events: list[RunEvent]) -> Highlights:
        for event in events:
            data = event.data
            if event.kind == "agent" and data.get("model"):
                self.model = str(data["model"])
            elif event.kind == "subject" and data.get("title"):
                self.title = str(data["title"])
            elif event.kind == "review":
                if self.first_review is None:
                    self.first_review = data
                self.review = data
            elif event.kind == "finished":
                self.finished = data
            elif event.kind == "text" and str(data.get("text") or "").strip():
                self.last_text = str(data["text"])
        return self

    @property
    def summary(self) -> str:
        """The agent's summary (its last message), once the run has finished."""
        if self.finished is None:
            return ""
        if "summary" in self.finished:  # recorded at the end; empty when the agent said none
            return str(self.finished["summary"] or "").strip()
        # A run that ended before the end recorded a summary: its agent's last message.
        return (self.last_text or "").strip().removeprefix(NO_CHANGE_MARKER).strip()


def outcome(run: Run, highlights: Highlights) -> dict[str, Any]:
    """The outcome card: the agent's summary (a short head, the rest on request), the
    review's verdict and its first reasons, and where the run is while it works."""
    head, rest = markdown.render_split(highlights.summary) if highlights.summary else ("", "")
    review = None
    if highlights.review is not None:
        review = review_view(highlights.review)
        first = highlights.first_review
        if (
            review["verdict"] == ReviewVerdict.RECOVERED
            and first is not None
            and first is not highlights.review
        ):
            review["earlier"] = review_view(first)["reasons"]
    elif run.review:  # the run ended before its review, or before reviews were recorded
        label, tone = REVIEW_LABELS.get(run.review, (run.review, ""))
        if run.review == ReviewVerdict.SKIPPED:
            label = "Not reviewed: the run ended before its review"
        review = {"verdict": run.review, "label": label, "tone": tone, "reasons": []}
    if review is not None:
        review["more"] = max(len(review.get("reasons") or []) - SHOWN_REASONS, 0)
    phases = [step for step in run.steps if step.name in PHASES]
    return {
        "summary": head,
        "summary_rest": rest,
        "review": review,
        "now": (phases[-1].name + (f" · {phases[-1].detail}" if phases[-1].detail else ""))
        if phases and run.state.active
        else "",
    }


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
        "requests": plural(usage.requests, "request"),
        "cost": f"${usage.cost_usd(model):.2f}",
        "model": model,
        "duration": _duration(duration),
        "steps": [
            {
                "name": s.name,
                # A claim's detail is the worker's id: Honk's business, not the reader's.
                "detail": "" if s.name in INTERNAL_DETAILS else s.detail,
                "at": s.at,
                "time": when(s.at),
            }
            for s in run.steps
        ],
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not started"
    seconds = max(int(seconds), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
