"""A run's way out of the sandbox, phase by phase: the proxy while the phase runs (none when
its list is empty), and a summary of its connections on the run once it ends."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from app.network_policy import Cap
from app.runs.context import RunContext
from app.workspace.egress import NetworkSummary, phase_proxy, proxy_config

log = logging.getLogger(__name__)

PHASE_SETTINGS = {"setup": "setup_network", "agent": "network"}


@contextlib.asynccontextmanager
async def phase_network(ctx: RunContext, cap: Cap, phase: str) -> AsyncIterator[None]:
    """The sandbox reaches `phase`'s list (setup's or the agent's) inside this block only.

    The summary lands on the RunContext (`ctx.network[phase]`), as a run step ("network")
    and on the tracking comment, however the phase ends.
    """
    _checkout, sandbox, _tools = ctx.work
    plan = ctx.network_plan
    rules = plan.setup if phase == "setup" else plan.agent
    config = proxy_config(rules, setting=PHASE_SETTINGS[phase], cap=cap)
    summaries: list[NetworkSummary] = []
    try:
        async with phase_proxy(config, phase=phase, summaries=summaries) as proxy:
            sandbox.proxy = proxy
            yield
    finally:
        sandbox.proxy = None
        for summary in summaries:
            ctx.network[phase] = summary
            log.info("run %s, %s network: %s", ctx.run.id, phase, summary.describe())
            # Every name as the sandbox sent it stays in Honk's own log: the tracking
            # comment, the run's steps and Slack get the public line only.
            for line in summary.details():
                log.debug("run %s, %s network: %s", ctx.run.id, phase, line)
            await ctx.tracker.network(phase, summary.describe())
