"""What one run's phases share: the run, its GitHub client and tracker, what preparing found.

What the later phases make (the workspace, the agent's assignment, its attempt, the review)
is handed from phase to phase as values (app/runs/results.py), not kept here half-filled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.agent.results import AgentResult
from app.errors import RunFailure
from app.github.client import GitHubClient
from app.models import Run, RunState, Usage
from app.repo_config import NetworkPlan, RepoConfig, RunLimits
from app.runs.environment import RunEnvironment
from app.runs.kinds import IssueRun, rules_for
from app.runs.subject import Subject
from app.runs.texts import FailureDetails
from app.runs.tracker import RunTracker
from app.store import Store
from app.workspace.egress_summary import NetworkSummary


class RunCancelled(Exception):
    """Someone asked for the run to stop."""


class LimitStop(RunFailure):
    """A limit stopped the agent before it changed anything: the run fails, and people may
    carry on (Continue) with a fresh budget of `turns`."""

    def __init__(self, reason: str, turns: int) -> None:
        super().__init__(f"{reason} before any change was made")
        self.reason = reason
        self.turns = turns


class SetupFailed(RunFailure):
    """A setup command failed; `details` say what it printed last and what was refused."""

    details: FailureDetails

    def __init__(self, message: str, details: FailureDetails) -> None:
        super().__init__(message, details=details)


@dataclass
class Outcome:
    state: RunState
    error: str | None = None


@dataclass
class RunContext:
    """One run as it goes through the pipeline's phases: the run and its services, and what
    preparing it found (the repository, the subject, its `.github/honk.yml`, the limits)."""

    run: Run
    gh: GitHubClient  # scoped to the run's repository and RUN_PERMISSIONS
    tracker: RunTracker
    store: Store
    rules: IssueRun = field(init=False)
    repo_info: dict[str, Any] = field(default_factory=dict)
    subject: Subject = field(default_factory=lambda: Subject(None, None, "change"))
    config: RepoConfig = field(default_factory=RepoConfig)
    limits: RunLimits = field(default_factory=lambda: RunLimits(0, 0, 0, 0))  # set by preparing
    network_plan: NetworkPlan = field(default_factory=NetworkPlan)  # what each phase may reach
    # The repository's variables and setup commands (`env:`/`setup:`, or its devcontainer).
    environment: RunEnvironment = field(default_factory=RunEnvironment)
    # Each sandbox phase's connections through the proxy ("setup", "agent"), once it ended.
    network: dict[str, NetworkSummary] = field(default_factory=dict)
    model: str = ""
    # The run's branch and the one its PR goes into, as preparing saved them on the run.
    branch: str = ""
    base_branch: str = ""
    # The agent's latest result, for the report of a run that fails after it (None before).
    result: AgentResult | None = None
    # The fleet's page, for a run of a fleet change (None without one, or without HONK_URL).
    fleet_url: str | None = None
    # What the review's outcome checks linked, across its looks (app/review).
    ignored_links: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rules = rules_for(self.run.kind)

    async def save(self, **fields: Any) -> None:
        """Change the run in the store and in memory alike: the one way a phase records it."""
        await self.store.runs.save(self.run, **fields)

    async def stored_usage(self) -> Usage:
        """The run's usage so far as the store has added it up (agent and review alike)."""
        return (await self.store.runs.get(self.run.id) or self.run).usage
