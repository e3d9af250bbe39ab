"""What one run's phases share: the run, its GitHub client and tracker, what each phase found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.agent.loop import AgentLimits, AgentResult
from app.agent.prompts import AgentTask
from app.agent.tools import ToolBox
from app.errors import RunFailure
from app.github.client import GitHubClient
from app.models import Run, RunState, Usage
from app.repo_config import NetworkPlan, RepoConfig, RunLimits
from app.runs.environment import RunEnvironment
from app.runs.kinds import IssueRun, rules_for
from app.runs.subject import Subject
from app.runs.texts import FailureDetails, Verification
from app.runs.tracker import RunTracker
from app.store import Store
from app.workspace.checkout import Checkout
from app.workspace.egress import NetworkSummary
from app.workspace.sandbox import Sandbox

if TYPE_CHECKING:
    from app.runs.review import Review


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
    """One run as it goes through the pipeline's phases; each phase fills in what it learns."""

    run: Run
    gh: GitHubClient  # scoped to the run's repository and RUN_PERMISSIONS
    tracker: RunTracker
    store: Store
    rules: IssueRun = field(init=False)
    repo_info: dict[str, Any] = field(default_factory=dict)
    subject: Subject = field(default_factory=lambda: Subject(None, None, "change"))
    config: RepoConfig = field(default_factory=RepoConfig)
    limits: RunLimits | None = None
    network_plan: NetworkPlan = field(default_factory=NetworkPlan)  # what each phase may reach
    # The repository's variables and setup commands (`env:`/`setup:`, or its devcontainer).
    environment: RunEnvironment = field(default_factory=RunEnvironment)
    # Each sandbox phase's connections through the proxy ("setup", "agent"), once it ended.
    network: dict[str, NetworkSummary] = field(default_factory=dict)
    model: str = ""
    token: str = ""  # the installation token git pushes with; never shown to the agent
    checkout: Checkout | None = None
    sandbox: Sandbox | None = None
    toolbox: ToolBox | None = None
    agent_limits: AgentLimits | None = None
    request: str = ""  # the run's extra instructions (a retry's, a CI failure, Slack's)
    task_with: Callable[[str], AgentTask] | None = None  # the task, given extra instructions
    result: AgentResult | None = None
    verification: Verification | None = None
    review: Review | None = None  # the review before the PR (app/runs/review.py)
    # When the agent began (time.time()): ignored files changed since are its, not setup's,
    # and stay out of the outcome checks' trees; and what those checks linked (app/review).
    agent_began: float | None = None
    ignored_links: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rules = rules_for(self.run.kind)

    async def save(self, **fields: Any) -> None:
        """Change the run in the store and in memory alike: the one way a phase records it."""
        await self.store.runs.save(self.run, **fields)

    async def stored_usage(self) -> Usage:
        """The run's usage so far as the store has added it up (agent and review alike)."""
        return (await self.store.runs.get(self.run.id) or self.run).usage

    @property
    def work(self) -> tuple[Checkout, Sandbox, ToolBox]:
        """The checkout and its sandbox, once the phases that make them have run."""
        assert self.checkout and self.sandbox and self.toolbox, "no checkout yet"
        return self.checkout, self.sandbox, self.toolbox

    @property
    def done(self) -> tuple[AgentResult, Verification]:
        """What the agent did and how it was verified, once those phases have run."""
        assert self.result is not None and self.verification is not None, "not verified yet"
        return self.result, self.verification
