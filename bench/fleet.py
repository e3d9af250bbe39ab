"""A fleet change across many repositories, end to end on the fakes, with a model that answers
at once: `python -m bench fleet [--repos 200]`.

Everything is real but the model's thinking: Honk's services (the conductor, the workers,
the pipeline with git over loopback and the bwrap sandbox, the review's judge), the SQLite
store, the fake GitHub and Slack. GitHub's side keeps time on a virtual clock, so the pacing
of writes (80 a minute, 500 an hour) costs no real waiting while the fake measures every
minute and hour against GitHub's limits. Printed beside it, in the same run: one ordinary
run (an issue labelled `honk`) and its REST calls.

Goals (issue 25): at most 15 REST calls and 4 content-creating requests per fleet
repository; never over GitHub's limits; Honk's own CPU under 1 s per repository.
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from app.fleet.requests import FleetCommand, command, start_fleet
from app.fleet.resolving import resolve
from app.fleet.selection import parse_selection
from app.fleet_models import FleetOrigin, FleetState, NewFleet
from app.github.pacing import is_content_creating
from app.models import RunState
from app.services import GitHubTime
from app.workspace.sandbox import Sandbox
from bench._servers import serve, world_settings
from tests.conftest import load_payload, new_private_key, sign
from tests.fakes.anthropic import FakeAnthropic, Turn, text, tool_results, tool_use_edit
from tests.fakes.github import Call, FakeGitHub, VirtualClock, public_key_of
from tests.fakes.slack import FakeSlack

OWNER = "fleet"
INSTALLATION = 88
ORDINARY = f"{OWNER}/ordinary"
REQUEST = "Bump VERSION to 2\n\nEvery service of ours carries a VERSION file; it should say 2."
CONFIG = "verify: test -f VERSION\nreview: {outcome: off}\n"


def answer(request: dict[str, Any]) -> Turn:
    """The agent's two turns in any repository: write VERSION, then say so."""
    if tool_results(request):
        return text("VERSION now says 2.")
    return tool_use_edit(command="create", path="VERSION", file_text="2\n")


def is_git(call: Call) -> bool:
    """git's smart HTTP (clone, fetch, push): not GitHub's REST API."""
    return ".git/" in call.path


def repo_of(call: Call) -> str | None:
    parts = call.path.split("/")
    return f"{parts[2]}/{parts[3]}" if len(parts) > 3 and parts[1] == "repos" else None


def creating(call: Call) -> bool:
    return is_content_creating(call.method, call.path, json.dumps(call.json or {}).encode())


def per_repo(calls: list[Call], repos: list[str]) -> tuple[list[int], list[int]]:
    """REST calls and content-creating calls for each of `repos`."""
    every = Counter(repo_of(call) for call in calls)
    made = Counter(repo_of(call) for call in calls if creating(call))
    return [every[repo] for repo in repos], [made[repo] for repo in repos]


def labeled(number: int) -> dict[str, Any]:
    payload = load_payload("issues.labeled.1")
    payload["label"] = {**payload["label"], "name": "honk"}
    payload["repository"] = {**payload["repository"], "full_name": ORDINARY, "name": "ordinary"}
    payload["issue"] = {**payload["issue"], "number": number, "title": "Bump VERSION to 2"}
    payload["sender"] = {**payload["sender"], "login": "alice", "type": "User"}
    payload["installation"] = {"id": INSTALLATION}
    return payload


async def until(probe: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (found := await probe()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.05)
    return found


async def ordinary_run(github: FakeGitHub, honk_url: str, store: Any) -> tuple[int, int]:
    """One issue labelled `honk` in its own repository: its REST calls (its repository's and
    the rest: its token, the people it names) and its content-creating calls."""
    github.add_issue(ORDINARY, 1, title="Bump VERSION to 2", body="", user="alice", labels=["honk"])
    body = json.dumps(labeled(1)).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{honk_url}/api/github/webhooks",
            data=body,
            headers={
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(body),
                "Content-Type": "application/json",
            },
        ) as response,
    ):
        assert response.status == 202, await response.text()

    async def finished() -> bool:
        runs = await store.runs.find(repo=ORDINARY)
        return bool(runs) and all(not run.state.active for run in runs)

    await until(finished, 300, "the ordinary run")
    run = (await store.runs.find(repo=ORDINARY))[0]
    if run.state is not RunState.SUCCEEDED:
        raise RuntimeError(f"the ordinary run ended {run.state}: {run.error}")
    rest = [call for call in github.calls if not is_git(call)]
    return len(rest), sum(creating(call) for call in rest if repo_of(call) is not None)


async def main(repos: int = 200, quick: bool = False) -> None:
    from app.web import SERVICES, create_app

    count = 20 if quick else repos
    names = [f"{OWNER}/service-{index:03d}" for index in range(count)]
    key = new_private_key()
    with tempfile.TemporaryDirectory(prefix="honk-bench-fleet-") as tmp:
        root = Path(tmp)
        clock = VirtualClock()
        github = FakeGitHub(
            app_id=1, public_key_pem=public_key_of(key), private_key_pem=key, repos_root=root
        )
        github.clock = clock
        slack, model = FakeSlack(), FakeAnthropic()
        async with (
            serve(github.app) as github_url,
            serve(slack.app(), "/api/") as slack_url,
            serve(model.app) as model_url,
        ):
            github.url, slack.url, model.url = github_url, slack_url, model_url
            github.add_installation(INSTALLATION, account=OWNER, repos=[*names, ORDINARY])
            for index, name in enumerate([*names, ORDINARY]):
                language = "Python" if index % 2 else "Go"
                github.add_repo(
                    name, files={"VERSION": "1\n", ".github/honk.yml": CONFIG}, language=language
                )
                github.set_permission(name, "alice", "write")
            model.script(*[answer] * (2 * (count + 1)))
            sandbox = "bwrap" if await Sandbox.check("bwrap") is None else "off"
            settings = world_settings(
                root,
                key,
                github_url,
                slack,
                slack_url,
                model,
                model_url,
                sandbox=sandbox,
                workers=4,
                fleet_concurrency=4,
                fleet_max_runs=4,
                lease_seconds=120.0,
            )
            app = create_app(settings, github_time=GitHubTime(clock=clock, sleep=clock.sleep))
            async with serve(app) as honk_url:
                services = app[SERVICES]
                store = services.store
                ordinary_calls, ordinary_made = await ordinary_run(github, honk_url, store)
                github.calls.clear()

                cpu_before = resource.getrusage(resource.RUSAGE_SELF)
                started, virtual_start = time.perf_counter(), clock()
                gh = await services.github.installation_client(INSTALLATION)
                plan = await resolve(
                    parse_selection(f"{OWNER}/*"), gh, requester="alice", limit=count + 1
                )
                targets = [t for t in plan.targets if t.repo != ORDINARY]
                fleet = await start_fleet(
                    store,
                    NewFleet(INSTALLATION, "alice", REQUEST, f"{OWNER}/*", FleetOrigin.CLI),
                    targets,
                    wake=services.conductor.wake,
                )

                async def in_state(*states: FleetState) -> bool:
                    now = await store.fleets.get(fleet.id)
                    return now is not None and now.state in states

                await until(lambda: in_state(FleetState.WAITING, FleetState.DONE), 300, "canary")
                canary_at = time.perf_counter() - started
                if not await in_state(FleetState.DONE):
                    await command(
                        store,
                        fleet.id,
                        FleetCommand.CONTINUE,
                        by="alice",
                        wake=services.conductor.wake,
                    )
                await until(lambda: in_state(FleetState.DONE), 60 * count, "the fleet")
                wall = time.perf_counter() - started
                cpu_after = resource.getrusage(resource.RUSAGE_SELF)
                counts = await store.fleets.counts(fleet.id)

        cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (
            cpu_before.ru_utime + cpu_before.ru_stime
        )
        calls, made = per_repo(github.calls, names)
        outside = [c for c in github.calls if repo_of(c) is None and not is_git(c)]
        shared = len(outside) / count  # tokens, the requester's profile, the selection's list
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        busiest_minute = github.busiest_window(INSTALLATION, 60)
        busiest_hour = github.busiest_window(INSTALLATION, 3600)
        settled = {state.value: n for state, n in counts.items() if n}
        print(f"fleet benchmark ({count} repositories, sandbox={sandbox}, instant model)")
        print(f"  states at the end        {settled}")
        print(f"  wall time                {wall:8.1f} s   (canary done after {canary_at:.1f} s)")
        print(f"  GitHub's time (virtual)  {(clock() - virtual_start) / 60:8.1f} min")
        print(
            f"  REST calls per repo      median {statistics.median(calls) + shared:.1f}, "
            f"max {max(calls) + shared:.1f}   (goal <= 15; an ordinary run: {ordinary_calls})"
        )
        print(
            f"  content-creating / repo  median {statistics.median(made):.0f}, max {max(made)}"
            f"   (goal <= 4; an ordinary run: {ordinary_made})"
        )
        kinds = Counter(f"{call.method} {call.path}" for call in outside).most_common(3)
        print(f"  of them outside a repo   {shared:.1f} per repository: {kinds}")
        print(f"  busiest minute           {busiest_minute} content-creating (GitHub: 80)")
        print(f"  busiest hour             {busiest_hour} content-creating (GitHub: 500)")
        print(f"  rate limited by GitHub   {len(github.rate_limited)}")
        print(
            f"  CPU in this process      {cpu / count:8.3f} s per repository "
            "(Honk with the fakes it serves; goal < 1 s)"
        )
        print(f"  peak memory              {peak_mb:8.0f} MB (this process: Honk and the fakes)")


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
