"""`honk run` end to end: a real git checkout, the real sandbox, the fake Anthropic API."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from app.cli.local import run_local
from app.config import Settings
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit

MODEL = "claude-sonnet-4-6"


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
    out = io.StringIO()
    code = await run_local(repo, "add() subtracts", settings.with_overrides(sandbox="off"), out=out)
    printed = out.getvalue()
    assert code == 0, printed
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
    assert "uncommitted" in printed
    # The repository's AGENTS.md reached the system prompt.
    assert "Run the tests with python -m pytest." in fake_anthropic.requests[0]["system"][0]["text"]
    assert "add() subtracts" in fake_anthropic.requests[0]["messages"][0]["content"][0]["text"]


@pytest.mark.bwrap
async def test_run_local_in_bwrap(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    script_fix(fake_anthropic, "/workspace/widgets")
    out = io.StringIO()
    code = await run_local(repo, "add() subtracts", settings, out=out)
    assert code == 0, out.getvalue()
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    # The prompt names the neutral root, and the agent's view of a file under it worked.
    assert "/workspace/widgets" in fake_anthropic.requests[0]["system"][0]["text"]
    viewed = fake_anthropic.requests[1]["messages"][-1]["content"][0]
    assert not viewed.get("is_error") and "return a - b" in str(viewed["content"])
    assert "1 passed" in str(fake_anthropic.requests[3]["messages"][-1]["content"])


async def test_run_local_refuses_without_a_usable_sandbox(
    repo: Path,
    settings: Settings,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no bwrap to be found
    out = io.StringIO()
    code = await run_local(repo, "add() subtracts", settings, out=out)
    assert code == 2
    assert "bwrap" in out.getvalue() and "HONK_SANDBOX=off" in out.getvalue()
    assert fake_anthropic.requests == []


async def test_run_local_exit_code_1_when_the_agent_fails(
    repo: Path, settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    out = io.StringIO()
    wrong = settings.with_overrides(sandbox="off", anthropic_api_key="sk-ant-wrong-0000000000")
    code = await run_local(repo, "add() subtracts", wrong, out=out)
    assert code == 1
    assert "rejected the API key (401)" in out.getvalue()
    assert "sk-ant-wrong" not in out.getvalue()
