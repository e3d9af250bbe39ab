"""The sandbox's Python (real bwrap): the base installation, never Honk's venv; a checkout's
`.venv` first when setup made one; HONK_SANDBOX_PYTHON for another, checked at start-up."""

from __future__ import annotations

import asyncio
import json
import os
import site
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ConfigError, Settings
from app.models import RunState
from app.web import create_app
from app.workspace.mounts import SandboxPython
from app.workspace.sandbox import Sandbox
from tests.calc_world import REPO, calc_settings, fixing_script, labeled, seed_calc
from tests.e2e.test_e2e import finished_run
from tests.fakes.anthropic import FakeAnthropic, result_text, tool_results, tool_use_bash
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, post_webhook

pytestmark = pytest.mark.bwrap
ROOT = Path(__file__).resolve().parents[2]
BASE = os.path.realpath(sys.base_prefix)
# Honk, run by the interpreter of a venv of its own: the default sandbox, one command.
CHILD = """
import asyncio, json, sys
from pathlib import Path
from app.config import Settings
from app.workspace.sandbox import Sandbox

async def main() -> None:
    root, scratch, bound, command = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    settings = Settings().with_overrides(
        data_dir=scratch / "data", checkout_dir=scratch / "checkouts", sandbox_ro_paths=(bound,)
    )
    result = await Sandbox.for_settings(settings, root).run(command)
    print(json.dumps({"exit": result.exit_code, "output": result.output, "prefix": sys.prefix}))

asyncio.run(main())
"""


async def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture(scope="module")
def honk_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real venv that runs Honk: Honk and its dependencies come from this test run's own
    environment (a .pth file), and one package is the venv's alone. It sits in a directory
    the operator binds (HONK_SANDBOX_RO_PATHS), beside a toolchain of theirs."""
    venv = tmp_path_factory.mktemp("opt") / "venv"
    (venv.parent / "toolchain.sh").write_text("echo the toolchain works\n")
    made = asyncio.run(_run(sys.executable, "-m", "venv", "--without-pip", str(venv)))
    assert made[0] == 0, made[1]
    own_site = next(venv.glob("lib/python*/site-packages"))
    (own_site / "honk_venv_only.py").write_text("INSTALLED_FOR_HONK = True\n")
    (own_site / "honk_dependencies.pth").write_text(
        "\n".join([str(ROOT), *site.getsitepackages()]) + "\n"
    )
    yield venv


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "work" / "calc"
    root.mkdir(parents=True)
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    return root


async def in_honk_venv(venv: Path, checkout: Path, scratch: Path, command: str) -> dict[str, str]:
    """`command` in the default sandbox of Honk run from `venv`, the venv's directory bound."""
    python = str(venv / "bin" / "python")
    code, out = await _run(
        python, "-c", CHILD, str(checkout), str(scratch), str(venv.parent), command
    )
    assert code == 0, out
    answer: dict[str, str] = json.loads(out.splitlines()[-1])
    return answer


async def test_honk_in_a_venv_offers_the_base_python_without_its_venv(
    honk_venv: Path, checkout: Path, tmp_path: Path
) -> None:
    # What the base installation holds on its own (no venv, no user site): the sandbox shows
    # exactly that. A fresh venv's Honk dependencies (anthropic) are not there.
    alone = await _run(f"{BASE}/bin/python3", "-I", "-c", "import anthropic")
    base_has_anthropic = alone[0] == 0
    answer = await in_honk_venv(
        honk_venv,
        checkout,
        tmp_path,
        "command -v python; python -c 'import sys; print(sys.prefix)'; "
        "python -c 'import honk_venv_only' 2>&1 | tail -1; "
        "python -c 'import anthropic; print(\"anthropic imported\")' 2>&1 | tail -1; "
        f"ls {honk_venv} 2>&1; echo PATH=$PATH; echo VIRTUAL_ENV=${{VIRTUAL_ENV:-none}}; "
        f"ls {honk_venv.parent}; bash {honk_venv.parent}/toolchain.sh",
    )
    assert answer["prefix"] == str(honk_venv)  # Honk itself ran in its venv
    lines = answer["output"].splitlines()
    assert lines[0] == f"{BASE}/bin/python"
    assert lines[1] == BASE
    assert "ModuleNotFoundError: No module named 'honk_venv_only'" in lines[2]
    assert ("anthropic imported" in lines[3]) == base_has_anthropic, lines[3]
    assert "No such file or directory" in lines[4]  # Honk's venv is not even there
    assert lines[5].startswith(f"PATH={BASE}/bin:") and str(honk_venv) not in lines[5]
    assert lines[6] == "VIRTUAL_ENV=none"
    # The directory that holds it is bound, and shows everything else in it.
    assert lines[7:] == ["toolchain.sh", "the toolchain works"]


async def test_a_checkouts_venv_made_by_setup_comes_first(checkout: Path, tmp_path: Path) -> None:
    sandbox = Sandbox.for_settings(
        Settings().with_overrides(checkout_dir=tmp_path / "checkouts"), checkout
    )
    before = await sandbox.run("command -v python")
    assert before.output.strip() == f"{BASE}/bin/python"
    # As `setup:` would make it: with the sandbox's Python, inside the checkout.
    made = await sandbox.run("python -m venv --without-pip .venv && echo made")
    assert made.exit_code == 0 and "made" in made.output, made.output
    after = await sandbox.run(
        "command -v python; echo $VIRTUAL_ENV; python -c 'import sys; print(sys.prefix)'; "
        "echo $PATH"
    )
    venv = "/workspace/calc/.venv"
    assert after.output.splitlines() == [
        f"{venv}/bin/python",
        venv,
        venv,
        f"{venv}/bin:{BASE}/bin:/usr/local/bin:/usr/bin:/bin",
    ]


async def test_a_venv_linking_out_of_the_checkout_is_not_activated(
    checkout: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere" / ".venv"
    (elsewhere / "bin").mkdir(parents=True)
    (elsewhere / "bin" / "python").symlink_to(f"{BASE}/bin/python3")
    (checkout / ".venv").symlink_to(elsewhere)
    sandbox = Sandbox(checkout)
    result = await sandbox.run("echo ${VIRTUAL_ENV:-none}; command -v python")
    assert result.output.splitlines() == ["none", f"{BASE}/bin/python"]


async def test_honk_sandbox_python_offers_that_venv_and_its_packages_only(
    sandbox_python_prefix: Path, checkout: Path, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "HONK_SANDBOX_PYTHON": str(sandbox_python_prefix),
            "HONK_CHECKOUT_DIR": str(tmp_path / "checkouts"),
        },
        env_file=None,
    )
    assert settings.sandbox.python == sandbox_python_prefix
    sandbox = Sandbox.for_settings(settings, checkout)
    result = await sandbox.run(
        "command -v python; python -c 'import sys, pytest; print(sys.prefix)'; "
        "python -c 'import aiohttp' 2>&1 | tail -1"
    )
    lines = result.output.splitlines()
    assert lines[0] == f"{sandbox_python_prefix}/bin/python"
    assert lines[1] == str(sandbox_python_prefix)  # pytest imported from it
    assert "ModuleNotFoundError: No module named 'aiohttp'" in lines[2]  # the tests' own: no


def test_honk_sandbox_python_must_hold_an_interpreter(tmp_path: Path) -> None:
    (tmp_path / "empty" / "bin").mkdir(parents=True)
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"HONK_SANDBOX_PYTHON": str(tmp_path / "empty")}, env_file=None)
    message = str(refused.value)
    assert message.startswith("HONK_SANDBOX_PYTHON: ")
    assert f"{tmp_path}/empty/bin/python3 is not an executable" in message
    assert SandboxPython(str(tmp_path)).bin_dir == f"{tmp_path}/bin"


async def test_honk_sandbox_python_refuses_honks_own_venv(honk_venv: Path, tmp_path: Path) -> None:
    check = (
        "import sys\nfrom app.config import ConfigError, Settings\n"
        "try:\n    Settings.from_env({'HONK_SANDBOX_PYTHON': sys.prefix}, env_file=None)\n"
        "except ConfigError as error:\n    print(error)\n"
    )
    code, out = await _run(str(honk_venv / "bin" / "python"), "-c", check)
    assert code == 0, out
    assert out.startswith(f"HONK_SANDBOX_PYTHON: {honk_venv} is Honk's own virtualenv"), out


SETUP_VENV = (
    "set -e\n"
    "python -m venv --without-pip .venv\n"
    "site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))')\n"
    # No network in a test: the tools setup would install come from the sandbox's Python.
    "python -c 'import os, pytest; print(os.path.dirname(os.path.dirname(pytest.__file__)))'"
    ' > "$site/tools.pth"\n'
    'echo \'MADE_BY = "setup"\' > "$site/setup_made.py"\n'
)
VERIFY_IN_VENV = "python -c 'import setup_made' && python -m pytest -q"


async def test_setups_venv_serves_the_agent_and_verify_and_stays_out_of_the_pr(
    aiohttp_client: ClientFactory,
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    seed_calc(fake_github)
    fake_github.commit_files(
        REPO,
        {
            ".github/honk.yml": f'setup: bash setup.sh\nverify: "{VERIFY_IN_VENV}"\n',
            "setup.sh": SETUP_VENV,
        },
    )
    settings = calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
    fake_anthropic.script(tool_use_bash("command -v python; echo $VIRTUAL_ENV"), *fixing_script())
    client = await aiohttp_client(create_app(settings))
    assert (await post_webhook(client, "issues", labeled(), delivery_id="venv-1")).status == 202

    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    looked = result_text(tool_results(fake_anthropic.requests[1])[0])
    assert looked.splitlines()[:2] == ["/workspace/calc/.venv/bin/python", "/workspace/calc/.venv"]
    pr = next(iter(fake_github.repo(REPO)["pulls"].values()))
    assert f"`{VERIFY_IN_VENV}`: **passed**" in pr["body"]  # verify ran in setup's venv
    changed = fake_github.git(REPO, "diff", "--name-only", "main", run.branch).split()
    assert changed == ["calc.py"]  # the venv setup made is no part of the change
