"""A fleet's run as kinds.py and texts.py describe it: no issue, no tracking comment, no Slack
thread, bulk pacing, its own branch, commit and PR body; follow-ups of fleet PRs."""

from __future__ import annotations

from pathlib import Path

import cmarkgfm

from app.ci import fleet_prs
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetState, FleetTarget, NewFleet
from app.github.pacing import Priority
from app.models import Run, RunKind, RunState, SlackThread, Usage
from app.runs.kinds import FLEET_TASK, FleetRun, rules_for
from app.runs.subject import Subject
from app.runs.texts import ChangeReport, FleetLink, Verification, branch_name, pr_body
from app.store import Store
from app.store.queue import NewRun

MODEL = "claude-sonnet-4-6"
REQUEST = "Bump `requests` to 2.32\n\nPin it in requirements.txt; cc @octo-org/platform."


def run(kind: RunKind, **fields: object) -> Run:
    values: dict[str, object] = {
        "id": 41,
        "repo": "acme/one",
        "installation_id": 7,
        "kind": kind,
        "state": RunState.RUNNING,
    }
    return Run(**(values | fields))  # type: ignore[arg-type]


def fleet() -> Fleet:
    return Fleet(
        id=7,
        installation_id=7,
        requested_by="octocat",
        request=REQUEST,
        selection="acme/*",
        origin=FleetOrigin.SLACK,
        canary_size=1,
        state=FleetState.CANARY,
    )


def test_a_fleet_run_writes_no_tracking_comment_and_starts_no_slack_thread() -> None:
    fleet_run = run(RunKind.FLEET, fleet_id=7, requested_by="octocat", instructions=REQUEST)
    rules = rules_for(RunKind.FLEET)
    assert isinstance(rules, FleetRun)
    assert rules.comment_on(fleet_run) is None
    assert rules.reports_in_slack(fleet_run) is False
    assert rules.paced_at(fleet_run) is Priority.BULK
    assert rules.branch_key(fleet_run) == "fleet-7"
    assert branch_name(rules.branch_key(fleet_run), "Bump `requests` to 2.32") == (
        "honk/fleet-7-bump-requests-to-2-32"
    )
    assert rules.check_title_note(0) == "fleet change"
    assert rules.may_have_unpublished_work(fleet_run)  # a crash may have pushed before the PR


def test_an_issue_run_keeps_its_ways() -> None:
    issue_run = run(RunKind.ISSUE, issue_number=12)
    rules = rules_for(RunKind.ISSUE)
    assert rules.comment_on(issue_run) == 12
    assert rules.reports_in_slack(issue_run) is True
    assert rules.paced_at(issue_run) is Priority.NORMAL
    assert branch_name(rules.branch_key(issue_run), "add() is wrong") == "honk/12-add-is-wrong"


def test_follow_ups_of_a_fleet_pr_report_on_the_pr_and_never_in_slack() -> None:
    origin = run(RunKind.FLEET, fleet_id=7, pr_number=3, branch="honk/fleet-7-bump", head_sha="abc")
    for kind in (RunKind.CI_FIX, RunKind.RETRY, RunKind.CONTINUE):
        new = NewRun.follow_up(origin, kind=kind, requested_by="octocat", instructions="")
        follow_up = run(kind, fleet_id=new.fleet_id, pr_number=new.pr_number)
        rules = rules_for(kind)
        assert new.fleet_id == 7 and new.issue_number is None and new.slack_thread is None
        # The PR's own conversation, never an issue that does not exist.
        assert rules.comment_on(follow_up) == 3
        assert rules.reports_in_slack(follow_up) is False
    # A repair comes in bulk as the fleet did; a person's retry is an ordinary run's.
    assert rules_for(RunKind.CI_FIX).paced_at(run(RunKind.CI_FIX, fleet_id=7)) is Priority.BULK
    assert rules_for(RunKind.CI_FIX).paced_at(run(RunKind.CI_FIX)) is Priority.NORMAL
    assert rules_for(RunKind.RETRY).paced_at(run(RunKind.RETRY, fleet_id=7)) is Priority.NORMAL


def test_a_fleet_runs_commit_names_the_fleet_not_an_issue() -> None:
    message = rules_for(RunKind.FLEET).commit_message(
        run(RunKind.FLEET, fleet_id=7), "Bump requests", ("Octo Cat", "1+octocat@example.com")
    )
    assert message == (
        "Bump requests\n\nPart of Honk fleet change 7.\n\n"
        "Co-authored-by: Octo Cat <1+octocat@example.com>\n"
    )
    assert "Fixes #" not in message


async def test_a_fleet_runs_task_is_the_fleets_request() -> None:
    subject = Subject(None, None, "Bump `requests` to 2.32", fleet())
    task = subject.as_issue
    assert task is not None
    assert task["body"] == REQUEST and task["number"] == 0
    assert task["user"] == {"login": "octocat"}
    fleet_run = run(RunKind.FLEET, fleet_id=7, instructions=REQUEST)
    request = await rules_for(RunKind.FLEET).request(fleet_run, None)  # type: ignore[arg-type]
    assert request == FLEET_TASK and "change nothing" in request


def body(link: FleetLink | None) -> str:
    return pr_body(
        ChangeReport(
            run_id=41,
            summary="Bumped requests to 2.32.",
            verification=Verification("python -m pytest -q", True),
            usage=Usage(),
            model="claude-sonnet-4-6",
        ),
        issue_number=None,
        run_url="https://honk.example.com/runs/41",
        fleet=link,
    )


def test_a_fleet_prs_body_carries_the_request_and_the_fleets_page() -> None:
    text = body(FleetLink(7, REQUEST, "octocat", "https://honk.example.com/fleets/7"))
    assert "## The request" in text
    assert "[fleet change 7](https://honk.example.com/fleets/7)" in text
    assert "asked for by `octocat`" in text
    assert "Pin it in requirements.txt" in text
    assert "[run 41](https://honk.example.com/runs/41)" in text
    assert "Fixes #" not in text
    assert text.index("## The request") < text.index("## What changed")
    # Two hundred PRs must not notify the team two hundred times: no mention renders.
    html = cmarkgfm.github_flavored_markdown_to_html(text)
    assert "@octo-org/platform" in html and 'class="user-mention"' not in html
    assert "<code>@octo-org/platform</code>" in html


def test_without_honk_url_the_fleet_is_named_without_a_link() -> None:
    text = body(FleetLink(7, "x" * 6000, "octocat", None))
    assert "Part of Honk's fleet change 7, asked for by" in text
    assert "/fleets/" not in text
    assert "x" * 5000 + "…" in text and "x" * 5001 not in text
    assert "## The request" not in body(None)


async def test_fleet_pr_states_follow_ci_reviews_and_closing(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}")
    try:
        new = NewFleet(7, "octocat", REQUEST, "acme/*", FleetOrigin.CLI)
        made = await store.fleets.create(new, [FleetTarget("acme/one"), FleetTarget("acme/two")])
        await store.fleets.set_repo(made.id, "acme/one", FleetRepoState.RUNNING, run_id=41)
        pushed = run(RunKind.FLEET, fleet_id=made.id, pr_number=3, pr_url="u", head_sha="a" * 40)
        opened = await fleet_prs.pr_published(store, pushed, vetoed=False, model=MODEL)
        assert opened is not None and opened.state == FleetRepoState.PR_OPEN
        assert (opened.pr_number, opened.head_sha, opened.run_id) == (3, "a" * 40, 41)

        # A verdict on a commit the PR has moved past changes nothing.
        assert await fleet_prs.ci_verdict(store, pushed, "b" * 40, passed=True) is None
        red = await fleet_prs.ci_verdict(store, pushed, "a" * 40, passed=False)
        assert red is not None and red.state == FleetRepoState.CI_RED
        # A repair pushes a new commit: its CI is still to come.
        repair = run(
            RunKind.CI_FIX, id=42, fleet_id=made.id, pr_number=3, pr_url="u", head_sha="c" * 40
        )
        again = await fleet_prs.pr_published(store, repair, vetoed=False, model=MODEL)
        assert again is not None and again.state == FleetRepoState.PR_OPEN
        assert again.head_sha == "c" * 40 and again.run_id == 41  # still the fleet's run
        green = await fleet_prs.ci_verdict(store, repair, "c" * 40, passed=True)
        assert green is not None and green.state == FleetRepoState.CI_GREEN

        approved = await fleet_prs.reviewed(store, "acme/one", 3)
        assert approved is not None and approved.state == FleetRepoState.APPROVED
        # CI passing again is no news after an approval; failing is.
        assert await fleet_prs.ci_verdict(store, repair, "c" * 40, passed=True) is None
        merged = await fleet_prs.closed(store, "acme/one", 3, merged=True)
        assert merged is not None and merged.state == FleetRepoState.MERGED
        # Once merged, late events move it no more; a PR no fleet has is nobody's business.
        assert await fleet_prs.closed(store, "acme/one", 3, merged=False) is None
        assert await fleet_prs.reviewed(store, "acme/one", 3) is None
        assert await fleet_prs.closed(store, "acme/two", 3, merged=False) is None
        states = [t.state for t in await store.fleets.transitions(made.id) if t.repo == "acme/one"]
        assert states == [
            FleetRepoState.PLANNED,
            FleetRepoState.RUNNING,
            FleetRepoState.PR_OPEN,
            FleetRepoState.CI_RED,
            FleetRepoState.PR_OPEN,
            FleetRepoState.CI_GREEN,
            FleetRepoState.APPROVED,
            FleetRepoState.MERGED,
        ]
        # The fleet's own run's veto is the conductor's to take (a failure in a row).
        await store.fleets.set_repo(made.id, "acme/two", FleetRepoState.RUNNING, run_id=50)
        draft = run(
            RunKind.FLEET, id=50, repo="acme/two", fleet_id=made.id, pr_number=4, head_sha="d"
        )
        assert await fleet_prs.pr_published(store, draft, vetoed=True, model=MODEL) is None
        await store.fleets.set_repo(
            made.id, "acme/two", FleetRepoState.VETOED, pr_number=4, head_sha="d"
        )
        assert await fleet_prs.ci_verdict(store, draft, "d", passed=True) is None
        # A retry the review vetoes again stays VETOED on its new commit; a person closing
        # the draft closes it.
        retry = run(
            RunKind.RETRY, id=51, repo="acme/two", fleet_id=made.id, pr_number=4, head_sha="e"
        )
        again_vetoed = await fleet_prs.pr_published(store, retry, vetoed=True, model=MODEL)
        assert again_vetoed is not None and again_vetoed.state == FleetRepoState.VETOED
        assert again_vetoed.head_sha == "e" and again_vetoed.run_id == 50
        closed = await fleet_prs.closed(store, "acme/two", 4, merged=False)
        assert closed is not None and closed.state == FleetRepoState.CLOSED
    finally:
        await store.close()


def test_slack_thread_of_an_ordinary_run_is_kept() -> None:
    origin = run(RunKind.ISSUE, issue_number=12, slack_thread=SlackThread("C1", "1.5"))
    new = NewRun.follow_up(origin, kind=RunKind.RETRY, requested_by="a", instructions="")
    assert rules_for(RunKind.RETRY).reports_in_slack(run(RunKind.RETRY, fleet_id=new.fleet_id))
