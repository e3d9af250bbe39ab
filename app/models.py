"""Plain data shared by every layer: repositories, runs and their states, token usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # a PR was opened (or updated)
    NO_CHANGE = "no_change"  # the agent concluded nothing should change
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


ACTIVE_STATES = (RunState.QUEUED, RunState.RUNNING)


class ReviewVerdict(StrEnum):
    """The review's verdict on a run's change (app/runs/review.py), stored on the run."""

    APPROVED = "approved"
    RECOVERED = "recovered"  # vetoed, then the agent's second attempt was approved
    VETOED = "vetoed"  # by the checks of the diff or the model judge
    # The tests' outcome checks found what stops the change, whatever the judge said.
    OUTCOME = "outcome"
    UNAVAILABLE = "unavailable"  # the judge (or the outcome checks) could not be done; a draft
    SKIPPED = "skipped"  # no review: the run ended before one, or every part is off

    @property
    def stopped(self) -> bool:
        """The change was objected to, and still is."""
        return self in (ReviewVerdict.VETOED, ReviewVerdict.OUTCOME)


class RunKind(StrEnum):
    ISSUE = "issue"  # an issue labelled `honk` (or asked for from Slack)
    RETRY = "retry"  # `/honk retry` on a Honk PR
    CI_FIX = "ci_fix"  # automatic repair after red CI
    CONTINUE = "continue"  # a run that stopped at its limit, carried on from Slack
    FLEET = "fleet"  # one repository of a fleet change (`fleet_id`): no issue, a PR only


@dataclass(frozen=True)
class RepoRef:
    owner: str
    name: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def parse(cls, full_name: str) -> RepoRef:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"not an owner/name repository: {full_name!r}")
        return cls(owner, name)

    def __str__(self) -> str:
        return self.full_name


# List prices in dollars per million tokens: (input, output). Cache writes cost 1.25x
# input, cache reads 0.1x input (Anthropic's published pricing).
MODEL_PRICES: dict[str, tuple[float, float]] = {
    "opus-4": (15.0, 75.0),
    "opus-4-5": (5.0, 25.0),
    "sonnet": (3.0, 15.0),
    "haiku-4": (1.0, 5.0),
    "haiku-3-5": (0.8, 4.0),
}


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.requests + other.requests,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.cache_creation_input_tokens - other.cache_creation_input_tokens,
            self.cache_read_input_tokens - other.cache_read_input_tokens,
            self.requests - other.requests,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def cost_usd(self, model: str) -> float:
        price_in, price_out = _price(model)
        return (
            self.input_tokens * price_in
            + self.cache_creation_input_tokens * price_in * 1.25
            + self.cache_read_input_tokens * price_in * 0.1
            + self.output_tokens * price_out
        ) / 1_000_000

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "requests": self.requests,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(**{k: int(data.get(k) or 0) for k in cls().to_dict()})

    def describe(self, model: str) -> str:
        return (
            f"{self.input_tokens:,} in / {self.output_tokens:,} out / "
            f"{self.cache_read_input_tokens + self.cache_creation_input_tokens:,} cached tokens, "
            f"${self.cost_usd(model):.2f}"
        )


def _price(model: str) -> tuple[float, float]:
    for key in ("opus-4-5", "opus-4-6", "haiku-4", "haiku-3-5"):
        if key in model:
            return MODEL_PRICES.get(key, MODEL_PRICES["opus-4-5"])
    if "opus" in model:
        return MODEL_PRICES["opus-4"]
    if "haiku" in model:
        return MODEL_PRICES["haiku-4"]
    return MODEL_PRICES["sonnet"]


class SlackThread(NamedTuple):
    """Where a run reports in Slack: the channel id and the ts of the thread's root message."""

    channel: str
    ts: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.ts}"


@dataclass
class Step:
    name: str
    at: datetime
    detail: str = ""


@dataclass
class Run:
    """One unit of work for the agent: a row in the runs table, which is also the queue."""

    id: int
    repo: str  # owner/name
    installation_id: int
    kind: RunKind
    state: RunState
    issue_number: int | None = None
    requested_by: str | None = None
    instructions: str = ""  # extra text: retry instructions, CI failure, Slack request
    branch: str | None = None
    base_branch: str | None = None
    pr_number: int | None = None
    pr_url: str | None = None
    head_sha: str | None = None
    tracking_comment_id: int | None = None
    slack_thread: SlackThread | None = None
    delivery_id: str | None = None
    error: str | None = None
    attempts: int = 0  # how many times a worker claimed it
    round: int = 0  # CI repair round
    cancel_requested: bool = False
    review: str | None = None  # the review's verdict: a ReviewVerdict's value
    fleet_id: int | None = None  # the fleet change this run is one repository of
    usage: Usage = field(default_factory=Usage)
    steps: list[Step] = field(default_factory=list)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def repo_ref(self) -> RepoRef:
        return RepoRef.parse(self.repo)

    @property
    def slack_channel(self) -> str | None:
        return self.slack_thread.channel if self.slack_thread else None

    @property
    def slack_ts(self) -> str | None:
        return self.slack_thread.ts if self.slack_thread else None


_SHA_HOLDERS = ("check_suite", "check_run", "workflow_run", "deployment")


def delivery_subject(event: str, payload: dict[str, Any]) -> str | None:
    """What a delivery is about (an issue or PR, a commit, an installation), or None.

    Deliveries about one subject are handled one after another in the order they arrived, by
    whichever process: the dispatcher chains them in a process, the store's claim across them.
    """
    repo = (payload.get("repository") or {}).get("full_name")
    for key in ("issue", "pull_request"):
        held = payload.get(key)
        number = held.get("number") if isinstance(held, dict) else None
        if repo and number is not None:
            return f"{repo}#{number}"
    for key in _SHA_HOLDERS:
        holder = payload.get(key)
        sha = (holder.get("head_sha") or holder.get("sha")) if isinstance(holder, dict) else None
        if repo and sha:
            return f"{repo}@{sha}"
    if repo and payload.get("sha"):  # status events
        return f"{repo}@{payload['sha']}"
    if event.startswith("installation"):
        return f"installation:{(payload.get('installation') or {}).get('id')}"
    return None
