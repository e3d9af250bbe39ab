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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app import metrics
from app.log import describe_error
from app.review import reports
from app.review.files import Material
from app.review.reports import ERROR, FAILED, PASSED, SKIPPED, XFAILED, Results, test_name
from app.review.runners import NODE, Runner, choose
from app.review.trees import Change, Scratch, overlay
from app.untrusted import code
from app.workspace.checkout import Checkout
from app.workspace.run_home import SandboxHome
from app.workspace.sandbox import Sandbox
from app.workspace.toolchains import Toolchains

log = logging.getLogger(__name__)

PASS_TO_PASS, FAIL_TO_PASS, BASE = "pass-to-pass", "fail-to-pass", "base"
# Bumped when what a cached base result means changes (how runs are made or read).
RESULTS_VERSION = "1"
MAX_LISTED = 10  # findings of one kind named one by one; the rest are counted
OUTPUT_TAIL = 2000


class BaseResultsCache(Protocol):
    """Where the base's results are kept between runs (the pipeline's: the store's kv)."""

    async def get(self, repo: str, base_sha: str, variant: str) -> dict[str, Any] | None: ...

    async def put(
        self, repo: str, base_sha: str, variant: str, results: dict[str, Any]
    ) -> None: ...


SandboxFor = Callable[[Path], Sandbox]


@dataclass(frozen=True)
class SuiteConfig:
    """Which tests the checks run: `review: tests:` (commands, extra infrastructure globs),
    else the repository's `verify:` when it is a known runner, else Honk's defaults."""

    commands: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    verify: str | None = None


@dataclass(frozen=True)
class OutcomeFinding:
    """One thing the tests' outcome shows: which check, which test, in plain words."""

    check: str  # PASS_TO_PASS, FAIL_TO_PASS
    test: str | None  # the test's id; None for a finding about a whole run
    message: str  # names the test as a code span (its name is the change's to choose)

    def describe(self) -> str:
        return self.message


@dataclass
class SuiteRun:
    """One run of a test command the checks made (or took from the cache)."""

    check: str  # BASE, PASS_TO_PASS, FAIL_TO_PASS
    runner: str
    command: str
    results: Results
    seconds: float = 0.0
    cached: bool = False
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        tests = self.results.tests
        counts: dict[str, int] = {}
        for status in (tests or {}).values():
            counts[status] = counts.get(status, 0) + 1
        return {
            "check": self.check,
            "runner": self.runner,
            "command": self.command,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
            "report": self.results.has_report,
            "why": self.results.why,
            "exit_code": self.results.exit_code,
            "counts": counts,
            "output": self.output if not self.results.has_report else "",
        }


@dataclass
class OutcomeReport:
    """What the outcome checks of one look found, ran and could not do."""

    findings: list[OutcomeFinding] = field(default_factory=list)
    runs: list[SuiteRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fallbacks to exit status, files left out
    source: str = ""  # where the commands came from
    base_cached: bool | None = None  # None: no base results were needed
    seconds: float = 0.0
    skipped: str | None = None  # why nothing was checked (no test command found)
    error: str | None = None  # the checks themselves failed: the review is not complete
    fixed: list[str] = field(default_factory=list)  # base tests that failed and now pass

    @property
    def blocks(self) -> bool:
        return bool(self.findings)

    def summary(self) -> str:
        """One line: what was checked, what it found, where the base results came from."""
        if self.error is not None:
            return f"Outcome checks: could not be done ({self.error})."
        if self.skipped is not None:
            return f"Outcome checks: not run ({self.skipped})."
        runners = ", ".join(dict.fromkeys(run.runner for run in self.runs)) or "none"
        found = len(self.findings)
        what = f"{found} finding{'s' if found != 1 else ''}" if found else "no findings"
        base = f"base results: {self.base_source}"
        fallback = "; judged by exit status" if self.by_exit_status else ""
        return f"Outcome checks ({runners}, from {self.source}): {what}; {base}{fallback}."

    @property
    def base_source(self) -> str:
        """Where the base's results came from: cached, ran (now) or none (not needed)."""
        return "none" if self.base_cached is None else "cached" if self.base_cached else "ran"

    @property
    def by_exit_status(self) -> bool:
        return any(not run.results.has_report for run in self.runs)

    def to_event(self) -> dict[str, Any]:
        """The run page's record of the checks: each run, each finding with its check."""
        return {
            "summary": self.summary(),
            "skipped": self.skipped,
            "error": self.error,
            "source": self.source,
            "base_cached": self.base_cached,
            "seconds": round(self.seconds, 3),
            "runs": [run.to_dict() for run in self.runs],
            "findings": [
                {"check": f.check, "test": f.test, "message": f.message} for f in self.findings
            ],
            "notes": self.notes,
            "fixed": self.fixed[:50],
        }


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
            look = _Look(self, checkout, scratch, repo, tests)
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


def variant_of(runner: Runner, material: Material, toolchains: Toolchains | None = None) -> str:
    """What besides the commit decides the base's results: the command, the extra files and
    the toolchains the tests ran with (their bin directories, which name their versions)."""
    chosen = toolchains.bin_dirs if toolchains else ()
    text = "\n".join([RESULTS_VERSION, runner.command, *material.extra_globs, *chosen])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Look:
    """One look's checks: the trees, the runs, the comparisons."""

    def __init__(
        self,
        checks: OutcomeChecks,
        checkout: Checkout,
        scratch: Scratch,
        repo: str,
        tests: SuiteConfig,
    ) -> None:
        self.checks = checks
        self.checkout = checkout
        self.scratch = scratch
        self.repo = repo
        self.tests = tests
        self.env: dict[str, str] = {}
        self.home: SandboxHome | None = None
        self.toolchains = Toolchains()
        self.report = OutcomeReport()
        self._base_tree: asyncio.Task[Path] | None = None

    def sandbox_for(self, tree: Path) -> Sandbox:
        """A sandbox over `tree` with the repository's own variables and the run's toolchains,
        as `verify:` has."""
        sandbox = self.checks.sandbox_for(tree)
        sandbox.repository_env = dict(self.env)
        sandbox.home = self.home
        sandbox.toolchains = self.toolchains
        return sandbox

    async def run(self) -> OutcomeReport:
        report = self.report
        change = await self.scratch.change()
        package = await self.checkout.base_files(["package.json"], max_bytes=1 << 20)
        runners, report.source = choose(
            configured=self.tests.commands,
            verify=self.tests.verify,
            paths=sorted(change.base_paths),
            package_json=package.get("package.json"),
        )
        if not runners:
            report.skipped = "Honk found no test command for this repository's files"
            return report
        material = Material(self.tests.files, [f for r in runners for f in r.reads])
        touched = sorted(p for p in change.changed if material.covers(p))
        new_tests = sorted(p for p in touched if material.is_test(p) and change.changed[p] != "D")
        hidden = [p for p in await self.scratch.left_out(change) if _matters(p, material)]
        if hidden:
            report.notes.append(
                "Ignored files the change made were left out of the checks: "
                + ", ".join(code(p) for p in hidden[:5])
                + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
            )
        p2p_tree, f2p_tree = await asyncio.gather(
            self._p2p_tree(change, touched),
            self._f2p_tree(change, touched) if new_tests else _nothing(),
        )
        cached: list[bool] = []
        for runner in runners:
            trees = (p2p_tree, f2p_tree)
            cached.append(await self._one(runner, change, material, touched, new_tests, *trees))
        report.base_cached = all(cached)
        return report

    # -- trees ---------------------------------------------------------------------------

    def base_tree(self, change: Change) -> Awaitable[Path]:
        """The base commit's tree, made once per look and only when needed."""
        if self._base_tree is None:
            self._base_tree = asyncio.ensure_future(self.scratch.base_tree("base", change))
        return asyncio.shield(self._base_tree)

    async def _p2p_tree(self, change: Change, touched: Sequence[str]) -> Path:
        """The change's code with the base's tests and infrastructure."""
        tree = await self.scratch.change_tree("p2p", change)
        if touched:
            await overlay(tree, await self.base_tree(change), touched, change.base_paths)
        return tree

    async def _f2p_tree(self, change: Change, touched: Sequence[str]) -> Path:
        """The base's code with the change's tests and infrastructure."""
        tree = await self.scratch.base_tree("f2p", change)
        await overlay(tree, self.checkout.path, touched, change.paths)
        return tree

    # -- one runner ------------------------------------------------------------------------

    async def _one(
        self,
        runner: Runner,
        change: Change,
        material: Material,
        touched: Sequence[str],
        new_tests: Sequence[str],
        p2p_tree: Path,
        f2p_tree: Path | None,
    ) -> bool:
        """The three runs of one runner (base, pass-to-pass, fail-to-pass) and what they show;
        True when the base's results were not run now."""
        key = (self.repo, change.base_sha, variant_of(runner, material, self.toolchains))
        base_run = SuiteRun(BASE, runner.kind, runner.command, Results(None))

        async def produce() -> Results:
            tree = await self.base_tree(change)
            results, seconds, output = await _run_tests(self.sandbox_for(tree), tree, runner)
            base_run.seconds, base_run.output = seconds, output
            return results

        async def base() -> bool:
            base_run.results, base_run.cached = await self.checks.base_results(key, produce)
            return base_run.cached

        async def p2p() -> SuiteRun:
            sandbox = self.sandbox_for(p2p_tree)
            results, seconds, output = await _run_tests(sandbox, p2p_tree, runner)
            return SuiteRun(
                PASS_TO_PASS, runner.kind, runner.command, results, seconds, False, output
            )

        only = [p for p in new_tests if runner.runs_file(p)] if runner.narrows else []
        f2p_wanted = f2p_tree is not None and runner.reported and (only or not runner.narrows)

        async def f2p() -> SuiteRun | None:
            if not f2p_wanted or f2p_tree is None:
                return None
            sandbox = self.sandbox_for(f2p_tree)
            results, seconds, output = await _run_tests(sandbox, f2p_tree, runner, only=only)
            return SuiteRun(
                FAIL_TO_PASS, runner.kind, runner.command, results, seconds, False, output
            )

        cached, after, before = await asyncio.gather(base(), p2p(), f2p())
        self.report.runs += [base_run, after] + ([before] if before is not None else [])
        self._compare(runner, base_run.results, after.results, touched)
        if before is not None:
            self._compare_new(runner, base_run.results, before.results)
        elif f2p_tree is not None and not runner.reported:
            self.report.notes.append(
                f"{code(runner.command)} gives no report Honk can read, so the tests the change "
                "added were not run on the base by themselves (fail-to-pass not checked)."
            )
        return cached

    # -- comparisons ----------------------------------------------------------------------

    def _compare(
        self, runner: Runner, base: Results, after: Results, touched: Sequence[str]
    ) -> None:
        """Pass-to-pass: the base's tests over the change's code, against the base's run."""
        branch = self.checkout.base
        edits = _named(touched)
        if not (base.has_report and after.has_report):
            self._by_exit_status(runner, base, after, touched)
            return
        regressions: list[OutcomeFinding] = []
        carried: list[OutcomeFinding] = []
        assert base.tests is not None and after.tests is not None
        for test, before in sorted(base.tests.items()):
            now = after.tests.get(test)
            if before == PASSED and now != PASSED:
                what = _became(now, reports.test_file(test) in after.files_failed)
                regressions.append(
                    OutcomeFinding(
                        PASS_TO_PASS, test, f"{code(test_name(test))} passed on {branch} and {what}"
                    )
                )
            elif before in (FAILED, ERROR) and now in (SKIPPED, XFAILED):
                # The base's own test, with the base's set-up, stops running: the change's
                # code made it skip (a fix makes it pass).
                what = _became(now, False)
                regressions.append(
                    OutcomeFinding(
                        PASS_TO_PASS,
                        test,
                        f"{code(test_name(test))} failed on {branch} and {what} instead of passing",
                    )
                )
            elif (
                before in (FAILED, ERROR)
                and now != PASSED
                and touched
                and test not in base.files_failed
            ):
                carried.append(
                    OutcomeFinding(
                        PASS_TO_PASS,
                        test,
                        f"{code(test_name(test))} fails on this change when run with {branch}'s "
                        f"tests and test set-up, as it did on {branch}: it passes in the "
                        f"change's own run only through the change's edits to {edits}",
                    )
                )
            elif before != PASSED and now == PASSED:
                self.report.fixed.append(test)
        self._add(regressions, "tests that passed on " + branch)
        self._add(carried, "failing tests")

    def _by_exit_status(
        self, runner: Runner, base: Results, after: Results, touched: Sequence[str]
    ) -> None:
        branch = self.checkout.base
        why = after.why or base.why
        self.report.notes.append(
            f"No test report could be read from {code(runner.command)} ({why}): Honk judged "
            "the runs by their exit status alone, so it cannot say which tests changed."
        )
        if after.exit_code == 0 and not after.has_report and runner.reported:
            self.report.findings.append(
                OutcomeFinding(
                    PASS_TO_PASS,
                    None,
                    f"the run of {branch}'s tests on this change exited 0 without writing "
                    f"its {runner.kind} report: something ended the test process early",
                )
            )
            return
        if after.exit_code == 0:
            return
        if base.exit_code == 0:
            message = (
                f"the tests passed on {branch} and fail on this change "
                f"(exit status {after.exit_code})"
            )
        elif touched:
            message = (
                f"the tests fail on this change when run with {branch}'s tests and test set-up "
                f"(exit status {after.exit_code}), as they did on {branch}: they pass in the "
                f"change's own run only through its edits to {_named(touched)}"
            )
        else:
            return
        self.report.findings.append(OutcomeFinding(PASS_TO_PASS, None, message))

    def _compare_new(self, runner: Runner, base: Results, before: Results) -> None:
        """Fail-to-pass: the change's tests over the base's code must fail."""
        branch = self.checkout.base
        if not before.has_report:
            if before.exit_code == 0 and runner.reported:
                self.report.findings.append(
                    OutcomeFinding(
                        FAIL_TO_PASS,
                        None,
                        f"the change's tests, run on {branch}'s code, exited 0 without writing "
                        f"their {runner.kind} report: something ended the test process early",
                    )
                )
            elif not runner.reported or before.exit_code is None:
                self.report.notes.append(
                    f"The change's tests on {branch}'s code gave no report ({before.why})."
                )
            return
        assert before.tests is not None
        flagged = {f.test for f in self.report.findings}
        found: list[OutcomeFinding] = []
        for test, status in sorted(before.tests.items()):
            if status != PASSED or test in flagged:
                continue
            was = base.status(test)
            name = code(test_name(test))
            if was is None and base.has_report:
                found.append(
                    OutcomeFinding(
                        FAIL_TO_PASS,
                        test,
                        f"{name} passes on {branch} too: it does not test the fix",
                    )
                )
            elif was in (FAILED, ERROR):
                found.append(
                    OutcomeFinding(
                        FAIL_TO_PASS,
                        test,
                        f"{name} failed on {branch}, and as the change rewrote it, it passes "
                        f"on {branch}'s code too: it no longer tests the fix",
                    )
                )
        self._add(found, "new tests")

    def _add(self, found: list[OutcomeFinding], what: str) -> None:
        shown = found[:MAX_LISTED]
        self.report.findings += shown
        if len(found) > len(shown):
            more = len(found) - len(shown)
            self.report.findings.append(
                OutcomeFinding(shown[0].check, None, f"and {more} more {what} the same way")
            )


async def _nothing() -> None:
    return None


def _became(status: str | None, file_failed: bool) -> str:
    if status is None:
        return "its file no longer loads" if file_failed else "is not collected any more"
    return {
        FAILED: "fails on this change",
        ERROR: "errors on this change",
        SKIPPED: "is skipped on this change",
        XFAILED: "is marked as an expected failure on this change",
    }.get(status, f"is {status} on this change")


def _named(paths: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(code(p) for p in paths[:limit])
    more = len(paths) - limit
    return shown + (f" and {more} more" if more > 0 else "") if paths else "its tests"


def _matters(path: str, material: Material) -> bool:
    return material.covers(path) or path.endswith((".py", ".pth", ".js", ".mjs", ".cjs"))


async def _run_tests(
    sandbox: Sandbox, tree: Path, runner: Runner, *, only: Sequence[str] = ()
) -> tuple[Results, float, str]:
    """Run `runner` in `tree` (offline) and read its report: (results, seconds, output tail)."""
    folder = f".honk-report-{secrets.token_hex(6)}"
    local = tree / folder
    await asyncio.to_thread(local.mkdir)
    visible = f"{sandbox.visible_root}/{folder}"
    helper = ""
    if runner.kind == NODE:
        await asyncio.to_thread((local / "reporter.mjs").write_text, reports.NODE_REPORTER)
        helper = f"{visible}/reporter.mjs"
    command = runner.invocation(f"{visible}/report", helper=helper, only=only)
    started = time.monotonic()
    try:
        result = await sandbox.run(command, offline=True)
        seconds = time.monotonic() - started
        raw = await asyncio.to_thread(_read_report, local / "report")
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_remove_tree, local)
    results = runner.read(raw, result.exit_code, root=sandbox.visible_root)
    if result.timed_out:
        results.why = results.why or "the run timed out"
    elif result.limit:
        results.why = results.why or result.limit
    return results, seconds, result.output[-OUTPUT_TAIL:]


def _read_report(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(reports.MAX_REPORT_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
