"""The review's outcome checks (app/review) as a run uses them: the base's results kept in the
store's kv, the sandbox the checks run in, the record on the run page.

app/review may not import the store, so the cache it asks for (`BaseResultsCache`) is built
here, over the `review-base` namespace this module owns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.log import describe_error
from app.review.outcome import OutcomeChecks
from app.review.outcome_report import OutcomeReport, SuiteConfig
from app.runs.results import Attempt, Workspace
from app.store import Store
from app.store.kv import Namespace, mapping
from app.workspace.run_home import SandboxHome
from app.workspace.sandbox import Sandbox

if TYPE_CHECKING:
    from app.runs.context import RunContext

log = logging.getLogger(__name__)

# "<owner/name>@<base sha>/<variant>" -> a test command's results on that commit (by test id).
_BASE_RESULTS: Namespace[dict[str, Any]] = Namespace("review-base", owner=__name__, decode=mapping)


class StoredBaseResults:
    """`BaseResultsCache` over the store's kv: shared by every process on one database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _key(repo: str, base_sha: str, variant: str) -> str:
        return f"{repo.lower()}@{base_sha}/{variant}"

    async def get(self, repo: str, base_sha: str, variant: str) -> dict[str, Any] | None:
        return await _BASE_RESULTS.get(self.store, self._key(repo, base_sha, variant))

    async def put(self, repo: str, base_sha: str, variant: str, results: dict[str, Any]) -> None:
        await _BASE_RESULTS.put(self.store, self._key(repo, base_sha, variant), results)


def outcome_checks(settings: Settings, store: Store) -> OutcomeChecks:
    """The process's outcome checks: the runs' own sandbox settings, the store's cache."""

    def sandbox_for(tree: Path) -> Sandbox:
        return Sandbox.for_settings(settings, tree)

    return OutcomeChecks(sandbox_for, StoredBaseResults(store))


def sandbox_env_of(sandbox: Sandbox) -> dict[str, str]:
    """The repository's variables (`env:`, devcontainer.json) its run's sandbox was given."""
    return dict(sandbox.repository_env)


async def check_outcome(
    ctx: RunContext, workspace: Workspace, attempt: Attempt, checks: OutcomeChecks
) -> OutcomeReport:
    """The checks on the run's change as it is now, recorded on the run page. A failure of
    the checks themselves is no finding and no pass either: the report's `error` says it,
    and the review counts as not done (as when the judge is unavailable)."""
    checkout, sandbox = workspace.checkout, workspace.sandbox
    config = ctx.config
    # The home as setup left it: what the agent wrote into the run's home never reaches the
    # checks (their base results are kept for later runs).
    home = SandboxHome(checkout.setup_home) if checkout.setup_home is not None else None
    tests = SuiteConfig(
        commands=config.review_test_commands, files=config.review_test_files, verify=config.verify
    )
    try:
        report = await checks.check(
            checkout,
            repo=ctx.run.repo,
            tests=tests,
            since=attempt.began,
            known=ctx.ignored_links,
            env=sandbox_env_of(sandbox),
            home=home,
            toolchains=sandbox.toolchains,  # the run's choice, as `verify:` has it
        )
    except Exception as exc:
        reason = describe_error(exc)
        log.warning("the outcome checks of run %s failed: %s", ctx.run.id, reason)
        report = OutcomeReport(error=reason)
    await ctx.store.runs.add_step(ctx.run.id, "review", report.summary())
    await ctx.tracker.events.record("outcome", report.to_event())
    return report
