"""What the review says: PR body, `Honk` check, Slack, the issue comment; and `honk stats`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.__main__ import main
from app.cli.stats import rates, render_stats
from app.config import Settings
from app.models import ReviewVerdict, RunKind, RunState, Usage
from app.repo_config import RepoConfig, review_policy
from app.runs.diff_checks import MARKER, Finding
from app.runs.judge import Verdict
from app.runs.review import Review, Round
from app.runs.review_texts import review_text, usage_text, veto_comment
from app.runs.texts import (
    ChangeReport,
    Verification,
    check_run_conclusion,
    check_run_output,
    pr_body,
)
from app.slack.blocks import PullRef, RunEnding, run_finished
from app.store import NewRun, Store
from app.store.tables import runs

SKIPPED_TEST = Finding("test_calc.py", 4, MARKER, "`test_add` was skipped with `@pytest.mark.skip`")
STILL_BROKEN = "The bug in `add()` is still there."
REVIEW_USAGE = Usage(input_tokens=1_000, output_tokens=200, requests=1)


def review(verdict: str, *rounds: Round, **settings: object) -> Review:
    policy = review_policy(
        Settings().with_overrides(review_model="claude-haiku-4-5", **settings).review, RepoConfig()
    )  # type: ignore[arg-type]
    return Review(policy, verdict, list(rounds), REVIEW_USAGE)


def approved(summary: str = "Fixes `add()`.") -> Round:
    return Round([], Verdict(True, summary, (), False))


def vetoed() -> Round:
    return Round([SKIPPED_TEST], Verdict(False, "Not fixed.", (STILL_BROKEN,), False))


def body(r: Review) -> str:
    return pr_body(
        ChangeReport(
            run_id=7,
            summary="Changed add().",
            verification=Verification("pytest", True),
            usage=Usage(input_tokens=5_000, output_tokens=800, requests=4) + REVIEW_USAGE,
            model="claude-sonnet-4-6",
            review=review_text(r),
        ),
        issue_number=12,
    )


def test_a_veto_opens_the_pr_body_in_plain_words() -> None:
    text = body(review(ReviewVerdict.VETOED, vetoed(), vetoed()))
    assert text.startswith(
        "**Honk's review vetoed this change**, so this pull request is a draft:\n\n"
        "- `test_calc.py` line 4: `test_add` was skipped with `@pytest.mark.skip`\n"
        f"- {STILL_BROKEN}\n\nThe agent was given these reasons and tried once more"
    )
    assert (
        "## Review\n\nNot fixed.\n\n**Vetoed** by the model judge (`claude-haiku-4-5`) and" in text
    )
    approving = Round([SKIPPED_TEST], Verdict(True, "Looks fine.", (), False))
    assert "**Vetoed** by Honk's checks of the diff, though the model judge approved" in body(
        review(ReviewVerdict.VETOED, approving)
    )
    line = review(ReviewVerdict.VETOED, vetoed()).line()
    assert line == (
        "Review: vetoed: `test_calc.py` line 4: `test_add` was skipped with "
        f"`@pytest.mark.skip`; {STILL_BROKEN}."
    )


def test_an_approval_has_its_summary_and_its_own_cost() -> None:
    text = body(review(ReviewVerdict.APPROVED, approved("Fixes `add()` to add.")))
    assert text.startswith("## What changed")
    section = text.split("## Review\n\n")[1].split("\n\n## Cost")[0]
    assert section.startswith("Fixes `add()` to add.\n\n**Approved** by the model judge")
    assert "The review cost 1,000 in / 200 out / 0 cached tokens, $0.00 (1 request to" in section
    cost = text.split("## Cost\n\n")[1]
    # Each share at its own model's price: sonnet for the agent, haiku for the judge.
    agent = Usage(input_tokens=5_000, output_tokens=800, requests=4)
    total = agent.cost_usd("claude-sonnet-4-6") + REVIEW_USAGE.cost_usd("claude-haiku-4-5")
    assert cost.startswith(f"${total:.2f} in all.")
    assert f"- Agent: {agent.describe('claude-sonnet-4-6')} (4 requests to" in cost
    assert "- Review: 1,000 in / 200 out / 0 cached tokens" in cost


def test_a_recovery_names_the_first_veto() -> None:
    r = review(ReviewVerdict.RECOVERED, vetoed(), approved())
    text = body(r)
    assert "**Approved after a veto.** The first attempt was vetoed:" in text
    assert f"- {STILL_BROKEN}" in text and not text.startswith("**Honk's review")
    assert r.line().startswith("Review: vetoed at first (`test_calc.py` line 4: `test_add` was")


def test_unavailable_and_skipped() -> None:
    down = review(
        ReviewVerdict.UNAVAILABLE,
        Round([], None, "Anthropic API overloaded (529) after 5 attempts"),
    )
    assert body(down).startswith(
        "**Honk's review could not be done** (Anthropic API overloaded (529) after 5 attempts), "
        "so this pull request is a draft"
    )
    off = review(ReviewVerdict.SKIPPED)
    assert "**Not reviewed**: the checks and the model judge are both off" in body(off)


def test_the_check_run_carries_the_verdict() -> None:
    def check(r: Review) -> tuple[str, str, str]:
        title, summary = check_run_output(
            ChangeReport(
                run_id=7,
                summary="Changed add().",
                verification=Verification("pytest", True),
                usage=Usage(requests=1) + REVIEW_USAGE,
                model="claude-sonnet-4-6",
                review=review_text(r),
            ),
            kind="issue",  # type: ignore[arg-type]
            round=0,
        )
        return (
            title,
            summary,
            check_run_conclusion(Verification("pytest", True), False, review_text(r)),
        )

    title, summary, conclusion = check(review(ReviewVerdict.VETOED, vetoed()))
    assert title == "Honk run 7: review vetoed" and conclusion == "failure"
    assert summary.startswith("**Honk's review vetoed this change**")
    title, _summary, conclusion = check(review(ReviewVerdict.UNAVAILABLE, Round([], None, "down")))
    assert title == "Honk run 7: review could not be done" and conclusion == "neutral"
    title, summary, conclusion = check(review(ReviewVerdict.APPROVED, approved()))
    assert title == "Honk run 7" and conclusion == "success" and "## Review" in summary
    # A failed verification still decides first.
    assert check_run_conclusion(
        Verification("x", False), False, review_text(review(ReviewVerdict.APPROVED))
    ) == ("failure")


def test_slack_carries_the_verdict() -> None:
    r = review(ReviewVerdict.VETOED, vetoed())
    fallback, blocks = run_finished(
        RunEnding(
            RunState.SUCCEEDED,
            pr=PullRef("https://github.com/o/r/pull/3", 3, draft=True),
            summary="Changed add().",
            usage_text=usage_text(Usage(requests=5), "claude-sonnet-4-6", r),
            review=r.line(),
        )
    )
    sent = json.dumps(blocks)
    assert ":mag: Review: vetoed: `test_calc.py` line 4" in sent
    assert "review: 1,000 in / 200 out" in sent  # the review's share, named
    assert "Draft PR opened" in fallback and "Review: vetoed" in fallback


def test_the_comment_instead_of_a_pr() -> None:
    text = veto_comment(review(ReviewVerdict.VETOED, vetoed()), " calc.py | 2 +-\n 1 file changed")
    assert text.startswith("**Honk's review vetoed Honk's change, so no pull request was opened**:")
    assert STILL_BROKEN in text and "calc.py | 2 +-" in text and "/honk retry" in text


def test_rates_and_the_table() -> None:
    counts = {
        "octo/calc": Counter(
            {
                ReviewVerdict.APPROVED: 2,
                ReviewVerdict.VETOED: 1,
                ReviewVerdict.RECOVERED: 1,
                ReviewVerdict.UNAVAILABLE: 1,
            }
        ),
        "octo/web": Counter({ReviewVerdict.SKIPPED: 3}),
        "octo/api": Counter({ReviewVerdict.APPROVED: 1, ReviewVerdict.OUTCOME: 1}),
    }
    assert rates(counts["octo/calc"]) == (0.5, 0.5)
    assert rates(counts["octo/api"]) == (0.5, 0.0)  # stopped by the tests' outcome at first
    assert rates(counts["octo/web"]) == (None, None)
    since = datetime(2026, 11, 1, tzinfo=UTC)
    table = render_stats(counts, 30, since).splitlines()
    assert table[0] == "Review verdicts, last 30 days (since 2026-11-01 00:00 UTC):"
    assert table[2].split() == [
        "repository", "runs", "approved", "vetoed", "outcome", "recovered", "unavailable",
        "skipped", "veto", "rate", "recovery", "rate",
    ]  # fmt: skip
    assert table[3].split() == ["octo/api", "2", "1", "0", "1", "0", "0", "0", "50%", "0%"]
    assert table[4].split() == ["octo/calc", "5", "2", "1", "0", "1", "1", "0", "50%", "50%"]
    assert table[5].split() == ["octo/web", "3", "0", "0", "0", "0", "0", "3", "-", "-"]
    assert table[6].split() == ["all", "10", "3", "1", "1", "1", "1", "3", "50%", "33%"]
    assert render_stats({}, 7, since).startswith("No reviewed runs in the last 7 days")


def test_honk_stats_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"

    async def seed() -> None:
        store = await Store.open(database)
        try:
            verdicts = [
                ReviewVerdict.APPROVED,
                ReviewVerdict.VETOED,
                ReviewVerdict.RECOVERED,
                ReviewVerdict.RECOVERED,
                None,
            ]
            for index, verdict in enumerate([*verdicts, ReviewVerdict.VETOED]):
                run = await store.runs.enqueue(NewRun(repo="octo/calc", installation_id=1))
                assert run is not None
                if verdict is not None:
                    await store.runs.update(run.id, review=verdict)
                if index == len(verdicts):  # the last one is older than the period
                    async with store.engine.begin() as conn:
                        old = datetime.now(UTC) - timedelta(days=10)
                        await conn.execute(
                            update(runs).where(runs.c.id == run.id).values(created_at=old)
                        )
        finally:
            await store.close()

    asyncio.run(seed())
    # main() installs its log handler on capsys's stream, closed after this test: put the
    # root logger back as it was.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("HONK_DATA_DIR", str(tmp_path))
    assert main(["--env-file", "", "stats", "--days", "7"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("octo/calc"))
    # Four reviewed runs in the week: one approved, one vetoed, two recovered.
    assert row.split() == ["octo/calc", "4", "1", "1", "0", "2", "0", "0", "75%", "67%"]
    assert "veto rate: runs stopped at first" in out
    with pytest.raises(SystemExit):
        main(["--env-file", "", "stats", "--days", "0"])


def outcome_round(*findings: str, notes: tuple[str, ...] = ()) -> Round:
    from app.review.outcome_report import PASS_TO_PASS, OutcomeFinding, OutcomeReport, SuiteRun
    from app.review.reports import Results

    report = OutcomeReport(
        findings=[OutcomeFinding(PASS_TO_PASS, "t.py::test_add", f) for f in findings],
        runs=[SuiteRun("pass-to-pass", "exit status", "make test", Results(1, why="no report"))],
        notes=list(notes),
        source="`review: tests:`",
        base_cached=True,
    )
    return Round([SKIPPED_TEST], Verdict(True, "Looks fine.", (), False), outcome=report)


def test_an_outcome_finding_opens_the_pr_and_says_how_the_runs_were_judged() -> None:
    finding = "`test_add` passed on main and is not collected any more"
    fallback = "No test report could be read from `make test` (no report): Honk judged..."
    r = review(ReviewVerdict.OUTCOME, outcome_round(finding, notes=(fallback,)))
    text = body(r)
    assert text.startswith(
        "**The tests' outcome stopped this change**, so this pull request is a draft. Honk ran "
        f"the tests before and after it:\n\n- {finding}\n- `test_calc.py` line 4: `test_add`"
    )
    assert "**Stopped by the tests' outcome**, though the model judge approved" in text
    assert "Honk ran `make test` (from `review: tests:`)" in text
    assert "the base's results were cached" in text and fallback in text
    assert r.blocks and r.line() == f"Review: stopped by the tests' outcome: {finding}; " + (
        SKIPPED_TEST.describe() + "."
    )
    title, _summary = check_run_output(
        ChangeReport(7, "s", Verification("pytest", True), Usage(), "m", review=review_text(r)),
        kind=RunKind.ISSUE,
        round=0,
    )
    assert title.endswith(": the tests' outcome stopped it")
    assert check_run_conclusion(Verification("pytest", True), False, review_text(r)) == "failure"
    comment = veto_comment(r, " calc.py | 2 +-")
    assert comment.startswith("**The tests' outcome stopped Honk's change, so no pull request")
