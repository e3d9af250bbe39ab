"""CI verdicts and failure summaries against the fake GitHub; the texts follow-up runs are given."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from app.ci.verdict import (
    MAX_LOG_EXCERPT,
    MAX_SUMMARY,
    Verdict,
    artifact_links,
    gather_verdict,
    latest_check_runs,
    log_excerpt,
    summarize_failures,
)
from app.config import Settings
from app.github import GitHubApp, GitHubClient
from app.models import Run, RunKind, RunState, Usage
from app.runs.follow_up import RetryParts
from app.runs.kinds import compose_request
from app.runs.texts import ChangeReport, Verification, check_run_conclusion, check_run_output
from tests.fakes.github import FakeGitHub

REPO = "octo/widgets"
APP_ID = 4242  # base_settings' App


@pytest.fixture
async def gh(fake_github: FakeGitHub, base_settings: Settings) -> AsyncIterator[GitHubClient]:
    fake_github.add_installation(1, "octo")
    fake_github.add_repo(REPO, files={"README.md": "# widgets\n"})
    settings = base_settings.with_overrides(github_api_url=fake_github.url)
    async with aiohttp.ClientSession() as session:
        token = await GitHubApp(settings.github, session).installation_token(1)
        yield GitHubClient(session, base_url=fake_github.url, oauth_token=token.token)


def noisy_log(lines: int = 3000) -> str:
    """A long Actions log: timestamps, colour codes, one failure in the middle, a summary."""
    out = [f"2024-05-01T10:00:{i % 60:02d}.1234567Z collecting module_{i}" for i in range(lines)]
    out[1500] = "2024-05-01T10:00:00.0000000Z \x1b[31mE   AssertionError: assert 6 == 5\x1b[0m"
    out.append("2024-05-01T10:01:00.0000000Z FAILED test_calc.py::test_add - assert 6 == 5")
    out.append("2024-05-01T10:01:00.0000000Z ##[error]Process completed with exit code 1.")
    return "\n".join(out)


def test_log_excerpt_keeps_errors_and_tail_within_bounds() -> None:
    excerpt = log_excerpt(noisy_log())
    assert len(excerpt) <= MAX_LOG_EXCERPT
    assert "E   AssertionError: assert 6 == 5" in excerpt  # colour codes gone
    assert "FAILED test_calc.py::test_add" in excerpt
    assert "exit code 1" in excerpt
    assert "2024-05-01T" not in excerpt  # timestamps stripped
    assert "module_10\n" not in excerpt  # the noise far from any error is dropped
    assert "…" in excerpt


def test_log_excerpt_of_a_short_log_is_the_log() -> None:
    assert log_excerpt("one\ntwo\n") == "one\ntwo"
    assert log_excerpt("") == ""


def test_latest_check_runs_keep_reruns_newest_and_leave_honk_out() -> None:
    actions = {"id": 15368, "slug": "github-actions"}
    runs = [
        {"id": 1, "name": "tests", "status": "completed", "conclusion": "failure", "app": actions},
        {"id": 3, "name": "tests", "status": "completed", "conclusion": "success", "app": actions},
        {"id": 2, "name": "lint", "status": "in_progress", "conclusion": None, "app": actions},
        {
            "id": 4,
            "name": "Honk",
            "status": "completed",
            "conclusion": "failure",
            "app": {"id": APP_ID},
        },
    ]
    checks = latest_check_runs(runs, APP_ID)
    assert [(c.name, c.conclusion) for c in checks] == [("lint", None), ("tests", "success")]


def test_overall_conclusion_is_the_worst() -> None:
    from app.ci.verdict import Check

    verdict = Verdict(
        "a" * 40,
        (
            Check("lint", "success", None),
            Check("deploy", "cancelled", None),
            Check("tests", "timed_out", None),
        ),
    )
    assert verdict.conclusion == "timed_out" and verdict.fixable
    assert [c.name for c in verdict.failed] == ["deploy", "tests"]
    only_cancelled = Verdict("a" * 40, (Check("deploy", "cancelled", None),))
    assert only_cancelled.conclusion == "cancelled" and not only_cancelled.fixable


async def test_verdict_waits_for_every_check_and_status(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha
    assert await gather_verdict(gh, REPO, sha, APP_ID) is None  # nothing ran: no verdict
    lint = fake_github.add_check_run(REPO, sha, "lint", status="in_progress", conclusion=None)
    fake_github.add_check_run(REPO, sha, "Honk", conclusion="success", app={"id": APP_ID})
    fake_github.set_status(REPO, sha, "pending", "ci/legacy")
    assert await gather_verdict(gh, REPO, sha, APP_ID) is None
    lint.update(status="completed", conclusion="success")
    assert await gather_verdict(gh, REPO, sha, APP_ID) is None  # the status is still pending
    fake_github.set_status(REPO, sha, "error", "ci/legacy", target_url="https://ci.example/1")
    verdict = await gather_verdict(gh, REPO, sha, APP_ID)
    assert verdict is not None
    assert verdict.conclusion == "failure"
    assert [(c.name, c.url) for c in verdict.failed] == [("ci/legacy", "https://ci.example/1")]
    assert "Honk" not in [c.name for c in verdict.checks]


async def test_failure_summary_reads_outputs_and_job_logs_bounded(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha
    run = fake_github.add_workflow_run(
        REPO,
        head_sha=sha,
        conclusion="failure",
        jobs=[
            {"name": "tests", "conclusion": "failure", "log": noisy_log()},
            {"name": "build", "conclusion": "success", "log": "ok"},
        ],
        artifacts=[{"name": "wheel"}, {"name": "coverage"}],
    )
    fake_github.add_check_run(
        REPO,
        sha,
        "typecheck",
        conclusion="failure",
        app={"id": 99, "slug": "other-ci"},
        output={"title": "2 type errors", "summary": "calc.py:2: error: bad operand " * 200},
    )
    verdict = await gather_verdict(gh, REPO, sha, APP_ID)
    assert verdict is not None and verdict.conclusion == "failure"
    summary = await summarize_failures(gh, REPO, verdict)
    assert len(summary) <= MAX_SUMMARY
    assert "### tests: failure" in summary and "AssertionError: assert 6 == 5" in summary
    assert "### typecheck: failure" in summary and "2 type errors" in summary
    assert "build" not in summary
    # Only the Actions job's log was fetched.
    assert len(fake_github.calls_to("GET", r"/actions/jobs/\d+/logs$")) == 1

    links = await artifact_links(gh, REPO, verdict)
    assert [name for name, _ in links] == ["wheel (artifact)", "coverage (artifact)"]
    assert all(url.startswith(f"{run['html_url']}/artifacts/") for _, url in links)


async def test_a_missing_log_leaves_the_check_output(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    sha = fake_github.branch_sha(REPO, "main")
    assert sha
    fake_github.add_workflow_run(
        REPO, head_sha=sha, jobs=[{"name": "tests", "conclusion": "failure", "log": "x"}]
    )
    fake_github.fail_next("GET", r"/actions/jobs/\d+/logs$", 410)
    verdict = await gather_verdict(gh, REPO, sha, APP_ID)
    assert verdict is not None
    summary = await summarize_failures(gh, REPO, verdict)
    assert summary.startswith("### tests: failure") and "Log excerpt" not in summary


def run_of(kind: RunKind, **fields: object) -> Run:
    values: dict[str, object] = {
        "id": 7,
        "repo": REPO,
        "installation_id": 1,
        "kind": kind,
        "state": RunState.RUNNING,
        "pr_number": 3,
        "branch": "honk/1-fix",
    }
    values.update(fields)
    return Run(**values)  # type: ignore[arg-type]


def test_retry_request_has_instructions_reviews_and_ci_failure() -> None:
    text = compose_request(
        run_of(RunKind.RETRY),
        RetryParts(
            instructions="use integers only",
            reviews=[{"path": "calc.py", "line": 2, "user": {"login": "alice"}, "body": "Name it"}],
            failure_text="### tests: failure\nAssertionError",
            failure_checks="tests",
            failure_sha="abcdef1234",
        ),
    )
    assert "pull request #3" in text and "`honk/1-fix`" in text
    assert "What to do now:\nuse integers only" in text
    assert "- `calc.py` line 2, @alice: Name it" in text
    assert "failed (tests on abcdef1)" in text and "AssertionError" in text


def test_ci_fix_request_is_the_failure_bounded() -> None:
    text = compose_request(run_of(RunKind.CI_FIX, round=2), RetryParts(failure_text="E" * 50_000))
    assert "automatic repair round 2" in text and "do not skip" in text
    assert len(text) < 9_000


def test_check_run_output_says_what_and_cost() -> None:
    verification = Verification("python -m pytest -q", True)
    usage = Usage(input_tokens=1200, output_tokens=300, requests=2)
    title, summary = check_run_output(
        ChangeReport(
            run_id=9,
            summary="Fixed the operator.",
            verification=verification,
            usage=usage,
            model="claude-sonnet-4-6",
        ),
        kind=RunKind.CI_FIX,
        round=1,
    )
    assert title == "Honk run 9 (CI repair, round 1)"
    assert "Fixed the operator." in summary and "**passed**" in summary
    assert "1,200 in / 300 out" in summary and "$" in summary
    assert check_run_conclusion(verification, unfinished=False) == "success"
    assert check_run_conclusion(Verification("x", False), unfinished=False) == "failure"
    assert check_run_conclusion(Verification(None, None), unfinished=False) == "neutral"


async def test_no_verdict_while_a_workflow_has_jobs_still_to_start(
    gh: GitHubClient, fake_github: FakeGitHub
) -> None:
    """Every check run there is so far is done, but the workflow's next job has not begun."""
    sha = fake_github.branch_sha(REPO, "main")
    assert sha
    fake_github.add_check_run(REPO, sha, "build", conclusion="success")
    fake_github.set_check_suite(REPO, sha, "in_progress")
    # An App that never runs leaves a queued suite with no runs: it must not block.
    fake_github.set_check_suite(REPO, sha, "queued", app={"id": 999, "slug": "idle"})
    assert await gather_verdict(gh, REPO, sha, APP_ID) is None
    fake_github.add_check_run(REPO, sha, "deploy", conclusion="success")
    fake_github.set_check_suite(REPO, sha, "completed")
    verdict = await gather_verdict(gh, REPO, sha, APP_ID)
    assert verdict is not None and verdict.conclusion == "success"
    assert [c.name for c in verdict.checks] == ["build", "deploy"]
