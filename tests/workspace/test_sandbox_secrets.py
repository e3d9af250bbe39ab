"""Honk's secrets stay invisible to the agent wherever Honk is deployed (real bwrap).

The deployment under test has Honk installed in a directory the sandbox binds (as
`/opt` once was, or anything named in HONK_SANDBOX_RO_PATHS): its `.env`, the App's key
file, the data directory, its working directory and its package all sit there.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.agent.tools import EDITOR_TOOL_NAME, ToolBox
from app.cli.local import EXIT_NO_CHANGE, run_local
from app.config import Settings
from app.models import RunState
from app.web import create_app
from app.workspace.mounts import APP_DIR, REBUILD_MAX_ENTRIES, Hidden, HonkInstall
from app.workspace.sandbox import Sandbox
from tests.calc_world import REPO, calc_settings, labeled, seed_calc
from tests.e2e.test_e2e import ClientFactory, finished_run
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import post_webhook

pytestmark = pytest.mark.bwrap
# Every file holding this session's key or a test's secret was written after this.
SESSION_STARTED = time.time() - 60


@dataclass
class Deployment:
    bound: Path  # the directory the sandbox binds (like /opt)
    home: Path  # Honk's directory in it: its working directory and source tree
    env_file: Path
    key_file: Path
    data_dir: Path
    package: Path
    webhook_secret: str
    key_marker: str

    @property
    def install(self) -> HonkInstall:
        return HonkInstall(package=self.package, source_root=self.home)

    def settings(self, base: Settings) -> Settings:
        return base.with_overrides(
            data_dir=self.data_dir,
            env_file=self.env_file,
            private_key_path=self.key_file,
            checkout_dir=self.home / "checkouts",
            # The bound directory, and a venv inside Honk's directory (its toolchain).
            sandbox_ro_paths=(str(self.bound), str(self.home / ".venv")),
        )

    def secret_paths(self) -> list[Path]:
        return [
            self.env_file,
            self.key_file,
            self.data_dir / "honk.db",
            self.data_dir / "mirrors" / "other-org" / "secret.git" / "config",
            self.home / "checkouts" / "0123abcd" / "theirs" / "code.py",
            self.package / "config.py",
            self.home / "pyproject.toml",  # the source tree, Honk's working directory
        ]


@pytest.fixture
def deployment(tmp_path: Path, private_key_pem: str, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    bound = tmp_path / "opt"
    home = bound / "honk"
    webhook_secret = "whsec-" + secrets.token_hex(16)
    key_file = home / "keys" / "app.pem"
    data_dir = home / ".honk"
    files = {
        bound / "tool.sh": "echo the toolchain works\n",
        home / ".env": f"APP_ID=4242\nWEBHOOK_SECRET={webhook_secret}\n"
        f"PRIVATE_KEY_PATH={key_file}\n",
        key_file: private_key_pem,
        data_dir / "honk.db": f"runs of every tenant {webhook_secret}\n",
        data_dir / "mirrors" / "other-org" / "secret.git" / "config": "[core]\n",
        home / "checkouts" / "0123abcd" / "theirs" / "code.py": "another tenant's code\n",
        home / "app" / "__init__.py": "",
        home / "app" / "config.py": "class ConfigError(ValueError): ...\n",
        home / "pyproject.toml": '[project]\nname = "honk"\n',
        home / ".venv" / "bin" / "tool": "echo the venv works\n",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    monkeypatch.chdir(home)  # Honk runs from its directory, as a service would
    return Deployment(
        bound=bound,
        home=home,
        env_file=home / ".env",
        key_file=key_file,
        data_dir=data_dir,
        package=home / "app",
        webhook_secret=webhook_secret,
        key_marker=private_key_pem.splitlines()[1],
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "work" / "calc"
    root.mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    return root


def sandbox_in(deployment: Deployment, base: Settings, root: Path) -> Sandbox:
    return Sandbox.for_settings(deployment.settings(base), root, install=deployment.install)


async def test_honk_installed_under_a_bound_directory_shows_none_of_its_files(
    deployment: Deployment, base_settings: Settings, checkout: Path
) -> None:
    sandbox = sandbox_in(deployment, base_settings, checkout)
    for path in deployment.secret_paths():
        result = await sandbox.run(f"cat {path}")
        assert result.exit_code != 0, path
        assert "No such file" in result.output, (path, result.output)
    # The rest of the bound directory, and the venv inside Honk's directory, still work.
    tools = await sandbox.run(
        f"bash {deployment.bound}/tool.sh; bash {deployment.home}/.venv/bin/tool"
    )
    assert tools.output.split("\n")[:2] == ["the toolchain works", "the venv works"]
    # Honk's directory shows nothing but the venv; the names of its files are gone too.
    listing = await sandbox.run(f"ls -a {deployment.home} {deployment.bound}")
    assert ".env" not in listing.output and ".honk" not in listing.output
    assert "keys" not in listing.output and "app" not in listing.output.split()
    assert ".venv" in listing.output and "tool.sh" in listing.output
    # Nothing there takes writes.
    write = await sandbox.run(f"touch {deployment.home}/new {deployment.bound}/new")
    assert write.exit_code != 0
    assert not (deployment.home / "new").exists() and not (deployment.bound / "new").exists()


async def test_whole_sandbox_file_system_searched_holds_no_key_or_webhook_secret(
    deployment: Deployment, base_settings: Settings, checkout: Path
) -> None:
    sandbox = sandbox_in(deployment, base_settings, checkout)
    # Every directory (/usr, /opt, the Python install, the bound one), only the kernel's
    # /proc, /sys and /dev left to the checks below. The key was made in this session and
    # the secret in this test, so any copy of them is a file changed since the session
    # began: those are all read (the untouched gigabytes of /usr are not re-read).
    search = await sandbox.run(
        "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f "
        f"-newermt '@{int(SESSION_STARTED)}' -print0 2>/dev/null | xargs -0 -r grep -lF "
        f"-e '{deployment.key_marker}' -e '{deployment.webhook_secret}' 2>/dev/null; "
        "find / \\( -path /proc -o -path /sys \\) -prune -o "
        "\\( -name .env -o -name app.pem -o -name honk.db \\) -print 2>/dev/null; echo searched",
        timeout=120,
    )
    assert search.output.strip().splitlines() == ["searched"], search.output
    proc = await sandbox.run("cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'")
    assert deployment.key_marker not in proc.output
    assert deployment.webhook_secret not in proc.output


async def test_pytest_still_runs_in_the_deployments_sandbox(
    deployment: Deployment, base_settings: Settings, checkout: Path
) -> None:
    sandbox = sandbox_in(deployment, base_settings, checkout)
    result = await sandbox.run("python -m pytest -q -p no:cacheprovider test_calc.py")
    assert result.exit_code == 0, result.output
    assert "1 passed" in result.output


async def test_the_mount_table_names_neither_the_secrets_nor_the_data_directory(
    deployment: Deployment, base_settings: Settings, checkout: Path
) -> None:
    sandbox = sandbox_in(deployment, base_settings, checkout)
    mountinfo = (await sandbox.run("cat /proc/self/mountinfo")).output
    assert f"{deployment.bound}/tool.sh" in mountinfo  # the rebuilt directory's entries
    for path in (deployment.env_file, deployment.key_file.parent, deployment.data_dir):
        assert str(path) not in mountinfo
    assert str(deployment.package) not in mountinfo


async def test_big_directories_cover_hidden_paths_instead(tmp_path: Path, checkout: Path) -> None:
    """Past REBUILD_MAX_ENTRIES entries a hidden path is covered: its content stays hidden."""
    big = tmp_path / "site-packages"
    big.mkdir()
    for index in range(REBUILD_MAX_ENTRIES + 5):
        (big / f"pkg{index}.py").write_text(f"X = {index}\n")
    (big / "honk-secret.txt").write_text("do not show\n")
    (big / "honkdir").mkdir()
    (big / "honkdir" / "inner.txt").write_text("do not show either\n")
    sandbox = Sandbox(
        checkout,
        ro_paths=[str(big)],
        hidden=Hidden(secrets=(str(big / "honk-secret.txt"), str(big / "honkdir"))),
    )
    result = await sandbox.run(
        f"cat {big}/pkg3.py; cat {big}/honk-secret.txt; ls -A {big}/honkdir; "
        f"cat {big}/honkdir/inner.txt; touch {big}/honkdir/x"
    )
    assert "X = 3" in result.output
    assert "do not show" not in result.output
    assert not (big / "honkdir" / "x").exists()


async def test_honks_own_package_is_hidden_even_when_its_tree_is_bound(
    base_settings: Settings, checkout: Path
) -> None:
    """The real install: binding Honk's source tree on purpose still leaves its package out."""
    settings = base_settings.with_overrides(sandbox_ro_paths=(str(APP_DIR.parent),))
    sandbox = Sandbox.for_settings(settings, checkout)
    result = await sandbox.run(f"ls {APP_DIR.parent}; cat {APP_DIR}/config.py")
    assert "pyproject.toml" in result.output  # the tree is there
    assert "No such file" in result.output and "class Settings" not in result.output


async def test_local_run_in_honks_own_directory_hides_its_env_file_and_data(
    deployment: Deployment, base_settings: Settings
) -> None:
    """`honk run --repo .` where the env file and data directory sit inside the checkout."""
    settings = deployment.settings(base_settings)
    sandbox = Sandbox.for_settings(settings, deployment.home, install=deployment.install)
    root = sandbox.visible_root
    shown = await sandbox.run(f"cat {root}/.env; ls -A {root}/.honk; cat pyproject.toml")
    assert deployment.webhook_secret not in shown.output and "honk.db" not in shown.output
    assert 'name = "honk"' in shown.output  # the repository itself is the work
    tools = ToolBox.for_settings(settings.agent, sandbox)
    for path in (f"{root}/.env", ".honk/honk.db", f"{root}/keys/app.pem"):
        outcome = await tools.run(EDITOR_TOOL_NAME, {"command": "view", "path": path})
        assert outcome.is_error and "hidden" in outcome.content, (path, outcome.content)
        assert deployment.webhook_secret not in outcome.content
    written = await tools.run(
        EDITOR_TOOL_NAME, {"command": "create", "path": ".env", "file_text": "X=1\n"}
    )
    assert written.is_error and deployment.env_file.read_text().startswith("APP_ID=4242")


def _spy_script(deployment: Deployment) -> list[Any]:
    probes = "; ".join(f"cat {p}" for p in deployment.secret_paths())
    return [
        tool_use_bash(f"{probes}; echo MOUNTS; cat /proc/self/mountinfo; pwd; echo probed"),
        text("Nothing to change."),
    ]


def _tool_results(fake_anthropic: FakeAnthropic) -> str:
    """Everything Honk sent the model back from its tools, in every request."""
    found = []
    for request in fake_anthropic.requests:
        for message in request["messages"]:
            if isinstance(message["content"], list):
                found += [
                    json.dumps(block) for block in message["content"]
                    if block.get("type") == "tool_result"
                ]  # fmt: skip
    return "\n".join(found)


def _assert_nothing_leaked(results: str, deployment: Deployment, run_id: int | None) -> None:
    assert "probed" in results
    assert deployment.webhook_secret not in results
    assert deployment.key_marker not in results
    assert "ConfigError" not in results and "another tenant" not in results
    mountinfo = results[results.index("MOUNTS") :]
    assert str(deployment.data_dir) not in mountinfo
    if run_id is not None:
        assert f"/{run_id}/" not in mountinfo


async def test_the_servers_agent_cannot_read_honks_secrets(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    deployment: Deployment,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    seed_calc(fake_github)
    settings = calc_settings(
        deployment.settings(base_settings), fake_github, fake_anthropic, fake_slack
    )
    fake_anthropic.script(*_spy_script(deployment))
    client: TestClient = await aiohttp_client(create_app(settings))
    assert (await post_webhook(client, "issues", labeled(), delivery_id="spy-1")).status == 202
    run = await finished_run(client)
    assert run.state == RunState.NO_CHANGE, run.error
    results = _tool_results(fake_anthropic)
    _assert_nothing_leaked(results, deployment, run.id)
    # The checkout shows at a neutral path, named after the repository only.
    assert f"/workspace/{REPO.split('/')[1]}" in results


async def test_honk_run_agent_cannot_read_honks_secrets(
    base_settings: Settings, deployment: Deployment, checkout: Path, fake_anthropic: FakeAnthropic
) -> None:
    settings = deployment.settings(base_settings).with_overrides(
        anthropic_base_url=fake_anthropic.url
    )
    fake_anthropic.script(*_spy_script(deployment))
    init = await asyncio.create_subprocess_exec("git", "init", "-q", str(checkout))
    assert await init.wait() == 0  # honk run works on a git checkout
    out = io.StringIO()
    status = await run_local(checkout, "look around", settings, out=out)
    assert status == EXIT_NO_CHANGE, out.getvalue()  # the spy only looked
    _assert_nothing_leaked(_tool_results(fake_anthropic), deployment, None)


async def test_a_secret_stays_hidden_even_when_named_as_a_read_only_path(
    deployment: Deployment, base_settings: Settings, checkout: Path
) -> None:
    settings = deployment.settings(base_settings)
    settings = settings.with_overrides(
        sandbox_ro_paths=(*settings.sandbox.ro_paths, str(deployment.data_dir))
    )
    sandbox = Sandbox.for_settings(settings, checkout, install=deployment.install)
    result = await sandbox.run(f"ls -A {deployment.data_dir}; cat {deployment.data_dir}/honk.db")
    assert result.exit_code != 0 and "tenant" not in result.output


async def test_honk_in_a_venv_leaves_its_dependencies_out(tmp_path: Path, checkout: Path) -> None:
    """The venv's interpreter works in the sandbox; Honk's own site-packages are not there."""
    venv = tmp_path / "venv"
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "venv", "--without-pip", str(venv)
    )
    assert await made.wait() == 0
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "honk_dependency.py").write_text("SECRET_SAUCE = 1\n")
    install = HonkInstall(package=tmp_path / "elsewhere" / "app", site_packages=(site,))
    settings = Settings().with_overrides(
        sandbox_ro_paths=(str(venv),), checkout_dir=tmp_path / "co"
    )
    sandbox = Sandbox.for_settings(settings, checkout, install=install)
    result = await sandbox.run(
        f"{venv}/bin/python -c 'import sys; print(sys.prefix)'; "
        f"{venv}/bin/python -c 'import honk_dependency' 2>&1 | tail -1; ls {site}"
    )
    assert result.output.splitlines()[0] == str(venv)
    assert "ModuleNotFoundError" in result.output
    assert "No such file" in result.output  # the site-packages directory itself is gone
