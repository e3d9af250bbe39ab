"""`honk run` end to end: a real git checkout, the real sandbox, the fake Anthropic API."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
from pathlib import Path

import pytest

from app.cli.local import EXIT_FAILED, EXIT_NO_CHANGE, EXIT_OK, EXIT_UNUSABLE, run_local
from app.config import Settings
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit

MODEL = "claude-sonnet-4-6"
ROOT = Path(__file__).resolve().parents[2]


async def git(repo: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(repo),
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.com",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.fixture
async def repo(tmp_path: Path) -> Path:
    root = tmp_path / "widgets"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    (root / "AGENTS.md").write_text("Run the tests with python -m pytest.\n")
    (root / ".gitignore").write_text("__pycache__/\n")
    await git(root, "init", "-q", "-b", "main")
    await git(root, "add", "-A")
    await git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def settings(base_settings: Settings, fake_anthropic: FakeAnthropic) -> Settings:
    return base_settings.with_overrides(anthropic_base_url=fake_anthropic.url, model=MODEL)


def script_fix(fake: FakeAnthropic, root: str) -> None:
    fake.script(
        tool_use_edit(command="view", path=f"{root}/calc.py", say="Reading calc.py."),
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("python -m pytest -q -p no:cacheprovider"),
        text("Made add() add instead of subtract. Ran python -m pytest: 1 passed."),
    )


async def test_run_local_fixes_and_leaves_the_change_uncommitted(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    head = await git(repo, "rev-parse", "HEAD")
    script_fix(fake_anthropic, str(repo))  # tmp_path is already a real path
    out, err = io.StringIO(), io.StringIO()
    code = await run_local(
        repo, "add() subtracts", settings.with_overrides(sandbox="off"), out=out, err=err
    )
    printed = out.getvalue()
    assert code == EXIT_OK, printed
    assert err.getvalue() == ""
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert await git(repo, "rev-parse", "HEAD") == head
    assert await git(repo, "status", "--porcelain") == " M calc.py\n"
    assert "sandbox off" in printed
    assert "── turn 1" in printed and "── turn 4" in printed
    assert "✎ str_replace calc.py" in printed
    assert "$ python -m pytest -q -p no:cacheprovider" in printed
    assert "Made add() add instead of subtract." in printed
    assert "last test run: python -m pytest -q -p no:cacheprovider (exit 0)" in printed
    assert "tokens:" in printed and "$" in printed.split("tokens:")[1]
    assert f"honk: changes are left uncommitted in {repo} (review: git diff)" in printed
    assert "nothing changed" not in printed and "failed" not in printed
    # The repository's AGENTS.md reached the system prompt.
    assert "Run the tests with python -m pytest." in fake_anthropic.requests[0]["system"][0]["text"]
    assert "add() subtracts" in fake_anthropic.requests[0]["messages"][0]["content"][0]["text"]


@pytest.mark.bwrap
async def test_run_local_in_bwrap(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    script_fix(fake_anthropic, "/workspace/widgets")
    out = io.StringIO()
    # The checkout as the person names it, relative to where they are.
    monkeypatch.chdir(repo.parent)
    code = await run_local(Path("widgets"), "add() subtracts", settings, out=out)
    printed = out.getvalue()
    assert code == EXIT_OK, printed
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    # The prompt names the neutral root, and the agent's view of a file under it worked.
    assert "/workspace/widgets" in fake_anthropic.requests[0]["system"][0]["text"]
    viewed = fake_anthropic.requests[1]["messages"][-1]["content"][0]
    assert not viewed.get("is_error") and "return a - b" in str(viewed["content"])
    assert "1 passed" in str(fake_anthropic.requests[3]["messages"][-1]["content"])
    # What is printed uses their paths: neither the sandbox's nor the resolved one.
    assert "/workspace" not in printed and str(repo) not in printed
    assert "honk: claude-sonnet-4-6 on widgets (sandbox: bwrap)" in printed
    assert "✎ view widgets/calc.py" in printed
    assert "honk: edited widgets/calc.py" in printed
    assert "honk: changes are left uncommitted in widgets (review: git diff)" in printed


async def test_run_local_refuses_without_a_usable_sandbox(
    repo: Path,
    settings: Settings,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    only_git = tmp_path / "only-git"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(only_git))  # git, and no bwrap to be found
    out, err = io.StringIO(), io.StringIO()
    code = await run_local(repo, "add() subtracts", settings, out=out, err=err)
    assert code == EXIT_UNUSABLE
    assert out.getvalue() == ""
    assert "bwrap" in err.getvalue() and "HONK_SANDBOX=off" in err.getvalue()
    assert fake_anthropic.requests == []


async def test_run_local_exit_code_1_when_the_agent_fails(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    out = io.StringIO()
    wrong = settings.with_overrides(sandbox="off", anthropic_api_key="sk-ant-wrong-0000000000")
    code = await run_local(repo, "add() subtracts", wrong, out=out)
    assert code == EXIT_FAILED
    assert "rejected the API key (401)" in out.getvalue()
    assert "sk-ant-wrong" not in out.getvalue()


async def test_a_failing_last_test_run_exits_1_and_shows_the_end_of_its_output(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a * b"),
        tool_use_bash("python -m pytest -q -p no:cacheprovider"),
        text("I changed add(); the test still fails."),
    )
    out = io.StringIO()
    code = await run_local(repo, "add() subtracts", settings.with_overrides(sandbox="off"), out=out)
    printed = out.getvalue()
    assert code == EXIT_FAILED, printed
    # Where the command failed: its last lines, then the exit code.
    assert "    │ FAILED test_calc.py::test_add - assert 6 == 5" in printed
    assert "    [exit code 1]" in printed
    assert printed.count("1 failed") == 2  # as it ran, and again at the end
    assert "honk: the last test run failed (exit 1): python -m pytest -q -p no:cacheprovider" in (
        printed
    )
    assert (
        printed.split("honk: its output ended with:\n", 1)[1]
        .splitlines()[-1]
        .startswith("  │ 1 failed")
    )
    assert "last test run: python -m pytest -q -p no:cacheprovider (exit 1)" not in printed
    assert f"changes are left uncommitted in {repo}" in printed


async def test_nothing_changed_exits_3_even_in_a_checkout_with_changes_of_its_own(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    # The person's own work in progress is not the agent's change.
    (repo / "notes.txt").write_text("mine\n")
    (repo / "AGENTS.md").write_text("Run the tests with pytest.\n")
    fake_anthropic.script(
        tool_use_edit(command="view", path=f"{repo}/calc.py"),
        text("add() looks right to me; I changed nothing."),
    )
    out, err = io.StringIO(), io.StringIO()
    off = settings.with_overrides(sandbox="off")
    code = await run_local(repo, "check add()", off, out=out, err=err)
    printed = out.getvalue()
    assert code == EXIT_NO_CHANGE, printed
    assert printed.rstrip().endswith(f"honk: nothing changed in {repo}")
    assert "uncommitted" not in printed and err.getvalue() == ""


async def test_a_change_made_by_a_command_counts(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(
        tool_use_bash("sed -i 's/a - b/a + b/' calc.py"),
        tool_use_bash("python -m pytest -q -p no:cacheprovider"),
        text("Fixed with sed."),
    )
    out = io.StringIO()
    code = await run_local(repo, "add() subtracts", settings.with_overrides(sandbox="off"), out=out)
    assert code == EXIT_OK, out.getvalue()
    assert "honk: edited" not in out.getvalue()  # not the editor: git saw the change
    assert await git(repo, "status", "--porcelain") == " M calc.py\n"


async def test_a_directory_that_is_not_a_git_repository_is_refused(
    tmp_path: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    out, err = io.StringIO(), io.StringIO()
    code = await run_local(plain, "add() subtracts", settings, out=out, err=err)
    assert code == EXIT_UNUSABLE
    assert out.getvalue() == ""
    assert err.getvalue() == (
        f"honk: {plain} is not a git repository: run `git init` there first, "
        "or give --repo a git checkout\n"
    )
    assert fake_anthropic.requests == []


async def run_cli(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "--env-file", "", "run", *args,
        cwd=cwd,
        env={
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(cwd),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            **env,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_exit_statuses(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    env = {
        "ANTHROPIC_API_KEY": settings.agent.anthropic_api_key or "",
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "HONK_SANDBOX": "off",
        # The sandbox's Python with pytest (tests/sandbox_python.py), as in base_settings.
        "HONK_SANDBOX_PYTHON": str(settings.sandbox.python),
        "HONK_MODEL": MODEL,
    }
    plain = tmp_path / "plain"
    plain.mkdir()
    status, out, err = await run_cli(tmp_path, "--repo", "plain", "add() subtracts", **env)
    assert (status, out) == (2, "")
    assert err == (
        "honk: plain is not a git repository: run `git init` there first, "
        "or give --repo a git checkout\n"
    )

    fake_anthropic.script(
        tool_use_bash("python -m pytest -q -p no:cacheprovider"),
        text("The test fails; I did not get to fixing it."),
    )
    status, out, err = await run_cli(tmp_path, "--repo", "widgets", "add() subtracts", **env)
    assert status == 1, out + err
    assert "honk: the last test run failed (exit 1)" in out and "1 failed" in out
    assert "honk: nothing changed in widgets" not in out  # the failure is what it says

    fake_anthropic.script(text("Nothing to do here."))
    status, out, err = await run_cli(repo, "add() subtracts", **env)
    assert status == 3, out + err
    assert out.rstrip().endswith("honk: nothing changed in .")
