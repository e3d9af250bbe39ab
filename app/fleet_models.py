"""Plain data of fleet changes: one request taken to many repositories (see docs/fleet.md).

A fleet is a row of its own; each repository it chose is a `FleetRepo` whose state follows
its run, its PR and CI; every change of a repository's state is kept as a transition, from
which the burndown is drawn. Every layer may read these; only `app/store/fleets.py` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.models import SlackThread


class FleetState(StrEnum):
    """Where a fleet is: planned, its canary, waiting for a go, running, paused, ended."""

    PLANNED = "planned"  # resolved to repositories, nothing queued yet
    CANARY = "canary"  # the first few repositories run
    WAITING = "waiting"  # the canary is done: the requester says Continue (or Stop)
    RUNNING = "running"  # fanned out
    PAUSED = "paused"  # by a person, or by itself after failures in a row (`state_reason`)
    STOPPED = "stopped"  # by a person: nothing more is queued, running runs are cancelled
    DONE = "done"  # every repository reached an end

    @property
    def active(self) -> bool:
        """The conductor still has work here (queueing or following runs)."""
        return self in (FleetState.PLANNED, FleetState.CANARY, FleetState.RUNNING)

    @property
    def ended(self) -> bool:
        return self in (FleetState.STOPPED, FleetState.DONE)


class FleetRepoState(StrEnum):
    """One repository of a fleet, from planned to an end (the fleet page's counts)."""

    PLANNED = "planned"
    QUEUED = "queued"
    RUNNING = "running"
    PR_OPEN = "pr_open"
    CI_GREEN = "ci_green"
    CI_RED = "ci_red"
    APPROVED = "approved"  # a person approved the PR
    MERGED = "merged"
    CLOSED = "closed"  # the PR closed unmerged (by a person, or the fleet rolled back)
    VETOED = "vetoed"  # the review stopped the change: a draft PR, or none
    FAILED = "failed"  # the run failed (setup, verification, the agent), or found no change
    SKIPPED = "skipped"  # chosen by the selection but left out (`reason`), never run

    @property
    def waiting(self) -> bool:
        """Not yet queued."""
        return self is FleetRepoState.PLANNED

    @property
    def in_flight(self) -> bool:
        """A run of it is queued or working."""
        return self in (FleetRepoState.QUEUED, FleetRepoState.RUNNING)

    @property
    def has_pr(self) -> bool:
        """Its PR is open: CI, approval and merging still follow."""
        return self in (
            FleetRepoState.PR_OPEN,
            FleetRepoState.CI_GREEN,
            FleetRepoState.CI_RED,
            FleetRepoState.APPROVED,
        )

    @property
    def settled(self) -> bool:
        """The run ended (with a PR or without one): what the burndown counts as done."""
        return not self.waiting and not self.in_flight

    @property
    def failed(self) -> bool:
        """An end that a bulk retry takes up again."""
        return self in (FleetRepoState.FAILED, FleetRepoState.VETOED)


class FleetOrigin(StrEnum):
    """Where the fleet was asked for."""

    SLACK = "slack"
    ISSUE = "issue"  # an issue labelled `honk-fleet`
    CLI = "cli"  # `honk fleet` on the operator's command line


@dataclass(frozen=True)
class FleetTarget:
    """A repository the selection chose, or left out with its reason (`skipped`)."""

    repo: str  # owner/name
    skipped: str | None = None


@dataclass(frozen=True)
class NewFleet:
    """What the requester asked for, resolved to targets by the selection."""

    installation_id: int
    requested_by: str  # GitHub login
    request: str  # the change to make, as the requester wrote it
    selection: str  # the selection as written (the `repositories:` block)
    origin: FleetOrigin
    canary_size: int = 1
    issue_repo: str | None = None  # the `honk-fleet` issue, when there is one
    issue_number: int | None = None
    slack_thread: SlackThread | None = None


@dataclass
class Fleet:
    """A fleet's row: what was asked, by whom, where it reports, where it is."""

    id: int
    installation_id: int
    requested_by: str
    request: str
    selection: str
    origin: FleetOrigin
    canary_size: int
    state: FleetState
    state_reason: str | None = None
    issue_repo: str | None = None
    issue_number: int | None = None
    summary_comment_id: int | None = None  # the fleet issue's summary, edited in place
    slack_thread: SlackThread | None = None
    slack_summary_ts: str | None = None  # the thread's summary message, edited in place
    milestones: list[str] = field(default_factory=list)  # announced once each
    version: int = 0  # +1 on every change of the fleet or one of its repositories
    reported_version: int = 0  # the version its summaries last showed
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def issue(self) -> str | None:
        """owner/name#N of the fleet issue, if any."""
        if self.issue_repo and self.issue_number:
            return f"{self.issue_repo}#{self.issue_number}"
        return None


@dataclass
class FleetRepo:
    """One repository of a fleet: its state, its latest run and PR, what it cost."""

    fleet_id: int
    repo: str
    position: int  # the selection's order; the canary is the first `canary_size` not skipped
    state: FleetRepoState
    reason: str | None = None  # why it was skipped or failed, for people
    run_id: int | None = None
    pr_number: int | None = None
    pr_url: str | None = None
    head_sha: str | None = None
    runs: int = 0  # how many runs the fleet queued for it
    cost_usd: float = 0.0
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FleetTransition:
    """A repository entered `state` at `at` (the burndown is drawn from these)."""

    repo: str
    state: FleetRepoState
    at: datetime
