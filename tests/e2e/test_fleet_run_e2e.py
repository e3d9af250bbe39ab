"""One repository of a fleet change, end to end on the fakes: the run the conductor queues
opens a PR that carries the fleet's request and link, writes nothing else (no issue comment,
reaction, label or Slack message), at most 4 content-creating requests, all in bulk; then
GitHub's events move the fleet's repository: CI green or red (a red one repaired as on any
Honk PR), approved, merged or closed."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from app import metrics
from app.config import Settings
from app.fleet_models import Fleet, FleetOrigin, FleetRepo, FleetRepoState, FleetTarget, NewFleet
from app.github.pacing import is_content_creating
from app.models import Run, RunKind, RunState
from app.store import Store
from app.web import SERVICES, create_app
from tests.calc_world import INSTALLATION, REPO, calc_settings, fixing_script, seed_calc
from tests.conftest import load_payload
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_edit, veto
from tests.fakes.github import ACTIONS_APP, Call, FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

HONK_URL = "https://honk.example.com"
REQUEST = (
    "Make add() add\n\n"
    "Every calc library of ours has an `add` that subtracts; make it add. cc @octo-org/calc-team"
)
CONFIG = (  # verified, reviewed by the judge; the review's test runs are another test's
    "verify: python -m pytest -q\nreview:\n  outcome: off\n"
)
PRIORITIES = ("urgent", "normal", "bulk")


def content_creating(calls: list[Call]) -> list[str]:
    """The content-creating requests to the repository's API (GitHub's secondary limits)."""
    return [
        f"{call.method} {call.path}"
        for call in calls
        if (call.path.startswith("/repos/") or call.path == "/graphql")
        and is_content_creating(call.method, call.path, json.dumps(call.json or {}).encode())
    ]


def writes_by_priority() -> dict[str, float]:
    return {
        name: metrics.registry.get_sample_value("honk_github_writes_total", {"priority": name})
        or 0.0
        for name in PRIORITIES
    }


def with_repo(payload: dict[str, Any]) -> dict[str, Any]:
    payload["repository"] = {**payload["repository"], "full_name": REPO, "name": "calc"}
    payload["installation"] = {"id": INSTALLATION}
    return payload


def check_suite_completed(sha: str) -> dict[str, Any]:
    payload = with_repo(load_payload("check_suite.completed.1"))
    payload["check_suite"] = {**payload["check_suite"], "head_sha": sha, "app": ACTIONS_APP}
    return payload


def review_submitted(pr: int, state: str) -> dict[str, Any]:
    payload = with_repo(load_payload("pull_request_review.submitted.1"))
    payload["pull_request"] = {**payload["pull_request"], "number": pr}
    payload["review"] = {**payload["review"], "state": state}
    return payload


def pull_closed(pr: int, *, merged: bool) -> dict[str, Any]:
    payload = with_repo(load_payload("pull_request.closed.1"))
    payload["number"] = pr
    payload["pull_request"] = {**payload["pull_request"], "number": pr, "merged": merged}
    return payload


async def start_fleet(client: TestClient) -> tuple[Fleet, Run]:
    """A fleet of one repository stored as a request starts it; the conductor queues its
    run (the canary), which a worker takes."""
    services = client.app[SERVICES]
    store = services.store
    new = NewFleet(INSTALLATION, "alice", REQUEST, REPO, FleetOrigin.CLI)
    fleet = await store.fleets.create(new, [FleetTarget(REPO)])
    services.conductor.wake()

    async def queued() -> list[Run]:
        return await store.runs.find(fleet_id=fleet.id)

    (run,) = await eventually(queued, within=30)
    assert run.kind == RunKind.FLEET and run.requested_by == "alice"
    assert run.issue_number is None and run.slack_thread is None
    return fleet, run


async def per_repository_slack(store: Store, fake_slack: FakeSlack, fleet_id: int) -> list[str]:
    """What Slack was told outside the fleet's own thread (its summary and milestones,
    the conductor's): a run's thread, CI's verdict, a reaction. Nothing, for a fleet's runs."""
    fleet = await store.fleets.get(fleet_id)
    root = fleet.slack_thread.ts if fleet is not None and fleet.slack_thread else None
    told = [
        m.text for m in fake_slack.messages() if root is None or root not in (m.ts, m.thread_ts)
    ]
    return told + [c.method for c in fake_slack.calls if c.method.startswith("reactions.")]


async def ended(store: Store, run_id: int, within: float = 90) -> Run:
    async def probe() -> Run | None:
        run = await store.runs.get(run_id)
        return run if run is not None and not run.state.active else None

    return await eventually(probe, within=within)


async def fleet_repo_in(store: Store, fleet_id: int, state: FleetRepoState) -> FleetRepo:
    async def probe() -> FleetRepo | None:
        found = await store.fleets.repo(fleet_id, REPO)
        return found if found is not None and found.state == state else None

    return await eventually(probe, within=30)


async def dispatched(client: TestClient) -> bool:
    return await client.app[SERVICES].store.inbox.count(pending=True) == 0


def world(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    seed_calc(fake_github, issue=False)
    fake_github.commit_files(REPO, {".github/honk.yml": CONFIG}, message="Honk's config")
    return calc_settings(
        base_settings,
        fake_github,
        fake_anthropic,
        fake_slack,
        honk_url=HONK_URL,
        review_outcome_optional=True,
    )


async def test_a_fleet_run_opens_a_pr_and_writes_nothing_else(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    settings = world(base_settings, fake_github, fake_anthropic, fake_slack)
    fake_anthropic.script(*fixing_script())
    client = await aiohttp_client(create_app(settings))
    services = client.app[SERVICES]
    store = services.store
    before = writes_by_priority()
    fleet, queued = await start_fleet(client)

    run = await ended(store, queued.id)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.fleet_id == fleet.id and run.issue_number is None and run.slack_thread is None
    assert run.tracking_comment_id is None
    assert run.branch == f"honk/fleet-{fleet.id}-make-add-add"
    (pull,) = fake_github.repo(REPO)["pulls"].values()
    assert pull["number"] == run.pr_number and pull["head"]["ref"] == run.branch
    assert pull["title"] == "Make add() add" and not pull["draft"]
    body = pull["body"]
    assert f"[fleet change {fleet.id}]({HONK_URL}/fleets/{fleet.id})" in body
    assert "Every calc library of ours has an `add` that subtracts" in body
    assert "`@octo-org/calc-team`" in body  # inert: two hundred PRs notify no team
    assert f"[run {run.id}]({HONK_URL}/runs/{run.id})" in body
    assert "## Review" in body and "Fixes #" not in body
    # The agent was told the fleet's request, as its requester wrote it.
    prompt = json.dumps(fake_anthropic.requests[0]["messages"][0])
    assert "Every calc library of ours" in prompt and "fleet change" in prompt
    # The fleet's repository shows the PR at once (before the conductor looks).
    shown = await store.fleets.repo(fleet.id, REPO)
    assert shown is not None and shown.state == FleetRepoState.PR_OPEN
    assert (shown.pr_number, shown.head_sha, shown.run_id) == (run.pr_number, run.head_sha, run.id)
    assert shown.cost_usd > 0  # what the canary's estimate is made of

    # Only what the repository needs: the PR and the `Honk` check. No issue is read or
    # written, no reaction, no label, nothing in Slack.
    sent = content_creating(fake_github.calls)
    assert sorted(sent) == sorted(
        [f"POST /repos/{REPO}/pulls", f"POST /repos/{REPO}/check-runs"]
    ), sent
    assert not [c for c in fake_github.calls if "/issues" in c.path or "/labels" in c.path]
    assert await per_repository_slack(store, fake_slack, fleet.id) == []
    after = writes_by_priority()
    assert after["bulk"] - before["bulk"] == len(sent)  # every one of them in bulk
    assert after["normal"] == before["normal"] and after["urgent"] == before["urgent"]

    # CI passes: the fleet's repository is green; the check says so, Slack says nothing.
    sha = run.head_sha
    assert sha and run.pr_number
    fake_github.add_check_run(REPO, sha, "tests", conclusion="success")
    await post_webhook(client, "check_suite", check_suite_completed(sha))
    await fleet_repo_in(store, fleet.id, FleetRepoState.CI_GREEN)
    await eventually(lambda: dispatched(client))
    (honk,) = [c for c in fake_github.repo(REPO)["check_runs"].values() if c["name"] == "Honk"]
    assert "**CI:** CI passed" in honk["output"]["summary"]
    assert await per_repository_slack(store, fake_slack, fleet.id) == []
    sent = content_creating(fake_github.calls)
    assert len(sent) <= 4, sent
    assert writes_by_priority()["bulk"] - before["bulk"] == len(sent)

    # A bot's approval is nobody's; a person's approves; the merge is the end.
    bot = review_submitted(run.pr_number, "approved")
    bot["review"]["user"] = {**bot["review"]["user"], "login": "ci[bot]", "type": "Bot"}
    await post_webhook(client, "pull_request_review", bot)
    await post_webhook(client, "pull_request_review", review_submitted(run.pr_number, "commented"))
    await eventually(lambda: dispatched(client))
    assert (await fleet_repo_in(store, fleet.id, FleetRepoState.CI_GREEN)).pr_number
    await post_webhook(client, "pull_request_review", review_submitted(run.pr_number, "approved"))
    await fleet_repo_in(store, fleet.id, FleetRepoState.APPROVED)
    await post_webhook(client, "pull_request", pull_closed(run.pr_number, merged=True))
    await fleet_repo_in(store, fleet.id, FleetRepoState.MERGED)
    # The conductor sees the run working, if it looks while it does.
    transitions = await store.fleets.transitions(fleet.id)
    states = [t.state for t in transitions if t.state != FleetRepoState.RUNNING]
    assert states == [
        FleetRepoState.PLANNED,
        FleetRepoState.QUEUED,
        FleetRepoState.PR_OPEN,
        FleetRepoState.CI_GREEN,
        FleetRepoState.APPROVED,
        FleetRepoState.MERGED,
    ]
    assert len(content_creating(fake_github.calls)) <= 4  # the events wrote nothing


async def test_red_ci_on_a_fleet_pr_is_repaired_on_the_pr_then_closed(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    settings = world(base_settings, fake_github, fake_anthropic, fake_slack)
    fake_anthropic.script(
        *fixing_script(),
        tool_use_edit(command="str_replace", path="calc.py", old_str="a + b", new_str="b + a"),
        text("Swapped the operands, as CI's failure asked."),
    )
    client = await aiohttp_client(create_app(settings))
    services = client.app[SERVICES]
    store = services.store
    fleet, queued = await start_fleet(client)
    run = await ended(store, queued.id)
    assert run.state == RunState.SUCCEEDED, run.error
    sha, pr = run.head_sha, run.pr_number
    assert sha and pr

    workflow = fake_github.add_workflow_run(
        REPO,
        head_sha=sha,
        head_branch=run.branch or "",
        jobs=[{"name": "tests", "conclusion": "failure", "log": "FAILED test_calc.py"}],
    )
    payload = with_repo(load_payload("workflow_run.completed.1", workflow_run=workflow))
    await post_webhook(client, "workflow_run", payload)
    red = await fleet_repo_in(store, fleet.id, FleetRepoState.CI_RED)
    assert red.head_sha == sha

    # The repair is an ordinary CI repair on the PR: it carries the fleet, comments on the
    # PR (never on an issue that does not exist), and starts no Slack thread.
    async def repair_queued() -> list[Run]:
        return [r for r in await store.runs.find(repo=REPO) if r.kind == RunKind.CI_FIX]

    (repair,) = await eventually(repair_queued)
    repair = await ended(store, repair.id)
    assert repair.state == RunState.SUCCEEDED, repair.error
    assert repair.fleet_id == fleet.id and repair.issue_number is None
    assert repair.pr_number == pr and repair.head_sha != sha
    posted = fake_github.calls_to("POST", r"/issues/\d+/comments$")
    assert posted and all(c.path.endswith(f"/issues/{pr}/comments") for c in posted)
    comments = fake_github.repo(REPO)["comments"].values()
    assert "Honk is trying to fix it" in " ".join(c["body"] for c in comments)
    assert await per_repository_slack(store, fake_slack, fleet.id) == []
    # Its new commit is the PR's now: CI on it is still to come.
    pushed = await fleet_repo_in(store, fleet.id, FleetRepoState.PR_OPEN)
    assert pushed.head_sha == repair.head_sha and pushed.run_id == run.id

    # A late verdict on the old commit changes nothing; closing the PR unmerged ends it.
    await post_webhook(client, "check_suite", check_suite_completed(sha))
    await eventually(lambda: dispatched(client))
    assert (await fleet_repo_in(store, fleet.id, FleetRepoState.PR_OPEN)).head_sha != sha
    await post_webhook(client, "pull_request", pull_closed(pr, merged=False))
    await fleet_repo_in(store, fleet.id, FleetRepoState.CLOSED)


async def test_a_vetoed_fleet_change_is_a_draft_pr_that_a_retry_takes_up(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    settings = world(base_settings, fake_github, fake_anthropic, fake_slack)
    fake_anthropic.script(*fixing_script(), text("The change is right as it is."))
    # The agent's second go changes nothing, so the review's veto stands without a second look.
    fake_anthropic.script_review(veto("It also needs a changelog entry."))
    client = await aiohttp_client(create_app(settings))
    services = client.app[SERVICES]
    store = services.store
    fleet, queued = await start_fleet(client)
    run = await ended(store, queued.id)
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.review == "vetoed" and fake_anthropic.reviews_remaining == 0
    (pull,) = fake_github.repo(REPO)["pulls"].values()
    assert pull["draft"] and f"{HONK_URL}/fleets/{fleet.id}" in pull["body"]
    assert "changelog" in pull["body"]  # the review's own words, as for any run
    vetoed = await fleet_repo_in(store, fleet.id, FleetRepoState.VETOED)
    assert vetoed.pr_number == run.pr_number
    sent = content_creating(fake_github.calls)
    assert len(sent) <= 4 and not [c for c in fake_github.calls if "/issues" in c.path], sent
    assert await per_repository_slack(store, fake_slack, fleet.id) == []
    # `/honk retry` on the draft works as on any Honk PR: its tracking comment goes on the
    # PR, no Slack thread; the review approves this time, and the repository shows the PR.
    pr = run.pr_number
    assert pr
    fake_anthropic.script(
        tool_use_edit(command="create", path="CHANGELOG.md", file_text="- add() adds\n"),
        text("Added the changelog entry."),
    )
    command = fake_github.add_comment(REPO, pr, "/honk retry add a changelog entry", "alice")
    payload = with_repo(load_payload("issue_comment.created.1"))
    payload["issue"] = fake_github.repo(REPO)["issues"][pr]
    payload["comment"] = command
    payload["sender"] = fake_github.users["alice"]
    await post_webhook(client, "issue_comment", payload)

    async def retried() -> list[Run]:
        return [r for r in await store.runs.find(repo=REPO) if r.kind == RunKind.RETRY]

    (retry,) = await eventually(retried)
    retry = await ended(store, retry.id)
    assert retry.state == RunState.SUCCEEDED, retry.error
    assert retry.fleet_id == fleet.id and retry.slack_thread is None
    assert retry.review == "approved"
    tracking = fake_github.repo(REPO)["comments"].get(retry.tracking_comment_id)
    assert tracking is not None and f"/issues/{pr}/comments" in " ".join(
        c.path for c in fake_github.calls_to("POST", r"/comments$")
    )
    assert await per_repository_slack(store, fake_slack, fleet.id) == []
    reopened = await fleet_repo_in(store, fleet.id, FleetRepoState.PR_OPEN)
    assert reopened.head_sha == retry.head_sha and reopened.run_id == run.id

    # A person closing the PR ends it.
    await post_webhook(client, "pull_request", pull_closed(pr, merged=False))
    await fleet_repo_in(store, fleet.id, FleetRepoState.CLOSED)
