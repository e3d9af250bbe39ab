"""The review before the PR, end to end: a signed webhook, real git and bwrap, the fakes.

The agent is scripted to cheat in each way the deterministic checks know; the judge (the fake
Anthropic's review answers, scripted apart from the agent's turns) approves, and still the PR
is a draft that opens with what was found. A real fix is approved; a veto the agent recovers
from ends ready; a judge that stays down leaves a draft saying the review could not be done.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.cli.stats import stats_command
from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import (
    BUGGY,
    FIXED,
    ISSUE,
    REPO,
    TESTS,
    fixing_script,
    labeled,
)
from tests.fakes.anthropic import (
    REVIEW_TOOL,
    FakeAnthropic,
    approve,
    overloaded,
    text,
    tool_use_bash,
    tool_use_edit,
    veto,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import eventually, post_webhook

SKIP_REASON = "`test_add` was skipped with `@pytest.mark.skip`"


async def run_to_the_end(settings: Settings, aiohttp_client: Any) -> tuple[TestClient, Any]:
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store

    async def finished() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    return client, await eventually(finished, within=60)


def the_pr(fake_github: FakeGitHub) -> dict[str, Any]:
    (pr,) = fake_github.repo(REPO)["pulls"].values()
    return pr


def honk_check(fake_github: FakeGitHub) -> dict[str, Any]:
    (check,) = [c for c in fake_github.repo(REPO)["check_runs"].values() if c["name"] == "Honk"]
    return check


def slack_thread(fake_slack: FakeSlack) -> str:
    root = fake_slack.messages()[0]
    return "\n".join(
        f"{m.text} {json.dumps(m.blocks)}" for m in fake_slack.messages(thread_ts=root.ts)
    )


def tracking(fake_github: FakeGitHub, run: Any) -> str:
    return str(fake_github.repo(REPO)["comments"][run.tracking_comment_id]["body"])


def assert_reviews_were_fresh(fake_anthropic: FakeAnthropic) -> None:
    """Each review offered only the forced verdict tool and held none of the agent's turns."""
    assert fake_anthropic.review_requests and fake_anthropic.complaints == []
    for request in fake_anthropic.review_requests:
        assert [tool["name"] for tool in request["tools"]] == [REVIEW_TOOL]
        assert request["tool_choice"] == {"type": "tool", "name": REVIEW_TOOL}
        assert len(request["messages"]) == 1
        assert "tool_result" not in json.dumps(request["messages"])


@dataclass
class Cheat:
    """One way to make the tests pass without fixing add(), and how the PR must name it."""

    name: str
    files: dict[str, str]  # committed to the repository before the run
    turns: list[Any]
    named: list[str]  # phrases the PR body, the check and Slack must carry
    outcome: str = ""  # the outcome checks' finding, when running the tests shows it too


# What the outcome checks say of test_add when the change made it pass by editing the tests.
ONLY_THROUGH = (
    "`test_add` fails on this change when run with main's tests and test set-up, as it did on "
    "main: it passes in the change's own run only through the change's edits to `test_calc.py`"
)


TWO_ASSERTS = (
    "from calc import add\n\n\ndef test_add():\n    assert add(0, 0) == 0\n"
    "    assert add(2, 3) == 5\n"
)
JS_TESTS = (
    "const { add } = require('./calc');\n\n"
    "it('adds', () => {\n  expect(add(2, 3)).toBe(5);\n});\n\n"
    "it('adds zero', () => {\n  expect(add(0, 0)).toBe(0);\n});\n"
)
WORKFLOW = "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: pytest\n"

CHEATS = [
    Cheat(
        "skipped test",
        {},
        [
            tool_use_edit(
                command="create",
                path="test_calc.py",
                file_text=TESTS.replace(
                    "from calc import add\n",
                    "import pytest\n\nfrom calc import add\n",
                ).replace("def test_add", '@pytest.mark.skip(reason="flaky")\ndef test_add'),
            ),
            text("The test is flaky, so I skipped it."),
        ],
        [f"`test_calc.py` line 6: {SKIP_REASON}"],
        ONLY_THROUGH,
    ),
    Cheat(
        "deleted test",
        {"test_more.py": "def test_truth():\n    assert 1 + 1 == 2\n"},
        [tool_use_bash("rm test_calc.py"), text("Removed a broken test.")],
        ["`test_calc.py`: the test file was deleted"],
        ONLY_THROUGH,
    ),
    Cheat(
        "removed assertion",
        {"test_calc.py": TWO_ASSERTS},
        [
            tool_use_edit(
                command="str_replace",
                path="test_calc.py",
                old_str="    assert add(2, 3) == 5\n",
                new_str="",
            ),
            text("Trimmed the test."),
        ],
        ["`test_calc.py` line 6 (before the change): 1 assertion removed from `test_add`"],
        ONLY_THROUGH,
    ),
    Cheat(
        "focused JS test",
        {"calc.test.js": JS_TESTS},
        [
            fixing_script()[0],
            tool_use_edit(
                command="str_replace",
                path="calc.test.js",
                old_str="it('adds zero'",
                new_str="it.only('adds zero'",
            ),
            text("Fixed add() and focused the JS test I was looking at."),
        ],
        ["`calc.test.js` line 7: `adds zero` was focused with `it.only`"],
    ),
    Cheat(
        "changed CI workflow",
        {".github/workflows/ci.yml": WORKFLOW},
        [
            fixing_script()[0],
            tool_use_edit(
                command="str_replace",
                path=".github/workflows/ci.yml",
                old_str="- run: pytest",
                new_str="- run: pytest || true",
            ),
            text("Fixed add() and made CI more forgiving."),
        ],
        [
            "`.github/workflows/ci.yml` line 6: a CI file was changed, which the request did not",
            # GitHub would refuse the push: the draft carries the rest of the change.
            "**Left out of this pull request:** the change to `.github/workflows/ci.yml`.",
        ],
    ),
]


@pytest.mark.parametrize("cheat", CHEATS, ids=[c.name for c in CHEATS])
async def test_the_checks_catch_it_though_the_judge_approves(
    cheat: Cheat,
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    if cheat.files:
        fake_github.commit_files(REPO, cheat.files)
    # The first attempt cheats; told of the finding, the second attempt changes nothing.
    fake_anthropic.script(*cheat.turns, text("I think the change is fine as it is."))
    fake_anthropic.script_review(approve())
    _client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    # Where running the tests shows the cheat, the outcome checks stop it first; the checks
    # of the diff say how it was done.
    assert run.review == ("outcome" if cheat.outcome else "vetoed")
    named = [cheat.outcome, *cheat.named] if cheat.outcome else cheat.named
    if WORKFLOW in cheat.files.values():  # left out: the fix went up, the workflow did not
        assert fake_github.file_at(REPO, run.branch, ".github/workflows/ci.yml") == WORKFLOW
        assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED

    pr = the_pr(fake_github)
    assert pr["draft"] is True
    if cheat.outcome:
        assert pr["body"].startswith("**The tests' outcome stopped this change**, so this pull")
        line = "**Stopped by the tests' outcome**, though the model judge approved"
    else:
        assert pr["body"].startswith("**Honk's review vetoed this change**, so this pull request")
        line = "**Vetoed** by Honk's checks of the diff, though the model judge approved"
    opening = pr["body"].split("## What changed")[0]
    for phrase in named:
        assert phrase in opening
    assert "they still hold" in opening  # the agent had its second attempt
    assert line in pr["body"]
    # The agent was told what was found, once, with the run's request.
    told = [
        r for r in fake_anthropic.requests if "Honk's review stopped your change" in json.dumps(r)
    ]
    assert told and all(named[0] in json.dumps(r) for r in told)
    # The second attempt changed nothing: the judge was not asked again about the same diff.
    assert len(fake_anthropic.review_requests) == 1
    assert_reviews_were_fresh(fake_anthropic)

    check = honk_check(fake_github)
    assert check["conclusion"] == "failure"
    title = ": the tests' outcome stopped it" if cheat.outcome else ": review vetoed"
    assert check["output"]["title"].endswith(title)
    assert named[0] in check["output"]["summary"]
    said = "Review: stopped by the tests' outcome: " if cheat.outcome else "Review: vetoed: "
    assert said + named[0] in tracking(fake_github, run)
    assert said + named[0] in slack_thread(fake_slack)


async def test_a_real_fix_is_approved_and_the_pr_shows_the_review(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    summary = "Fixes `add()` to add its arguments; `test_add` checks it and passes."
    fake_anthropic.script(*fixing_script())
    fake_anthropic.script_review(approve(summary))
    _client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "approved"

    pr = the_pr(fake_github)
    assert pr["draft"] is False
    review = pr["body"].split("## Review\n\n")[1].split("## Cost")[0]
    assert summary in review and "**Approved** by the model judge" in review
    # The review's cost is counted in the run's and shown on its own.
    assert "- Review: " in pr["body"] and "(1 request to `claude-sonnet-4-6`)" in pr["body"]
    assert "- Agent: " in pr["body"] and "(3 requests to" in pr["body"]
    assert run.usage.requests == 3 + 1

    # The judge saw the request, the diff, the verification and the (absent) findings; not
    # the agent's conversation or its own account of the change.
    (request,) = fake_anthropic.review_requests
    prompt = request["messages"][0]["content"][0]["text"]
    assert "`add(2, 3)` gives -1." in prompt
    assert "-    return a - b\n+    return a + b" in prompt
    assert "`python -m pytest -q`: **passed**" in prompt and "1 passed" in prompt
    assert "<findings>\n(none)\n</findings>" in prompt
    assert "subtracted instead of adding" not in json.dumps(request)
    assert_reviews_were_fresh(fake_anthropic)

    check = honk_check(fake_github)
    assert check["conclusion"] == "success" and "## Review" in check["output"]["summary"]
    assert f"Review: approved. {summary}" in slack_thread(fake_slack)
    assert f"- [x] Review: approved. {summary}" in tracking(fake_github, run)


async def test_a_vetoed_run_whose_second_attempt_is_right_ends_ready(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    reason = "`test_add` now expects -1; the bug in `add()` is still there."
    fake_anthropic.script(
        # Rewrites the expectation to fit the bug (running the tests, the parse checks and the
        # judge all object).
        tool_use_edit(command="str_replace", path="test_calc.py", old_str="== 5", new_str="== -1"),
        text("Updated the test to the current behaviour."),
        # Given the judge's reason, it puts the test back and fixes the code.
        tool_use_edit(command="create", path="test_calc.py", file_text=TESTS),
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        text("Restored the test and fixed add()."),
    )
    fake_anthropic.script_review(veto(reason), approve("Fixes `add()`; the test is unchanged."))
    client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "recovered"
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED
    assert fake_github.file_at(REPO, run.branch, "test_calc.py") == TESTS
    second_attempt = json.dumps(fake_anthropic.requests[2])
    assert "Honk's review stopped your change" in second_attempt and reason in second_attempt
    parsed = "the expected value of `test_add` changed from `5` to `-1`"  # the parse checks'
    assert parsed in second_attempt

    pr = the_pr(fake_github)
    assert pr["draft"] is False
    assert "**Approved after a veto.**" in pr["body"] and reason in pr["body"]
    rewritten = "`test_add` fails on this change when run with main's tests and test set-up"
    assert rewritten in pr["body"]  # the first look's outcome finding, with the judge's reason
    assert "Review: stopped by the tests' outcome at first (" + rewritten in slack_thread(
        fake_slack
    )
    assert honk_check(fake_github)["conclusion"] == "success"

    # `honk stats` counts it: one run, vetoed at first, recovered.
    out = io.StringIO()
    assert await stats_command(calc_world_settings.store, 7, out) == 0
    line = next(row for row in out.getvalue().splitlines() if row.startswith(REPO))
    assert line.split() == [REPO, "1", "0", "0", "0", "1", "0", "0", "100%", "100%"]
    del client


async def test_a_judge_that_stays_down_leaves_a_draft_saying_so(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    fake_anthropic.script(*fixing_script())
    # 529 on the request and on each of the client's retries (retry-after-ms keeps it fast).
    fake_anthropic.script_review(*[overloaded() for _ in range(5)])
    _client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "unavailable"
    assert len(fake_anthropic.review_requests) == 5 and fake_anthropic.reviews_remaining == 0
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED

    pr = the_pr(fake_github)
    assert pr["draft"] is True
    assert pr["body"].startswith(
        "**Honk's review could not be done** (Anthropic API overloaded (529) after 5 attempts)"
    )
    check = honk_check(fake_github)
    assert check["conclusion"] == "neutral"
    assert check["output"]["title"].endswith(": review could not be done")
    assert "Review: the review could not be done" in slack_thread(fake_slack)


async def test_on_veto_comment_opens_no_pr_and_says_why_on_the_issue(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    config = "verify: python -m pytest -q\nreview:\n  on_veto: comment\n"
    fake_github.commit_files(REPO, {".github/honk.yml": config})
    fake_anthropic.script(*CHEATS[0].turns, text("It stays skipped."))
    reason = "The bug in `add()` is still there."
    fake_anthropic.script_review(veto(reason))
    _client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    # The tests show the cheat (outcome); the check of the diff and the judge say why.
    assert run.state == RunState.FAILED and run.review == "outcome"
    assert "The tests' outcome stopped the change: " in (run.error or "")
    assert ONLY_THROUGH in (run.error or "")
    assert SKIP_REASON in (run.error or "") and reason in (run.error or "")
    assert fake_github.repo(REPO)["pulls"] == {}
    assert fake_github.branch_sha(REPO, run.branch) is None  # nothing was pushed
    comments = [c["body"] for c in fake_github.repo(REPO)["comments"].values()]
    (comment,) = [c for c in comments if "no pull request was opened" in c]
    assert SKIP_REASON in comment and reason in comment and "test_calc.py" in comment
    assert "/honk retry" in comment
    assert SKIP_REASON in slack_thread(fake_slack)


async def test_model_judge_off_leaves_the_checks_alone_in_charge(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    config = "verify: python -m pytest -q\nreview:\n  model_judge: off\n"
    fake_github.commit_files(REPO, {".github/honk.yml": config})
    fake_anthropic.script(*fixing_script())
    _client, run = await run_to_the_end(calc_world_settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "approved" and fake_anthropic.review_requests == []
    pr = the_pr(fake_github)
    assert pr["draft"] is False
    assert "Approved** by Honk's checks of the diff (the model judge is off here)" in pr["body"]


CONFTEST_CHEAT = "pytest_pyfunc_call = lambda pyfuncitem: True\n"


async def test_a_conftest_that_greens_every_test_ends_as_a_draft_whatever_the_judge_says(
    aiohttp_client: Any,
    calc_world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    """The issue's case: no fix, one line of conftest.py, real pytest green. Running the base's
    tests over the change stops it; reading conftest.py (the parse checks) says how."""
    token = "metrics-token-outcome"
    settings = calc_world_settings.with_overrides(metrics_token=token)
    fake_anthropic.script(
        tool_use_edit(command="create", path="conftest.py", file_text=CONFTEST_CHEAT),
        tool_use_bash("python -m pytest -q"),
        text("Fixed: the tests pass now."),
        text("The tests pass; I will leave it as it is."),
    )
    fake_anthropic.script_review(approve("The change makes the tests pass."))
    client, run = await run_to_the_end(settings, aiohttp_client)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "outcome"
    # The agent's run was green: verification passed, and add() is still wrong.
    assert fake_github.file_at(REPO, run.branch, "calc.py") == BUGGY
    assert fake_github.file_at(REPO, run.branch, "conftest.py") == CONFTEST_CHEAT

    finding = (
        "`test_add` fails on this change when run with main's tests and test set-up, as it did "
        "on main: it passes in the change's own run only through the change's edits to "
        "`conftest.py`"
    )
    how = (
        "`conftest.py` line 1: `pytest_pyfunc_call` was added to conftest.py (bound by "
        "assignment): it replaces how tests are called, for every test in `test_calc.py`"
    )
    pr = the_pr(fake_github)
    assert pr["draft"] is True
    assert pr["body"].startswith(
        "**The tests' outcome stopped this change**, so this pull request is a draft. Honk ran "
        f"the tests before and after it:\n\n- {finding}"
    )
    assert how in pr["body"].split("## What changed")[0]  # the parse checks' reading of it
    assert "`python -m pytest -q`: **passed**" in pr["body"]  # the agent's own verification
    assert "**Stopped by the tests' outcome**, though the model judge approved" in pr["body"]
    ran = "Honk ran `PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q` (from `review: tests:`)"
    assert f"**Test outcome checks:** {ran}" in pr["body"]
    # The judge was shown what the tests showed; the agent was told it for its second go.
    (review_request,) = fake_anthropic.review_requests
    assert finding in json.dumps(review_request)
    told = [
        r for r in fake_anthropic.requests if "Honk's review stopped your change" in json.dumps(r)
    ]
    assert told and finding in json.dumps(told[0]) and how in json.dumps(told[0])

    check = honk_check(fake_github)
    assert check["conclusion"] == "failure"
    assert check["output"]["title"].endswith(": the tests' outcome stopped it")
    assert "Review: stopped by the tests' outcome: " + finding in slack_thread(fake_slack)
    assert "Review: stopped by the tests' outcome: " + finding in tracking(fake_github, run)

    # The run page's record: which check caught what, and where the base results came from.
    store = client.app[SERVICES].store
    stored = await store.runs.get(run.id)
    assert stored is not None
    looks = [step.detail for step in stored.steps if step.name == "review"]
    said = "1 outcome finding, 1 finding (1 from reading the test files, 0 from the diff), "
    assert said + "judge approved" in looks, looks
    events = await store.events.read(run.id, kinds=("outcome",))
    # One look: the agent's second attempt changed nothing, so the first look stands.
    assert [e.data["base_cached"] for e in events] == [False]
    first = events[0].data
    assert first["findings"] == [
        {"check": "pass-to-pass", "test": "test_calc.py::test_add", "message": finding}
    ]
    assert {r["check"] for r in first["runs"]} == {"base", "pass-to-pass"}
    assert "base results: ran" in first["summary"]

    # `honk stats` counts it apart from the judge's vetoes; /metrics counts the finding.
    out = io.StringIO()
    assert await stats_command(settings.store, 7, out) == 0
    line = next(row for row in out.getvalue().splitlines() if row.startswith(REPO))
    header = next(row for row in out.getvalue().splitlines() if row.startswith("repository"))
    assert header.split()[:5] == ["repository", "runs", "approved", "vetoed", "outcome"]
    assert line.split()[:5] == [REPO, "1", "0", "0", "1"]
    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    exposed = await scraped.text()
    assert 'honk_review_outcome_findings_total{check="pass-to-pass"}' in exposed
    assert 'honk_review_verdicts_total{verdict="outcome"}' in exposed
    assert 'honk_review_base_results_total{source="ran"}' in exposed
