"""One look of the outcome checks: the scratch trees (the change's code with the base's tests,
the base's code with the change's tests), each runner's three runs, and what comparing them
by test id shows (pass-to-pass, fail-to-pass), or by exit status where no report is read."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from app.review import reports
from app.review.files import Material
from app.review.outcome_report import (
    BASE,
    FAIL_TO_PASS,
    PASS_TO_PASS,
    OutcomeFinding,
    OutcomeReport,
    SuiteConfig,
    SuiteRun,
)
from app.review.reports import ERROR, FAILED, PASSED, SKIPPED, XFAILED, Results, test_name
from app.review.runners import Runner, choose
from app.review.suite_runs import run_suite
from app.review.trees import Change, Scratch, overlay
from app.untrusted import code
from app.workspace.checkout import Checkout
from app.workspace.run_home import SandboxHome
from app.workspace.sandbox import Sandbox
from app.workspace.toolchains import Toolchains

# Bumped when what a cached base result means changes (how runs are made or read).
RESULTS_VERSION = "1"
MAX_LISTED = 10  # findings of one kind named one by one; the rest are counted
SandboxFor = Callable[[Path], Sandbox]
# The base's results for (repo, sha, variant): cached, in flight, or produced now; and
# whether they were not run now.
BaseResults = Callable[
    [tuple[str, str, str], Callable[[], Awaitable[Results]]], Awaitable[tuple[Results, bool]]
]


def variant_of(runner: Runner, material: Material, toolchains: Toolchains | None = None) -> str:
    """What besides the commit decides the base's results: the command, the extra files and
    the toolchains the tests ran with (their bin directories, which name their versions)."""
    chosen = toolchains.bin_dirs if toolchains else ()
    text = "\n".join([RESULTS_VERSION, runner.command, *material.extra_globs, *chosen])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Look:
    """One look's checks: the trees, the runs, the comparisons."""

    def __init__(
        self,
        sandbox_for: SandboxFor,
        base_results: BaseResults,
        checkout: Checkout,
        scratch: Scratch,
        repo: str,
        tests: SuiteConfig,
    ) -> None:
        self._sandbox_for = sandbox_for
        self._base_results = base_results
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
        sandbox = self._sandbox_for(tree)
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
            results, seconds, output = await run_suite(self.sandbox_for(tree), tree, runner)
            base_run.seconds, base_run.output = seconds, output
            return results

        async def base() -> bool:
            base_run.results, base_run.cached = await self._base_results(key, produce)
            return base_run.cached

        async def p2p() -> SuiteRun:
            sandbox = self.sandbox_for(p2p_tree)
            results, seconds, output = await run_suite(sandbox, p2p_tree, runner)
            return SuiteRun(
                PASS_TO_PASS, runner.kind, runner.command, results, seconds, False, output
            )

        only = [p for p in new_tests if runner.runs_file(p)] if runner.narrows else []
        f2p_wanted = f2p_tree is not None and runner.reported and (only or not runner.narrows)

        async def f2p() -> SuiteRun | None:
            if not f2p_wanted or f2p_tree is None:
                return None
            sandbox = self.sandbox_for(f2p_tree)
            results, seconds, output = await run_suite(sandbox, f2p_tree, runner, only=only)
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
