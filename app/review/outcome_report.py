"""What the outcome checks report: each finding (which check, which test, in words), each run
of a test command they made or took from the cache, and the whole look's report; and which
tests they run (`SuiteConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.review.reports import Results

PASS_TO_PASS, FAIL_TO_PASS, BASE = "pass-to-pass", "fail-to-pass", "base"


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
