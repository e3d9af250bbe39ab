"""Scale-out: two Honk instances ("machines") share one PostgreSQL queue, end to end."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import FIXED, REPO, calc_settings, labeled, seed_calc
from tests.fakes.anthropic import FakeAnthropic, Turn, tool_results, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.store.test_store_postgres import create_database, drop_database, url_of

ISSUES = (21, 22, 23, 24)
pytestmark = pytest.mark.postgres


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    name = await create_database()
    try:
        yield url_of(name)
    finally:
        await drop_database(name)


def answer(request: dict[str, Any]) -> Turn | str:
    """Runs interleave on the fake model: answer each by the issue its prompt is about."""
    if tool_results(request):
        return "Recorded the change."
    number = re.search(r"Record change (\d+)", json.dumps(request["messages"][0]))
    assert number is not None
    n = number.group(1)
    return tool_use_edit(command="create", path=f"change-{n}.txt", file_text=f"change {n}\n")


def machine(base: Settings, name: str, tmp_path: Path, database_url: str) -> Settings:
    data_dir = tmp_path / name  # each machine has its own mirrors and checkouts
    return base.with_overrides(data_dir=data_dir, database_url=database_url, workers=1)


async def test_two_instances_share_one_postgres_queue(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    seed_calc(fake_github, issue=False)
    fake_github.commit_files(REPO, {"calc.py": FIXED})  # the repository's tests pass
    for number in ISSUES:
        fake_github.add_issue(
            REPO, number, title=f"Record change {number}", body="", user="alice", labels=["honk"]
        )
    fake_anthropic.script(*[answer] * (2 * len(ISSUES)))
    shared = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    first = await aiohttp_client(create_app(machine(shared, "a", tmp_path, postgres_url)))
    second = await aiohttp_client(create_app(machine(shared, "b", tmp_path, postgres_url)))

    for index, number in enumerate(ISSUES):
        payload = labeled()
        # The issue as labelled: the run follows this, not what the issue says later.
        issue = fake_github.repo(REPO)["issues"][number]
        payload["issue"] = {
            **payload["issue"],
            **{k: issue[k] for k in ("number", "title", "body")},
        }
        response = await post_webhook((first, second)[index % 2], "issues", payload)
        assert response.status == 202

    store = first.app[SERVICES].store

    async def all_finished() -> list[Any]:
        runs = await store.runs.find(repo=REPO)
        done = [run for run in runs if not run.state.active]
        return runs if len(runs) == len(ISSUES) and len(done) == len(ISSUES) else []

    runs = await eventually(all_finished, within=90)
    assert {run.state for run in runs} == {RunState.SUCCEEDED}, [
        (run.issue_number, run.state, [(st.name, st.detail) for st in run.steps]) for run in runs
    ]
    assert all(run.attempts == 1 for run in runs)  # no run was claimed twice
    assert sorted(run.issue_number for run in runs) == sorted(ISSUES)
    pulls = fake_github.repo(REPO)["pulls"].values()
    assert sorted(int(p["head"]["ref"].split("/")[1].split("-")[0]) for p in pulls) == sorted(
        ISSUES
    )
    for run in runs:
        path = f"change-{run.issue_number}.txt"
        assert fake_github.file_at(REPO, run.branch, path) == f"change {run.issue_number}\n"
    # Each run was claimed exactly once, by one of the two machines' workers.
    hosts = {first.app[SERVICES].workers.host_id, second.app[SERVICES].workers.host_id}
    for run in runs:
        claims = [step.detail for step in run.steps if step.name == "claimed"]
        assert len(claims) == 1 and claims[0].rsplit(":", 1)[0] in hosts
