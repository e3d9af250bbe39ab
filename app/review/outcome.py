"""The outcome checks: what the tests do, not how the diff reads (SWE-bench's way of judging).

After the agent's verification passed, in scratch trees beside the checkout, offline:

- **pass-to-pass**: the base commit's tests and test infrastructure over the change's code.
  Every test that passed on the base must pass there; none may be skipped, xfailed or no
  longer collected. A test that failed on the base and fails there too, while the change
  edited tests or their infrastructure, passes in the agent's run only through those edits.
- **fail-to-pass**: the tests the change added or edited (and its test infrastructure) over
  the base's code. A new test that passes there does not test the fix; a test that failed
  on the base and passes there now was rewritten to pass without the fix.

Tests are compared by id, from the runner's structured report. Where no report can be read,
the runs are judged by exit status and the report says so. The base's own results are cached
per repository, base commit and command (`BaseResultsCache`), so retries, CI repairs and many
runs on one base pay for the base run once.

The modules: this one (`OutcomeChecks`, the checks of one process, and the base results'
cache), `outcome_look` (one look: trees, runs, comparisons), `suite_runs` (one test command
run in a sandbox), `outcome_report` (what they report).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from app import metrics
from app.log import describe_error
from app.review.outcome_look import Look, SandboxFor
from app.review.outcome_report import OutcomeReport, SuiteConfig
from app.review.reports import Results
from app.review.trees import Scratch
from app.workspace.checkout import Checkout
from app.workspace.run_home import SandboxHome
from app.workspace.toolchains import Toolchains

log = logging.getLogger(__name__)


class BaseResultsCache(Protocol):
    """Where the base's results are kept between runs (the pipeline's: the store's kv)."""

    async def get(self, repo: str, base_sha: str, variant: str) -> dict[str, Any] | None: ...

    async def put(
        self, repo: str, base_sha: str, variant: str, results: dict[str, Any]
    ) -> None: ...


class OutcomeChecks:
    """The outcome checks of one process: one per pipeline, sharing the base-results cache
    and in-flight base runs (two runs on one base at once run it once)."""

    def __init__(self, sandbox_for: SandboxFor, cache: BaseResultsCache | None = None) -> None:
        self.sandbox_for = sandbox_for
        self.cache = cache
        self.base_runs = 0  # base runs made by this process (the rest came from the cache)
        self._flights: dict[str, asyncio.Future[Results]] = {}

    async def check(
        self,
        checkout: Checkout,
        *,
        repo: str,
        tests: SuiteConfig,
        since: float | None = None,
        known: dict[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        home: SandboxHome | None = None,
        toolchains: Toolchains | None = None,
    ) -> OutcomeReport:
        """Run the checks on the checkout as it is now; the checkout is only read. `env`: the
        repository's own variables (`env:`), which its tests see here as in `verify:`;
        `home`: HOME for the test runs, with the package caches setup filled; `toolchains`:
        the run's, as `verify:` has them."""
        started = time.monotonic()
        scratch = Scratch(checkout, since, known if known is not None else {})
        try:
            look = Look(self.sandbox_for, self.base_results, checkout, scratch, repo, tests)
            look.env = dict(env or {})
            look.home = home
            look.toolchains = toolchains or Toolchains()
            report = await look.run()
        finally:
            await asyncio.shield(scratch.remove())
        report.seconds = time.monotonic() - started
        for finding in report.findings:
            metrics.review_outcome_findings.labels(finding.check).inc()
        metrics.review_outcome_seconds.labels(report.base_source).observe(report.seconds)
        return report

    async def base_results(
        self, key: tuple[str, str, str], produce: Callable[[], Awaitable[Results]]
    ) -> tuple[Results, bool]:
        """The base's results for `key` (repo, sha, variant): cached, another run's in
        flight, or `produce`d now and cached. True when they were not run now."""
        repo, sha, variant = key
        if self.cache is not None:
            try:
                stored = await self.cache.get(repo, sha, variant)
            except Exception as exc:  # the cache is an optimisation: a miss, not a failure
                log.warning("could not read cached base results: %s", describe_error(exc))
                stored = None
            found = Results.from_dict(stored) if isinstance(stored, dict) else None
            if found is not None:
                metrics.review_base_results.labels("cached").inc()
                return found, True
        flight_key = "\0".join(key)
        if flight_key in self._flights:
            metrics.review_base_results.labels("cached").inc()
            return await asyncio.shield(self._flights[flight_key]), True
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = future
        try:
            results = await produce()
            self.base_runs += 1
            metrics.review_base_results.labels("ran").inc()
            future.set_result(results)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter that is gone leaves no warning
            raise
        finally:
            del self._flights[flight_key]
        if self.cache is not None and _cacheable(results):
            try:
                await self.cache.put(repo, sha, variant, results.to_dict())
            except Exception as exc:
                log.warning("could not cache base results: %s", describe_error(exc))
        return results, False


def _cacheable(results: Results) -> bool:
    """A run cut short (a timeout, a limit) says nothing about the next run: not kept."""
    return results.exit_code is not None
