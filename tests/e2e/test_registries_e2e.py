"""Issue → PR for a repository of each toolchain, through the real HTTP entry, real bwrap,
real git, Honk's real proxy and the real clients, each with one dependency from a local
registry: the agent fixes a failing test, `verify:` passes in the sandbox, the PR is ready,
and nothing setup built (node_modules/, vendor/, target/) is in it. A failing `npm install`
shows npm's own error on the tracking comment.

Node installs from the npm registry through the proxy (the operator allows the registry's
`localhost:<port>`); Go from the module proxy's files, bound read-only by the operator (Go
never proxies a loopback name); Rust from the sparse registry through the proxy; Maven
offline from Debian's local repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import ISSUE, REPO, calc_settings, labeled, seed_calc
from tests.e2e.test_metrics import value
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.registries import CRATE_DOWNLOAD_PATH, NPM_PACKAGE, LocalRegistries
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, eventually, post_webhook
from tests.toolchain_world import (
    BUG,
    FIX,
    FIXED_FILE,
    HOST,
    crate_project,
    go_project,
    maven_missing,
    maven_project,
    node_project,
)

pytestmark = pytest.mark.bwrap
METRICS_TOKEN = "registries-metrics-token"


@pytest.fixture(scope="module")
def registries() -> Iterator[LocalRegistries]:
    with LocalRegistries() as served:
        yield served


@pytest.fixture
def world_settings(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    registries: LocalRegistries,
) -> Settings:
    seed_calc(fake_github)
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    return settings.with_overrides(
        # The operator's registries preset: the mirrors on the host, setup's default list.
        network_presets=(("registries", (f"{HOST}:{registries.port}",)),),
        # The Go module proxy's files, and Debian's Maven and Java configuration.
        sandbox_ro_paths=(str(registries.go_dir),),
        review_outcome_optional=True,
    )


async def finished_run(client: TestClient, issue: int = ISSUE) -> Any:
    """The issue's run once it ended: a toolchain's first build on a busy machine is slow."""
    store = client.app[SERVICES].store

    async def probe() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=issue)
        return runs[0] if runs and not runs[0].state.active else None

    return await eventually(probe, within=300)


def tracking_comment(fake_github: FakeGitHub, run: Any) -> str:
    return str(fake_github.repo(REPO)["comments"][run.tracking_comment_id]["body"])


async def fixed_by_the_agent(
    aiohttp_client: ClientFactory,
    settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    project: dict[str, str | None],
    kind: str,
) -> tuple[Any, dict[str, Any], list[str]]:
    """The issue's run on `project`, the agent fixing `kind`'s file: (run, PR, its files)."""
    fake_github.commit_files(REPO, project)
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path=FIXED_FILE[kind], old_str=BUG, new_str=FIX),
        text("Fixed `add`: it subtracted instead of adding."),
    )
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    pr = fake_github.repo(REPO)["pulls"][run.pr_number]
    files = fake_github.git(REPO, "ls-tree", "-r", "--name-only", run.branch).split()
    committed = fake_github.git(REPO, "show", "--name-only", "--format=", run.branch).split()
    assert committed == [FIXED_FILE[kind]]
    # `verify:` passed in the sandbox: the PR is ready.
    assert "passed" in pr["body"] and not pr["draft"], pr["body"]
    return run, pr, files


async def test_a_node_repository_installs_from_the_registry_and_its_tests_pass(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    registries: LocalRegistries,
) -> None:
    before = len(registries.asked(f"/npm/{NPM_PACKAGE}/-/"))
    _run, pr, files = await fixed_by_the_agent(
        aiohttp_client,
        world_settings,
        fake_github,
        fake_anthropic,
        node_project(registries),
        "node",
    )
    assert len(registries.asked(f"/npm/{NPM_PACKAGE}/-/")) == before + 1  # npm ci, via the proxy
    assert "Honk ran `node --test`: **passed**" in pr["body"]
    # It passed with the dependency npm ci installed, which the PR does not hold.
    assert not [name for name in files if name.startswith("node_modules/")]


async def test_a_second_run_installs_from_the_kept_cache_and_counts_it(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    registries: LocalRegistries,
) -> None:
    tarballs = f"/npm/{NPM_PACKAGE}/-/"
    settings = world_settings.with_overrides(metrics_token=METRICS_TOKEN)
    fake_github.commit_files(REPO, node_project(registries))
    fix = tool_use_edit(command="str_replace", path="calc.js", old_str=BUG, new_str=FIX)
    fake_anthropic.script(fix, text("Fixed `add`."), fix, text("Fixed `add` again."))
    client = await aiohttp_client(create_app(settings))
    before = len(registries.asked(tarballs))
    await post_webhook(client, "issues", labeled())
    first = await finished_run(client)
    assert first.state == RunState.SUCCEEDED, first.error
    assert len(registries.asked(tarballs)) == before + 1

    fake_github.add_issue(REPO, ISSUE + 1, title="add() again", user="alice", labels=["honk"])
    again = labeled()
    again["issue"] = {**again["issue"], "number": ISSUE + 1, "title": "add() again"}
    await post_webhook(client, "issues", again)
    second = await finished_run(client, ISSUE + 1)
    assert second.state == RunState.SUCCEEDED, second.error
    # npm ci found the tarball in the cache the first run filled: no download...
    assert len(registries.asked(tarballs)) == before + 1
    # ...and Honk counted the restore.
    scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    exposition = await scraped.text()
    assert value(exposition, "honk_cache_restores_total", result="hit") >= 1


async def test_a_failing_npm_install_shows_npms_own_error_on_the_tracking_comment(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    registries: LocalRegistries,
) -> None:
    fake_github.commit_files(REPO, node_project(registries, dependency="honk-missing"))
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert run.error == "setup command `npm install` failed (exit 1)"
    comment = tracking_comment(fake_github, run)
    assert "Failed: setup command `npm install` failed (exit 1)" in comment
    # npm's own line, the registry's 404 for the package it does not hold.
    assert (
        f"npm error 404 Not Found - GET http://{HOST}:{registries.port}/npm/honk-missing" in comment
    )
    assert fake_anthropic.requests == []  # no agent ran


async def test_a_go_modules_dependency_from_the_module_proxy_is_in_the_cache_for_its_tests(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    registries: LocalRegistries,
) -> None:
    _run, pr, files = await fixed_by_the_agent(
        aiohttp_client, world_settings, fake_github, fake_anthropic, go_project(registries), "go"
    )
    assert "Honk ran `go test ./...`: **passed**" in pr["body"]
    # Offline, `go test` built from the module cache setup filled in the run's home.
    assert not [name for name in files if name.startswith("vendor/")]


async def test_a_rust_crate_fetches_from_the_sparse_registry_and_its_tests_pass(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    registries: LocalRegistries,
    tmp_path: Path,
) -> None:
    before = len(registries.asked(CRATE_DOWNLOAD_PATH))
    _run, pr, files = await fixed_by_the_agent(
        aiohttp_client,
        world_settings,
        fake_github,
        fake_anthropic,
        crate_project(registries),
        "rust",
    )
    assert len(registries.asked(CRATE_DOWNLOAD_PATH)) == before + 1
    assert "Honk ran `cargo test --offline`: **passed**" in pr["body"]
    assert not [name for name in files if name.startswith("target/")]


async def test_a_maven_project_tests_offline_from_the_local_repository(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    # .ci/run installs Maven and the plugins Debian packages; without them this fails.
    assert maven_missing() is None, maven_missing()
    _run, pr, files = await fixed_by_the_agent(
        aiohttp_client, world_settings, fake_github, fake_anthropic, maven_project(), "maven"
    )
    assert "Honk ran `mvn -o -q -B" in pr["body"] and "**passed**" in pr["body"]
    assert not [name for name in files if name.startswith("target/")]
