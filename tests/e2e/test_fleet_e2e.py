"""Issue 25's headline test: one fleet change across sixty repositories, end to end.

Everything is Honk's real services (create_app with workers, the conductor, the pipeline
with git over loopback and bwrap, the review's judge) against the fake GitHub, Slack and
model. GitHub's side keeps time on a virtual clock, so pacing costs no real waiting while
the fake measures every minute and hour against GitHub's limits.

The story, in one test (each step needs the one before, and sixty runs are paid once):

1. sixty repositories of one owner in two languages (and the fleet issue's own repository,
   in neither language, so the selection leaves it out); three of them, right after the
   canary in the selection's order, fail: setup, verification, the judge's veto;
2. the issue labelled `honk-fleet`: the plan comment (the summary), the canary, WAITING,
   the canary's milestone in the fleet's Slack thread;
3. `/honk fleet continue`: the three fail in a row and the fleet pauses itself, saying
   why; `/honk fleet resume`; a restart of Honk a third of the way, on the same store;
4. `/honk fleet pause`: what runs finishes, nothing more is queued; `resume`;
5. DONE: 57 PRs, the three with their reasons; the three repositories fixed, `/honk fleet
   retry`: they end with PRs; no repository has two PRs, none was queued twice;
6. GitHub's limits on the fake's clock, at most 4 content-creating requests per run;
7. one summary comment edited in place, nothing per repository in Slack;
8. CI green on three PRs, then Merge all green as alice, with her own token.

Run alone it takes about 100 s on a busy 2-core machine (`-s` prints each step's time).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.fleet.merge import merge_green
from app.fleet_models import Fleet, FleetOrigin, FleetRepoState, FleetState
from app.github.client import GitHubClient
from app.github.pacing import is_content_creating
from app.models import RunKind
from app.services import GitHubTime
from app.store import Store
from app.web import SERVICES, create_app
from tests.calc_world import calc_settings
from tests.conftest import load_payload
from tests.fakes.anthropic import FakeAnthropic, Turn, approve, text, tool_results, tool_use_edit
from tests.fakes.anthropic import veto as vetoes
from tests.fakes.github import ACTIONS_APP, Call, FakeGitHub, VirtualClock
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

HONK_URL = "https://honk.example.com"
INSTALLATION = 6060
OWNER = "fleet-org"
HOME = f"{OWNER}/platform"  # where the fleet issue is filed; no language: not chosen
ISSUE = 25
REPOS = [f"{OWNER}/svc-{index:02d}" for index in range(60)]
CANARY = REPOS[0]
# Right after the canary, in the selection's order (by name): the first three fanned out.
SETUP_FAILS, VERIFY_FAILS, VETOED = REPOS[1], REPOS[2], REPOS[3]
BROKEN = (SETUP_FAILS, VERIFY_FAILS, VETOED)
MERGED = REPOS[10:13]
GOOD_CONFIG = "verify: test -f VERSION\nreview: {outcome: off}\n"
CONFIGS = {
    SETUP_FAILS: "setup: ['false']\n" + GOOD_CONFIG,
    VERIFY_FAILS: "verify: grep -q one VERSION\nreview: {outcome: off}\n",
}
REQUEST = "Bump VERSION to 2\n\nEvery service of ours carries a VERSION file; it should say 2."
BODY = f"""{REQUEST}

repositories:
{OWNER}/*
language:go
language:python

canary: 1
"""
# Slow enough runs on a busy machine: never a lease lost to a late heartbeat.
LEASE_SECONDS = 30.0


# -- the model -------------------------------------------------------------------------------


def agent(request: dict[str, Any]) -> Turn:
    """The agent's two turns in any repository (and again after feedback): VERSION says 2."""
    if tool_results(request):
        return text("VERSION now says 2.")
    return tool_use_edit(command="create", path="VERSION", file_text="2\n")


def judge(request: dict[str, Any]) -> Turn:
    """The review's judge: a change that takes `veto` out of VERSION is vetoed."""
    if "\\n-veto" in json.dumps(request["messages"]):
        return vetoes("VERSION said `veto`: that repository is not to be bumped.")
    return approve()


# -- GitHub's side ---------------------------------------------------------------------------


def seed(fake_github: FakeGitHub) -> None:
    fake_github.add_installation(INSTALLATION, account=OWNER, repos=[HOME, *REPOS])
    fake_github.add_repo(HOME)
    fake_github.set_permission(HOME, "alice", "write")
    for index, name in enumerate(REPOS):
        files = {
            "VERSION": "veto\n" if name == VETOED else "1\n",
            ".github/honk.yml": CONFIGS.get(name, GOOD_CONFIG),
        }
        language = "Python" if index % 2 else "Go"
        fake_github.add_repo(name, files=files, language=language)
        fake_github.set_permission(name, "alice", "write")
    fake_github.add_user("alice", name="Alice Example", email="alice@example.com")
    fake_github.add_issue(
        HOME, ISSUE, title="VERSION 2 everywhere", body=BODY, user="alice", labels=["honk-fleet"]
    )


def repo_of(call: Call) -> str | None:
    parts = call.path.split("/")
    return f"{parts[2]}/{parts[3]}" if len(parts) > 3 and parts[1] == "repos" else None


def content_creating(fake_github: FakeGitHub) -> Counter[str]:
    """Content-creating requests (GitHub's secondary limits) per repository; a GraphQL
    mutation (a draft made ready) counts for the repository of the PR it names."""
    node_ids = {
        pull["node_id"]: name for name in REPOS for pull in fake_github.repo(name)["pulls"].values()
    }
    written: Counter[str] = Counter()
    for call in fake_github.calls:
        if is_content_creating(call.method, call.path, json.dumps(call.json or {}).encode()):
            variables = (call.json or {}).get("variables") or {}
            graphql = node_ids.get(variables.get("id")) if call.path == "/graphql" else None
            written[repo_of(call) or graphql or "-"] += 1
    return written


def labeled() -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload.update(
        label={**payload["label"], "name": "honk-fleet"},
        repository={**payload["repository"], "full_name": HOME, "name": "platform"},
        issue={**payload["issue"], "number": ISSUE, "body": BODY},
        sender={**payload["sender"], "login": "alice", "type": "User"},
        installation={"id": INSTALLATION},
    )
    return payload


def commented(fake_github: FakeGitHub, body: str) -> dict[str, Any]:
    comment = fake_github.add_comment(HOME, ISSUE, body, "alice")
    payload = load_payload("issue_comment.created.1")
    payload.update(
        issue=fake_github.repo(HOME)["issues"][ISSUE],
        comment=comment,
        sender=fake_github.users["alice"],
        installation={"id": INSTALLATION},
        repository={**payload["repository"], "full_name": HOME, "name": "platform"},
    )
    return payload


def check_suite_completed(repo: str, sha: str) -> dict[str, Any]:
    payload = load_payload("check_suite.completed.1")
    payload["repository"] = {
        **payload["repository"],
        "full_name": repo,
        "name": repo.partition("/")[2],
    }
    payload["installation"] = {"id": INSTALLATION}
    payload["check_suite"] = {**payload["check_suite"], "head_sha": sha, "app": ACTIONS_APP}
    return payload


def replies(fake_github: FakeGitHub) -> list[str]:
    """Honk's new comments on the fleet issue, oldest first."""
    calls = fake_github.calls_to("POST", rf"^/repos/{HOME}/issues/{ISSUE}/comments$")
    return [str(call.json["body"]) for call in calls]


# -- Honk's side -----------------------------------------------------------------------------


class Honk:
    """Honk's app, which the test closes and starts again (a restart) on one store."""

    def __init__(
        self, aiohttp_client: ClientFactory, settings: Settings, clock: VirtualClock
    ) -> None:
        self.aiohttp_client = aiohttp_client
        self.settings = settings
        self.clock = clock
        self.client: TestClient | None = None

    async def start(self) -> None:
        time_of_github = GitHubTime(clock=self.clock, sleep=self.clock.sleep)
        self.client = await self.aiohttp_client(
            create_app(self.settings, github_time=time_of_github)
        )

    async def restart(self) -> None:
        assert self.client is not None
        await self.client.close()  # the workers hand their runs back, the conductor its lease
        await self.start()

    @property
    def store(self) -> Store:
        assert self.client is not None
        return self.client.app[SERVICES].store

    async def send(self, event: str, payload: dict[str, Any]) -> None:
        """A webhook, handled (the dispatcher's inbox empty again)."""
        assert self.client is not None
        response = await post_webhook(self.client, event, payload)
        assert response.status == 202, await response.text()

        async def dispatched() -> bool:
            return await self.store.inbox.count(pending=True) == 0

        await eventually(dispatched, within=30)

    async def fleet(self, fleet_id: int) -> Fleet:
        fleet = await self.store.fleets.get(fleet_id)
        assert fleet is not None
        return fleet

    async def states(self, fleet_id: int) -> dict[str, FleetRepoState]:
        return {repo.repo: repo.state for repo in await self.store.fleets.repos(fleet_id)}

    async def until_state(self, fleet_id: int, *states: FleetState, within: float) -> Fleet:
        async def probe() -> Fleet | None:
            fleet = await self.fleet(fleet_id)
            return fleet if fleet.state in states else None

        return await eventually(probe, within=within, interval=0.1)

    async def settled(self, fleet_id: int) -> int:
        return sum(state.settled for state in (await self.states(fleet_id)).values())


async def command(honk: Honk, fake_github: FakeGitHub, fleet: Fleet, word: str) -> str:
    """`/honk fleet <word>` on the fleet issue; Honk's answer."""
    await honk.send("issue_comment", commented(fake_github, f"/honk fleet {word}"))
    said = replies(fake_github)[-1]
    assert said.startswith(f"@alice Fleet {fleet.id}"), said
    return said


def thread_of(fake_slack: FakeSlack, fleet: Fleet) -> list[str]:
    """What the fleet's Slack thread holds: its summary (the root) and its replies."""
    assert fleet.slack_thread is not None
    root = fleet.slack_thread.ts
    return [m.text for m in fake_slack.messages() if root in (m.ts, m.thread_ts)]


@pytest.mark.timeout(300)  # sixty real runs (git, bwrap) on a busy machine
async def test_a_fleet_across_sixty_repositories(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    began = time.monotonic()

    def lap(what: str) -> None:
        print(f"{time.monotonic() - began:6.1f} s  {what}")

    clock = VirtualClock()
    fake_github.clock = clock
    github_began = clock()
    await asyncio.to_thread(seed, fake_github)  # sixty git repositories: off the loop
    fake_anthropic.script(*[agent] * 400)
    fake_anthropic.script_review(*[judge] * 200)
    settings = calc_settings(
        base_settings,
        fake_github,
        fake_anthropic,
        fake_slack,
        honk_url=HONK_URL,
        workers=4,
        fleet_concurrency=4,
        fleet_max_runs=4,
        review_outcome_optional=True,
        lease_seconds=LEASE_SECONDS,
    )
    honk = Honk(aiohttp_client, settings, clock)
    await honk.start()
    lap("seeded, Honk started")

    # -- 2. the issue labelled: the plan comment, the fleet stored, the canary, WAITING -----
    await honk.send("issues", labeled())
    (fleet,) = await honk.store.fleets.find(issue_repo=HOME, issue_number=ISSUE)
    assert fleet.origin is FleetOrigin.ISSUE and fleet.requested_by == "alice"
    assert fleet.installation_id == INSTALLATION and fleet.canary_size == 1
    assert fleet.request.startswith("Bump VERSION to 2") and "repositories:" not in fleet.request
    repos = await honk.store.fleets.repos(fleet.id)
    # The selection's order (by name); the fleet issue's repository has neither language.
    assert [repo.repo for repo in repos] == REPOS
    (plan,) = replies(fake_github)
    assert f"**Fleet {fleet.id}**, asked for by @alice" in plan
    assert "60 repositories" in plan and "/honk fleet continue" in plan, plan
    summary_id = fleet.summary_comment_id
    assert summary_id is not None and summary_id in fake_github.repo(HOME)["comments"]

    fleet = await honk.until_state(fleet.id, FleetState.WAITING, within=90)
    lap("the canary is done")
    states = await honk.states(fleet.id)
    assert states[CANARY] == FleetRepoState.PR_OPEN
    assert Counter(states.values()) == {FleetRepoState.PR_OPEN: 1, FleetRepoState.PLANNED: 59}
    assert fleet.state_reason == "the canary is done: Continue to run the other 59"

    async def canary_told() -> list[str]:
        now = await honk.fleet(fleet.id)
        told = thread_of(fake_slack, now) if now.slack_thread else []
        return [t for t in told if f"The canary of fleet {fleet.id} is done" in t]

    (canary_message,) = await eventually(canary_told, within=30)
    assert "1 of 1 opened a PR" in canary_message
    summary_now = fake_github.repo(HOME)["comments"][summary_id]["body"]
    assert f"### Fleet {fleet.id}: " in summary_now

    # -- 3. Continue: the three broken ones fail in a row, and the fleet pauses itself -------
    # The three go first with the next repository; those after them wait at GitHub until
    # the fleet has paused, so the three end one after another whatever the machine's pace.
    held = [fake_github.hold_next("POST", rf"^/repos/{name}/pulls$") for name in REPOS[4:7]]
    said = await command(honk, fake_github, fleet, "continue")
    assert said == f"@alice Fleet {fleet.id} continues: 59 repositories to go."
    fleet = await honk.until_state(fleet.id, FleetState.PAUSED, within=120)
    lap("paused itself")
    assert fleet.state_reason is not None
    assert fleet.state_reason.startswith("paused by itself after 3 failures in a row: ")
    assert all(name in fleet.state_reason for name in BROKEN), fleet.state_reason
    by_name = {repo.repo: repo for repo in await honk.store.fleets.repos(fleet.id)}
    assert by_name[SETUP_FAILS].state == FleetRepoState.FAILED
    assert by_name[SETUP_FAILS].reason == "setup command `false` failed (exit 1)"
    assert by_name[VERIFY_FAILS].state == FleetRepoState.FAILED
    assert by_name[VERIFY_FAILS].reason == (
        "verification failed: `grep -q one VERSION` did not pass"
    )
    assert by_name[VERIFY_FAILS].pr_number is None  # no draft of an unverified change
    assert by_name[VETOED].state == FleetRepoState.VETOED
    assert by_name[VETOED].reason is not None and "review" in by_name[VETOED].reason
    assert fake_github.repo(VETOED)["pulls"][by_name[VETOED].pr_number]["draft"]

    async def paused_told() -> list[str]:
        return [t for t in thread_of(fake_slack, fleet) if "paused itself" in t]

    await eventually(paused_told, within=30)
    for release in held:
        release.set()
    said = await command(honk, fake_github, fleet, "resume")
    assert said == f"@alice Fleet {fleet.id} resumes."

    # -- a restart half-way: the new Honk carries on where the old one stopped --------------
    await eventually(lambda: _at_least(honk, fleet.id, 20), within=150, interval=0.1)
    lap("restarting")
    await honk.restart()
    lap("restarted")
    assert (await honk.fleet(fleet.id)).state is FleetState.RUNNING

    # -- 4. a person's pause: what runs finishes, nothing more is queued; then resume --------
    await eventually(lambda: _at_least(honk, fleet.id, 35), within=150, interval=0.1)
    said = await command(honk, fake_github, fleet, "pause")
    assert said == (
        f"@alice Fleet {fleet.id} is paused: nothing more is queued; what runs now finishes."
    )

    async def nothing_in_flight() -> bool:
        return not any(state.in_flight for state in (await honk.states(fleet.id)).values())

    await eventually(nothing_in_flight, within=90, interval=0.1)
    lap("paused, nothing in flight")
    queued = len(await honk.store.runs.find(fleet_id=fleet.id, limit=1000))
    planned = (await honk.store.fleets.counts(fleet.id))[FleetRepoState.PLANNED]
    assert planned > 0
    await asyncio.sleep(1.5)  # the conductor, woken by each run's end, queues nothing more
    assert len(await honk.store.runs.find(fleet_id=fleet.id, limit=1000)) == queued
    assert (await honk.store.fleets.counts(fleet.id))[FleetRepoState.PLANNED] == planned
    assert (await honk.fleet(fleet.id)).state is FleetState.PAUSED
    said = await command(honk, fake_github, fleet, "resume")
    assert said == f"@alice Fleet {fleet.id} resumes."

    # -- 5. the end: 57 PRs, the three with their reasons; fixed, retried, they end too ------
    fleet = await honk.until_state(fleet.id, FleetState.DONE, within=180)
    lap("done")
    states = await honk.states(fleet.id)
    assert Counter(states.values()) == {
        FleetRepoState.PR_OPEN: 57,
        FleetRepoState.FAILED: 2,
        FleetRepoState.VETOED: 1,
    }
    assert {name for name, state in states.items() if state.failed} == set(BROKEN)

    async def done_told() -> list[str]:
        return [t for t in thread_of(fake_slack, fleet) if f"Fleet {fleet.id} is done" in t]

    await eventually(done_told, within=30)

    def fix() -> None:
        fake_github.commit_files(SETUP_FAILS, {".github/honk.yml": GOOD_CONFIG})
        fake_github.commit_files(VERIFY_FAILS, {".github/honk.yml": GOOD_CONFIG})
        fake_github.commit_files(VETOED, {"VERSION": "1\n"})

    await asyncio.to_thread(fix)
    said = await command(honk, fake_github, fleet, "retry")
    assert said == f"@alice Fleet {fleet.id} retries 3 repositories."

    async def all_opened() -> bool:
        now = await honk.fleet(fleet.id)
        counts = await honk.store.fleets.counts(fleet.id)
        return now.state is FleetState.DONE and counts[FleetRepoState.PR_OPEN] == len(REPOS)

    await eventually(all_opened, within=120, interval=0.1)
    lap("retried: every repository has its PR")
    fleet = await honk.fleet(fleet.id)
    runs = await honk.store.runs.find(fleet_id=fleet.id, limit=1000)
    assert {run.kind for run in runs} == {RunKind.FLEET}
    # No repository was queued twice (the three broken ones once more, by the retry), and
    # none has two PRs: the restart handed its runs back, the new Honk took them up.
    queued_in = Counter(run.repo for run in runs)
    assert queued_in == {name: 2 if name in BROKEN else 1 for name in REPOS}, queued_in
    for name in REPOS:
        (pull,) = fake_github.repo(name)["pulls"].values()
        assert not pull["draft"] and pull["title"] == "Bump VERSION to 2", (name, pull)
        assert fake_github.file_at(name, pull["head"]["sha"], "VERSION") == "2\n"
    repos = await honk.store.fleets.repos(fleet.id)
    assert all(repo.pr_number and repo.head_sha for repo in repos)

    # -- 7. one summary comment, edited in place; nothing per repository in Slack ------------
    assert fleet.summary_comment_id == summary_id
    edits = fake_github.calls_to("PATCH", rf"^/repos/{HOME}/issues/comments/{summary_id}$")
    assert edits, "the summary was never edited"
    # Honk's comments on the issue: the plan, then one answer per command (continue, resume,
    # pause, resume, retry). None per repository, and none on any other issue.
    assert len(replies(fake_github)) == 6, replies(fake_github)
    assert all(call.path.startswith(f"/repos/{HOME}/") for call in _issue_writes(fake_github))
    summary_now = fake_github.repo(HOME)["comments"][summary_id]["body"]
    assert f"### Fleet {fleet.id}: " in summary_now and f"`{REPOS[-1]}`" in summary_now
    root = fleet.slack_thread
    assert root is not None
    told = fake_slack.messages()
    (summary_message,) = [m for m in told if m.ts == root.ts]
    assert summary_message.edits > 0  # the summary, edited in place
    outside = [m.text for m in told if root.ts not in (m.ts, m.thread_ts)]
    assert outside == []  # no run's own thread, no message of a repository's
    in_thread = [m.text for m in told if m.thread_ts == root.ts]
    # Its milestones only (the canary, paused itself, half way, done), never a repository's.
    assert len(in_thread) <= 5, in_thread
    assert not [c for c in fake_slack.calls if c.method.startswith("reactions.")]

    # -- 8. CI passes on three PRs; Merge all green merges them as alice -------------------
    heads = {repo.repo: repo.head_sha for repo in repos}
    for name in MERGED:
        sha = heads[name]
        assert sha is not None
        fake_github.add_check_run(name, sha, "tests", conclusion="success")
        await honk.send("check_suite", check_suite_completed(name, sha))

    async def green() -> bool:
        now = await honk.states(fleet.id)
        return all(now[name] == FleetRepoState.CI_GREEN for name in MERGED)

    await eventually(green, within=30)

    # -- 6. what Honk wrote to each repository: the PR and the `Honk` check, CI's verdict on
    # it; a retried one, that again (and a vetoed draft made ready)
    written = content_creating(fake_github)
    for name in REPOS:
        runs_there = queued_in[name]
        assert written[name] <= 4 * runs_there, (name, written[name])
    assert max(written[name] for name in REPOS if name not in BROKEN) <= 4

    before = len(fake_github.calls)
    async with aiohttp.ClientSession() as session:
        alice = GitHubClient(
            session, base_url=fake_github.url, oauth_token=fake_github.user_token_for("alice")
        )
        report = await merge_green(honk.store, fleet, alice, by="alice")
    assert report.merged == list(MERGED) and report.not_merged == []
    for name in MERGED:
        (pull,) = fake_github.repo(name)["pulls"].values()
        assert pull["merged"] and pull["merged_by"]["login"] == "alice"
    merges = fake_github.calls_to("PUT", r"/pulls/\d+/merge$")
    assert len(merges) == len(MERGED) and all(c in fake_github.calls[before:] for c in merges)
    states = await honk.states(fleet.id)
    merged = {name for name, state in states.items() if state == FleetRepoState.MERGED}
    assert merged == set(MERGED)
    lap("merged")

    # -- 6. GitHub's limits, on the fake's clock, over everything the installation wrote ----
    assert fake_github.busiest_window(INSTALLATION, 60) <= 80
    assert fake_github.busiest_window(INSTALLATION, 3600) <= 500
    assert fake_github.rate_limited == []
    print(
        f"busiest minute {fake_github.busiest_window(INSTALLATION, 60)}, busiest hour "
        f"{fake_github.busiest_window(INSTALLATION, 3600)}; content-creating requests per "
        f"repository {sorted(Counter(written[name] for name in REPOS).items())}; "
        f"GitHub's time {(clock() - github_began) / 60:.1f} min"
    )


def _issue_writes(fake_github: FakeGitHub) -> list[Call]:
    """Every comment Honk wrote or edited on any issue: the fleet issue's only."""
    return [
        call
        for call in fake_github.calls
        if call.method in ("POST", "PATCH") and re.search(r"/issues/(\d+/)?comments", call.path)
    ]


async def _at_least(honk: Honk, fleet_id: int, settled: int) -> bool:
    return await honk.settled(fleet_id) >= settled
