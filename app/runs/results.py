"""What a run's phases hand on to the next, as small frozen values made once.

The pipeline (app/runs/pipeline.py) passes each on as it is made: the `Workspace` once the
checkout and its sandbox exist, the `Assignment` once the task is written, an `Attempt`
once the agent worked and its change was verified. A limit that stopped the agent is a
`StoppedAtLimit`, on the closing report and the Slack card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from app.agent.prompts import AgentTask
from app.agent.results import AgentLimits, AgentResult
from app.agent.tools import ToolBox
from app.runs.texts import Verification
from app.workspace.checkout import Checkout
from app.workspace.sandbox import Sandbox


@dataclass(frozen=True)
class Workspace:
    """The run's checkout, the sandbox its commands run in, the agent's tools over it, and
    the installation token git pushes with (never shown to the agent, nor in a repr)."""

    checkout: Checkout
    sandbox: Sandbox
    toolbox: ToolBox
    token: str = field(repr=False)


@dataclass(frozen=True)
class Assignment:
    """What the agent is asked and within which limits."""

    request: str  # the run's extra instructions (a retry's, a CI failure, Slack's)
    task_with: Callable[[str], AgentTask]  # the task, given extra instructions
    limits: AgentLimits

    def task(self, feedback: str = "") -> AgentTask:
        """The task with the run's request (and a second attempt's feedback, if any)."""
        return self.task_with(f"{self.request}\n\n{feedback}".strip() if feedback else self.request)


@dataclass(frozen=True)
class Attempt:
    """What the agent did (both attempts, once there was a second) and how it was verified.

    `began` is when the agent first started (time.time()): ignored files changed since are
    its, not setup's, and stay out of the review's outcome checks' trees."""

    result: AgentResult
    verification: Verification
    began: float


@dataclass(frozen=True)
class StoppedAtLimit:
    """A limit stopped the agent: why, the turns a Continue would get, the dollars so far."""

    reason: str
    turns: int
    cost_usd: float
