"""One HOME per run (real bwrap, real git): beside the checkout, private, shown at /home/honk,
shared by the run's commands, counted in the disk limit, gone when the run ends."""

from __future__ import annotations

import contextlib
import io
import stat
from pathlib import Path

import pytest

from app.cli.local import EXIT_NO_CHANGE, run_local
from app.config import Settings
from app.repo_config import env_name_refusal
from app.workspace.checkout import Checkout
from app.workspace.limits import SandboxLimits
from app.workspace.mirror import Workspaces
from app.workspace.run_home import HOME_DIR, HOME_ENV_NAMES, SandboxHome, home_env
from app.workspace.sandbox import Sandbox
from tests.fakes.anthropic import FakeAnthropic, result_text, text, tool_results, tool_use_bash
from tests.fakes.git_http import init_bare_repo, run_git

pytestmark = pytest.mark.bwrap

REPO = "octo/widgets"


@pytest.fixture
async def origin(tmp_path: Path) -> Path:
    return await init_bare_repo(tmp_path / "remote", REPO, {"README.md": "# widgets\n"})


def _checkout(
    workspaces: Workspaces, origin: Path, run_id: int = 1
) -> contextlib.AbstractAsyncContextManager[Checkout]:
    return workspaces.checkout(
        repo=REPO, clone_url=str(origin), token=None, run_id=run_id, branch=f"honk/{run_id}-x"
    )


async def test_one_home_is_shared_by_the_runs_commands_and_goes_with_the_run(
    base_settings: Settings, origin: Path, tmp_path: Path
) -> None:
    workspaces = Workspaces.for_settings(base_settings)
    async with _checkout(workspaces, origin) as checkout:
        home = checkout.home
        assert home is not None and home.parent == checkout.path.parent
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        sandbox = Sandbox.for_settings(base_settings, checkout.path, home=SandboxHome(home))
        first = await sandbox.run(
            'echo "home=$HOME"; echo kept > ~/note; mkdir -p "$PIP_CACHE_DIR" "$GOMODCACHE"; '
            'echo wheel > "$PIP_CACHE_DIR/marker"; env'
        )
        assert first.exit_code == 0, first.output
        assert f"home={HOME_DIR}" in first.output
        assert str(tmp_path) not in first.output  # no host path in the environment
        # A second command, a new sandbox and a new /tmp: the home is the same.
        second = await sandbox.run('cat ~/note "$PIP_CACHE_DIR/marker" && echo $GOFLAGS')
        assert second.exit_code == 0, second.output
        assert second.output.split() == ["kept", "wheel", "-modcacherw"]
        assert (home / ".cache" / "pip" / "marker").read_text() == "wheel\n"
        # Not in the checkout: nothing of it could be committed.
        assert not (checkout.path / "note").exists()
        # Go's module cache is read-only without -modcacherw: the home goes all the same.
        locked = await sandbox.run(f"mkdir -p {HOME_DIR}/go/pkg/mod/x/y && chmod -R a-w ~/go")
        assert locked.exit_code == 0, locked.output
    assert not home.exists() and not checkout.path.parent.exists()


async def test_the_home_counts_against_the_disk_limit(
    base_settings: Settings, origin: Path
) -> None:
    workspaces = Workspaces.for_settings(base_settings)
    async with _checkout(workspaces, origin, run_id=2) as checkout:
        assert checkout.home is not None
        limits = SandboxLimits(disk_mb=8, file_size_mb=64, check_interval=0.1)
        sandbox = Sandbox(checkout.path, limits=limits, home=SandboxHome(checkout.home))
        result = await sandbox.run("head -c 12M /dev/zero > ~/big; sleep 1")
        assert result.limit is not None and "HONK_SANDBOX_DISK_MB" in result.limit, result
        # Without the home (HOME=/tmp as before), the same file is within the limit.
        bare = Sandbox(checkout.path, limits=SandboxLimits(disk_mb=8, file_size_mb=64, tmp_mb=32))
        plain = await bare.run("echo $HOME; head -c 12M /dev/zero > ~/big")
        assert plain.exit_code == 0 and plain.limit is None, plain
        assert plain.output.strip() == "/tmp"


def test_a_repository_cannot_redirect_the_home_or_its_caches() -> None:
    for name in sorted(HOME_ENV_NAMES):
        assert env_name_refusal(name) is not None, name
        assert env_name_refusal(name.lower()) is not None, name
    assert set(home_env(HOME_DIR)) == HOME_ENV_NAMES
    assert home_env(HOME_DIR)["CARGO_HOME"] == f"{HOME_DIR}/.cargo"
    assert "-Duser.home=/home/honk" in home_env(HOME_DIR)["MAVEN_OPTS"]


async def test_honk_run_keeps_its_directorys_caches_for_the_next_honk_run(
    base_settings: Settings, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    repo = await init_bare_repo(tmp_path / "remote", "octo/local", {"README.md": "# x\n"})
    root = tmp_path / "widgets"
    await run_git("clone", "-q", str(repo), str(root))
    settings = base_settings.with_overrides(anthropic_base_url=fake_anthropic.url)
    fake_anthropic.script(
        tool_use_bash('echo "home=$HOME"; mkdir -p "$PIP_CACHE_DIR"; echo w > "$PIP_CACHE_DIR/w"'),
        text("Warmed the cache."),
    )
    out = io.StringIO()
    assert await run_local(root, "warm the cache", settings, out=out) == EXIT_NO_CHANGE
    assert "No package cache yet for these lock files" in out.getvalue()
    fake_anthropic.script(tool_use_bash('cat "$PIP_CACHE_DIR/w"'), text("It is there."))
    again = io.StringIO()
    assert await run_local(root, "look at the cache", settings, out=again) == EXIT_NO_CHANGE
    assert "Package caches restored: key " in again.getvalue()
    last = tool_results(fake_anthropic.requests[-1])
    assert result_text(last[0]).startswith("w"), last
    # The run's home is gone; the checkouts directory holds nothing of it.
    assert list(settings.sandbox.checkout_dir.iterdir()) == []
