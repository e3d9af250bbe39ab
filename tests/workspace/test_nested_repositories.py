"""Nothing crosses between tenants through host-side git: a `gitdir:` file the agent plants,
pointing at another organisation's mirror on the host, is refused by name before `git add`."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import ISSUE, REPO, calc_settings, fixing_script, labeled, seed_calc
from tests.fakes.anthropic import FakeAnthropic, tool_use_bash
from tests.fakes.git_http import run_git
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook

pytestmark = pytest.mark.bwrap

OTHER = "other-org/secret"


@pytest.fixture
async def world_settings(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    seed_calc(fake_github)
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    # Another organisation's repository, mirrored on this host by an earlier run of theirs.
    fake_github.add_repo(OTHER, files={"secret.txt": "the other tenant's secret\n"})
    mirror = settings.store.data_dir / "mirrors" / "other-org" / "secret.git"
    mirror.parent.mkdir(parents=True)
    await run_git("clone", "--mirror", "-q", str(fake_github.bare_path(OTHER)), str(mirror))
    return settings


async def test_a_planted_gitdir_file_publishes_nothing_of_another_tenant(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    secret_head = fake_github.branch_sha(OTHER, "main")
    # From data/runs/<id>/calc/evil, four levels up is the data directory.
    plant = "mkdir evil && echo 'gitdir: ../../../../mirrors/other-org/secret.git' > evil/.git"
    fake_anthropic.script(tool_use_bash(plant), *fixing_script())
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store

    async def done() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(done, within=60)
    assert run.state == RunState.FAILED
    assert run.error and "nested git repository" in run.error and "evil/.git" in run.error
    assert fake_github.repo(REPO)["pulls"] == {}
    assert "honk/" not in fake_github.git(REPO, "branch", "--list")
    # Not one object of the other repository reached this one.
    objects = fake_github.git(REPO, "cat-file", "--batch-all-objects", "--batch-check")
    assert secret_head not in objects
