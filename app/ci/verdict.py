"""CI's verdict on a commit: every check run and status gathered, failures summarized (bounded)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import gidgethub
from aiohttp import ClientError

from app.github.client import GitHubClient

log = logging.getLogger(__name__)

HONK_CHECK = "Honk"  # Honk's own check run: a summary of the run, never part of CI's verdict
ACTIONS_APP = "github-actions"
# Conclusions the agent may be able to fix; "cancelled" and "action_required" need a person.
FIXABLE = frozenset({"failure", "timed_out", "startup_failure"})
PASSED = frozenset({"success", "neutral", "skipped"})
# The overall conclusion is the worst one seen, in this order.
SEVERITY = (
    "failure",
    "startup_failure",
    "timed_out",
    "cancelled",
    "action_required",
    "stale",
    "success",
)
STATUS_CONCLUSION = {"success": "success", "failure": "failure", "error": "failure"}

# Bounds on what reaches the model (characters) and on how much is fetched.
MAX_SUMMARY = 8_000
MAX_CHECK_OUTPUT = 1_500
MAX_LOG_EXCERPT = 2_500
MAX_LOGS = 4
MAX_ARTIFACT_RUNS = 3
TAIL_LINES = 30
CONTEXT_LINES = 3
MAX_MATCHES = 12

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ?")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOTEWORTHY = re.compile(
    r"error|failed|failure|traceback|exception|assert|panic|fatal", re.IGNORECASE
)
_WORKFLOW_RUN = re.compile(r"^(https?://.+/actions/runs/(\d+))")


@dataclass(frozen=True)
class Check:
    """One check run or commit status, as CI left it."""

    name: str
    conclusion: str | None  # None while it is still running
    url: str | None
    source: str = "check"  # "check" (Checks API) or "status" (commit status)
    id: int | None = None
    app: str = ""  # the App's slug for check runs
    output: dict[str, Any] = field(default_factory=dict, compare=False)
    details_url: str | None = None

    @property
    def passed(self) -> bool:
        return self.conclusion in PASSED


@dataclass(frozen=True)
class Verdict:
    """CI on one commit once every check is done."""

    sha: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def fixable(self) -> bool:
        return any(c.conclusion in FIXABLE for c in self.checks)

    @property
    def conclusion(self) -> str:
        seen = {c.conclusion for c in self.checks}
        return next((name for name in SEVERITY if name in seen), "success")


async def gather_verdict(
    gh: GitHubClient, repo: str, sha: str, app_id: int | None
) -> Verdict | None:
    """Every check and status on `sha`; None while any is running or when none ran at all."""
    if any(_running(suite, app_id) for suite in await gh.check_suites(repo, sha)):
        # A workflow whose later jobs have not started yet: its suite is not done even
        # though every check run that exists so far is.
        return None
    checks = latest_check_runs(await gh.check_runs(repo, sha), app_id)
    combined = await gh.combined_status(repo, sha)
    statuses = [
        Check(
            name=s.get("context") or "status",
            conclusion=STATUS_CONCLUSION.get(s.get("state", "")),
            url=s.get("target_url"),
            source="status",
            output={"title": s.get("description") or "", "summary": s.get("target_url") or ""},
        )
        for s in combined.get("statuses") or []
    ]
    everything = checks + statuses
    if not everything or any(c.conclusion is None for c in everything):
        return None
    return Verdict(sha, tuple(everything))


def _running(suite: dict[str, Any], app_id: int | None) -> bool:
    # Suites with no check runs stay "queued" forever on GitHub (an App that never runs);
    # Honk's own suite follows CI rather than leads it.
    return (
        suite.get("status") != "completed"
        and bool(suite.get("latest_check_runs_count"))
        and (suite.get("app") or {}).get("id") != app_id
    )


def latest_check_runs(runs: list[dict[str, Any]], app_id: int | None) -> list[Check]:
    """The newest run of each check (a re-run replaces the old one), Honk's own left out."""
    newest: dict[tuple[Any, str], dict[str, Any]] = {}
    for run in runs:
        app = run.get("app") or {}
        if run.get("name") == HONK_CHECK and app.get("id") in (None, app_id):
            continue
        key = (app.get("id"), run.get("name", ""))
        if key not in newest or run.get("id", 0) > newest[key].get("id", 0):
            newest[key] = run
    return [
        Check(
            name=run.get("name", "check"),
            conclusion=run.get("conclusion") if run.get("status") == "completed" else None,
            url=run.get("html_url") or run.get("details_url"),
            id=run.get("id"),
            app=(run.get("app") or {}).get("slug", ""),
            output=dict(run.get("output") or {}),
            details_url=run.get("details_url"),
        )
        for run in sorted(newest.values(), key=lambda r: r.get("id", 0))
    ]


async def summarize_failures(gh: GitHubClient, repo: str, verdict: Verdict) -> str:
    """Why CI failed, for the agent: each failed check's output and log excerpt, bounded."""
    parts: list[str] = []
    logs_read = 0
    for check in verdict.failed:
        lines = [f"### {check.name}: {check.conclusion}"]
        output = "\n\n".join(
            str(check.output[key]).strip()
            for key in ("title", "summary", "text")
            if check.output.get(key) and str(check.output[key]).strip()
        )
        if output:
            lines.append(clip_middle(output, MAX_CHECK_OUTPUT))
        if check.app == ACTIONS_APP and check.id is not None and logs_read < MAX_LOGS:
            logs_read += 1
            text = await _job_log(gh, repo, check.id)
            if text:
                lines.append("Log excerpt:\n```\n" + log_excerpt(text) + "\n```")
        parts.append("\n".join(lines))
    return clip_middle("\n\n".join(parts), MAX_SUMMARY)


async def _job_log(gh: GitHubClient, repo: str, job_id: int) -> str:
    """A GitHub Actions job's log (the job id is its check run's id); empty when unavailable."""
    try:
        return await gh.job_logs(repo, job_id)
    except (gidgethub.HTTPException, ClientError, TimeoutError) as exc:
        # Expired (410), no `actions: read` permission (403), or GitHub having a bad moment.
        log.info("no log for job %s of %s: %s", job_id, repo, exc)
        return ""


def log_excerpt(text: str, limit: int = MAX_LOG_EXCERPT) -> str:
    """The lines that say why a job failed: around errors and tracebacks, and the tail."""
    lines = [_ANSI.sub("", _TIMESTAMP.sub("", line)).rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return ""
    keep = set(range(max(len(lines) - TAIL_LINES, 0), len(lines)))
    matches = [i for i, line in enumerate(lines) if _NOTEWORTHY.search(line)]
    # The first matches often name the cause, the last ones the summary: keep both ends.
    if len(matches) > MAX_MATCHES:
        half = MAX_MATCHES // 2
        matches = matches[:half] + matches[-half:]
    for index in matches:
        keep.update(
            range(max(index - CONTEXT_LINES, 0), min(index + CONTEXT_LINES + 1, len(lines)))
        )
    chosen: list[str] = []
    previous = -1
    for index in sorted(keep):
        if index != previous + 1:  # lines were left out before this one
            chosen.append("…")
        chosen.append(lines[index])
        previous = index
    return clip_middle("\n".join(chosen), limit)


def clip_middle(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters by dropping its middle."""
    if len(text) <= limit:
        return text
    marker = "\n…[cut]…\n"
    head = (limit - len(marker)) // 3
    tail = limit - len(marker) - head
    return text[:head] + marker + text[-tail:]


async def artifact_links(gh: GitHubClient, repo: str, verdict: Verdict) -> list[tuple[str, str]]:
    """(name, URL) of what the commit's GitHub Actions runs published, on their run pages."""
    runs: dict[int, str] = {}
    for check in verdict.checks:
        match = _WORKFLOW_RUN.match(check.details_url or check.url or "")
        if check.app == ACTIONS_APP and match and len(runs) < MAX_ARTIFACT_RUNS:
            runs.setdefault(int(match.group(2)), match.group(1))
    links: list[tuple[str, str]] = []
    for run_id, page in runs.items():
        try:
            artifacts = await gh.artifacts(repo, run_id)
        except (gidgethub.HTTPException, ClientError, TimeoutError) as exc:
            log.info("no artifacts for workflow run %s of %s: %s", run_id, repo, exc)
            continue
        links += [
            (f"{a['name']} (artifact)", f"{page}/artifacts/{a['id']}")
            for a in artifacts
            if not a.get("expired")
        ]
    return links
