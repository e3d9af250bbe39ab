"""`honk fleet plan | start | status | continue …` against FakeGitHub and a real store: the
parser app/__main__.py builds, then the command as `main` runs it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.__main__ import FLEET_STEERING, build_parser
from app.cli.fleet import fleet_command
from app.config import Settings
from app.fleet.requests import FleetCommand
from app.fleet_models import FleetOrigin, FleetRepoState, FleetState
from app.store import Store
from tests.fakes.github import FakeGitHub

INSTALLATION = 6400
ORG = "octo-org"
API, WEB, OLD = f"{ORG}/api", f"{ORG}/web", f"{ORG}/old"


@pytest.fixture
def settings(base_settings: Settings, fake_github: FakeGitHub) -> Settings:
    fake_github.add_installation(INSTALLATION, account=ORG, repos=[API, WEB, OLD])
    for repo in (API, WEB, OLD):
        fake_github.add_repo(repo)
        fake_github.set_permission(repo, "alice", "write")
    fake_github.set_permission(WEB, "bob", "write")
    fake_github.repo(OLD)["data"]["archived"] = True
    return base_settings.with_overrides(
        github_api_url=fake_github.url, honk_url="https://honk.example.com"
    )


async def honk_fleet(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """`honk fleet *argv`: (exit status, stdout, stderr)."""
    args = build_parser().parse_args(["fleet", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = await fleet_command(settings, args, out, err)
    return status, out.getvalue(), err.getvalue()


def test_the_steering_words_are_the_fleets_commands() -> None:
    assert list(FLEET_STEERING) == [asked.value for asked in FleetCommand]


async def test_plan_prints_the_plan_and_stores_nothing(
    settings: Settings, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    status, out, err = await honk_fleet(
        settings,
        "plan",
        "--installation",
        str(INSTALLATION),
        "--as",
        "bob",
        "--repos",
        "octo-org/*",
    )
    assert (status, err) == (0, "")
    assert f"`{WEB}`" in out and "archived" in out and "@bob cannot write to it" in out
    selection = tmp_path / "repos.txt"
    selection.write_text("octo-org/api\nnot a line\n")
    status, out, err = await honk_fleet(
        settings, "plan", "--installation", str(INSTALLATION), "--as", "alice",
        "--repos-file", str(selection),
    )  # fmt: skip
    assert (status, out) == (1, "") and err.startswith("honk: line 2:")
    store = await Store.open(settings.store.database_url)
    try:
        assert await store.fleets.find() == []
    finally:
        await store.close()


async def test_start_status_and_steering(settings: Settings) -> None:
    status, out, err = await honk_fleet(
        settings, "start", "--installation", str(INSTALLATION), "--as", "alice",
        "--repos", "octo-org/*", "--request", "Bump requests to 2.32", "--canary", "2",
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out.startswith("Fleet 1 is planned for @alice.")
    assert "the first 2 (the canary: octo-org/api, octo-org/web)" in out
    assert "https://honk.example.com/fleets/1" in out

    store = await Store.open(settings.store.database_url)
    try:
        fleet = await store.fleets.get(1)
        assert fleet is not None and fleet.origin is FleetOrigin.CLI
        assert (fleet.requested_by, fleet.canary_size) == ("alice", 2)
        assert fleet.request == "Bump requests to 2.32" and fleet.selection == "octo-org/*"
        await store.fleets.set_repo(
            1, API, FleetRepoState.PR_OPEN, pr_number=7, pr_url="https://github.test/pull/7"
        )
    finally:
        await store.close()

    status, out, err = await honk_fleet(settings, "status", "1")
    assert status == 0, err
    assert out.startswith("Fleet 1: planned\nasked by @alice from the command line; canary 2")
    assert "request: Bump requests to 2.32" in out
    assert "1 planned, 1 pr_open, 1 skipped" in out
    assert "octo-org/api  pr_open  https://github.test/pull/7" in out
    assert "octo-org/old  skipped" in out and "archived" in out

    status, out, err = await honk_fleet(settings, "pause", "1", "--as", "alice")
    assert (status, out, err) == (
        0,
        "Fleet 1 is paused: nothing more is queued; what runs now finishes.\n",
        "",
    )
    status, out, err = await honk_fleet(settings, "pause", "1", "--as", "alice")
    assert (status, out) == (1, "")
    assert err == "honk: Fleet 1 is paused: only a fleet that is running can be paused.\n"
    status, out, _ = await honk_fleet(settings, "stop", "1", "--as", "alice")
    assert status == 0 and out.startswith("Fleet 1 is stopped")
    store = await Store.open(settings.store.database_url)
    try:
        fleet = await store.fleets.get(1)
        assert fleet is not None and fleet.state is FleetState.STOPPED
    finally:
        await store.close()
    status, _, err = await honk_fleet(settings, "status", "99")
    assert (status, err) == (1, "honk: There is no fleet 99.\n")


async def test_plan_without_the_github_app_says_what_to_set(settings: Settings) -> None:
    unset = settings.with_overrides(app_id=None, private_key=None)
    status, out, err = await honk_fleet(
        unset, "plan", "--installation", "1", "--as", "alice", "--repos", "octo-org/*"
    )
    assert (status, out) == (2, "") and "set APP_ID and PRIVATE_KEY" in err


@pytest.mark.parametrize(
    ("argv", "wrong"),
    [
        (["start", "--installation", "1", "--as", "a", "--repos", "x/*"], "--request"),
        (["plan", "--installation", "1", "--as", "a"], "--repos"),
        (["pause", "1"], "--as"),
        (["status", "zero"], "1 or more"),
    ],
)
def test_usage_mistakes_are_argparses(
    argv: list[str], wrong: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["fleet", *argv])
    assert ended.value.code == 2
    assert wrong in capsys.readouterr().err
