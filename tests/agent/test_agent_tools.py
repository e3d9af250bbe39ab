"""The bash and editor tools on a real temporary checkout (sandbox off, and one run in bwrap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.agent.tools import (
    EDITOR_TOOL_NAME,
    ToolBox,
    cut_middle,
    is_test_command,
    tool_definitions,
)
from app.workspace.mounts import SandboxPython
from app.workspace.sandbox import Sandbox


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.txt").write_text("hidden\n")
    (root / "pkg" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (root / "pkg" / "sub" / "deep.py").write_text("x = 1\n")
    (root / "README.md").write_text("# demo\n")
    return root


@pytest.fixture
def box(repo: Path, sandbox_python: SandboxPython) -> ToolBox:
    sandbox = Sandbox(repo, mode="off", timeout=20, python=sandbox_python)
    return ToolBox(sandbox, output_limit=2000)


async def edit(box: ToolBox, **tool_input: Any) -> tuple[str, bool]:
    outcome = await box.run(EDITOR_TOOL_NAME, tool_input)
    return outcome.content, outcome.is_error


def test_tool_definitions_are_the_anthropic_defined_tools() -> None:
    assert tool_definitions() == [
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
    ]
    assert tool_definitions(max_characters=500)[1]["max_characters"] == 500


@pytest.mark.parametrize(
    ("command", "is_test"),
    [
        ("pytest -q", True),
        ("python -m pytest tests/test_x.py", True),
        ("cd web && npm test", True),
        ("npm run test -- --watch=false", True),
        ("make test", True),
        ("cargo test --all", True),
        ("go test ./...", True),
        ("tox -e py311", True),
        ("python -m unittest discover", True),
        ("ls -la", False),
        ("cat pytest.ini", False),
        ("grep -rn 'go test' docs", False),
        ("cd /workspace/web; yarn test", True),
        ("pip install -e .", False),
    ],
)
def test_test_commands_are_recognised(command: str, is_test: bool) -> None:
    assert is_test_command(command) is is_test


async def test_bash_runs_in_the_checkout_and_records_commands(box: ToolBox) -> None:
    outcome = await box.run("bash", {"command": "pwd && ls"})
    assert not outcome.is_error
    assert outcome.content.splitlines()[0] == str(box.sandbox.root)
    assert "README.md" in outcome.content

    failing = await box.run("bash", {"command": "echo oops >&2; exit 3"})
    assert not failing.is_error  # a failed command is a result, not a tool failure
    assert "oops" in failing.content and "[exit code 3]" in failing.content

    quiet = await box.run("bash", {"command": "true"})
    assert quiet.content == "(no output)"

    tested = await box.run("bash", {"command": "python -m pytest --version"})
    assert "pytest" in tested.content
    assert [c.command for c in box.commands] == [
        "pwd && ls",
        "echo oops >&2; exit 3",
        "true",
        "python -m pytest --version",
    ]
    assert [c.exit_code for c in box.commands][:3] == [0, 3, 0]
    assert box.last_test is box.commands[-1]


async def test_bash_restart_missing_command_and_timeout(repo: Path) -> None:
    box = ToolBox(Sandbox(repo, mode="off"), command_timeout=0.5)
    restarted = await box.run("bash", {"restart": True})
    assert not restarted.is_error and "restarted" in restarted.content
    missing = await box.run("bash", {})
    assert missing.is_error and "no command" in missing.content
    slow = await box.run("bash", {"command": "echo started; sleep 10"})
    assert slow.is_error
    assert "started" in slow.content and "timed out after 0.5s" in slow.content
    assert box.commands[-1].timed_out and box.commands[-1].exit_code is None


async def test_bash_output_is_cut_keeping_head_and_tail(box: ToolBox) -> None:
    command = "echo FIRST; for i in $(seq 1 3000); do echo line $i; done; echo LAST"
    outcome = await box.run("bash", {"command": command})
    assert len(outcome.content) < 2300
    assert outcome.content.startswith("FIRST")
    assert outcome.content.rstrip().endswith("LAST")
    assert "characters" in outcome.content and "cut" in outcome.content


def test_cut_middle_says_what_was_cut() -> None:
    text = "HEAD" + "x" * 10_000 + "TAIL"
    cut = cut_middle(text, 300)
    assert cut.startswith("HEAD") and cut.endswith("TAIL")
    assert "[... 9,708 characters (0 lines) cut ...]" in cut
    assert cut_middle("short", 300) == "short"


async def test_view_file_with_line_numbers_and_range(box: ToolBox, repo: Path) -> None:
    content, is_error = await edit(box, command="view", path="pkg/calc.py")
    assert not is_error
    assert content == "     1\tdef add(a, b):\n     2\t    return a - b"
    visible = f"{box.visible_root}/pkg/calc.py"
    content, _ = await edit(box, command="view", path=visible, view_range=[2, -1])
    assert content == "     2\t    return a - b"
    content, is_error = await edit(box, command="view", path="pkg/calc.py", view_range=[5, 6])
    assert is_error and "view_range" in content


async def test_view_directory_two_levels_without_hidden(box: ToolBox) -> None:
    content, is_error = await edit(box, command="view", path=box.visible_root)
    assert not is_error
    root = box.visible_root
    assert f"{root}/pkg/calc.py" in content
    assert f"{root}/pkg/sub/" in content
    assert f"{root}/README.md" in content
    assert "deep.py" not in content  # third level
    assert ".hidden" not in content


async def test_create_str_replace_and_insert(box: ToolBox, repo: Path) -> None:
    content, is_error = await edit(
        box, command="create", path="pkg/new/mod.py", file_text="A = 1\nB = 2\n"
    )
    assert not is_error and "created" in content
    assert (repo / "pkg/new/mod.py").read_text() == "A = 1\nB = 2\n"

    content, is_error = await edit(
        box, command="str_replace", path="pkg/calc.py", old_str="a - b", new_str="a + b"
    )
    assert not is_error and "has been edited" in content and "a + b" in content
    assert (repo / "pkg/calc.py").read_text() == "def add(a, b):\n    return a + b\n"

    content, is_error = await edit(
        box, command="insert", path="pkg/new/mod.py", insert_line=1, insert_text="C = 3"
    )
    assert not is_error
    assert (repo / "pkg/new/mod.py").read_text() == "A = 1\nC = 3\nB = 2\n"
    _, is_error = await edit(box, command="insert", path="pkg/new/mod.py", insert_line=3,
                             insert_text="D = 4\n")  # fmt: skip
    assert not is_error
    assert (repo / "pkg/new/mod.py").read_text().endswith("B = 2\nD = 4\n")
    content, is_error = await edit(
        box, command="insert", path="pkg/new/mod.py", insert_line=99, insert_text="x"
    )
    assert is_error and "[0, 4]" in content
    assert box.edited == [f"{box.visible_root}/pkg/new/mod.py", f"{box.visible_root}/pkg/calc.py"]


async def test_str_replace_needs_exactly_one_match(box: ToolBox, repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")
    content, is_error = await edit(
        box, command="str_replace", path="dup.py", old_str="z = 3", new_str="z = 4"
    )
    assert is_error and "did not appear verbatim" in content
    content, is_error = await edit(
        box, command="str_replace", path="dup.py", old_str="x = 1", new_str="x = 5"
    )
    assert is_error and "Multiple occurrences" in content and "[1, 3]" in content
    assert (repo / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n"


async def test_str_replace_keeps_crlf_line_endings(box: ToolBox, repo: Path) -> None:
    (repo / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    _, is_error = await edit(box, command="str_replace", path="win.txt", old_str="two",
                             new_str="2")  # fmt: skip
    assert not is_error
    assert (repo / "win.txt").read_bytes() == b"one\r\n2\r\n"


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "pkg/../../outside.txt", "/etc/passwd", "link-out/file.txt", "link-out"],
)
async def test_editor_is_confined_to_the_checkout(box: ToolBox, repo: Path, path: str) -> None:
    outside = repo.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "file.txt").write_text("outside\n")
    (repo.parent / "outside.txt").write_text("outside\n")
    if not (repo / "link-out").is_symlink():
        (repo / "link-out").symlink_to(outside)
    for command in (
        {"command": "view"},
        {"command": "create", "file_text": "pwned\n"},
        {"command": "str_replace", "old_str": "outside", "new_str": "pwned"},
    ):
        content, is_error = await edit(box, path=path, **command)
        assert is_error, command
        assert "outside the workspace" in content
    assert (outside / "file.txt").read_text() == "outside\n"
    assert (repo.parent / "outside.txt").read_text() == "outside\n"


async def test_editor_cannot_change_git_internals(box: ToolBox, repo: Path) -> None:
    (repo / ".git" / "hooks").mkdir(parents=True)
    (repo / ".git" / "config").write_text("[core]\n")
    for tool_input in (
        {"command": "create", "path": ".git/hooks/pre-commit", "file_text": "#!/bin/sh\n"},
        {"command": "str_replace", "path": ".git/config", "old_str": "[core]", "new_str": "x"},
        {"command": "insert", "path": ".git/config", "insert_line": 0, "insert_text": "x"},
    ):
        content, is_error = await edit(box, **tool_input)
        assert is_error and "inside .git" in content
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert (repo / ".git" / "config").read_text() == "[core]\n"
    content, is_error = await edit(box, command="view", path=".git/config")
    assert not is_error and "[core]" in content


async def test_editor_errors_go_back_as_results(box: ToolBox) -> None:
    cases = [
        ({"command": "view", "path": "nope.py"}, "does not exist"),
        ({"command": "undo_edit", "path": "README.md"}, "not supported"),
        ({"command": "frobnicate", "path": "README.md"}, "unknown command"),
        ({"command": "view"}, "`path` is required"),
        ({"command": "str_replace", "path": "README.md"}, "`old_str` is required"),
    ]
    for tool_input, message in cases:
        content, is_error = await edit(box, **tool_input)
        assert is_error and message in content, (tool_input, content)
    unknown = await box.run("python", {"code": "1"})
    assert unknown.is_error and "unknown tool" in unknown.content


@pytest.mark.bwrap
async def test_tools_in_bwrap_see_the_checkout_as_workspace(repo: Path) -> None:
    box = ToolBox(Sandbox(repo, mode="bwrap", timeout=30))
    # A neutral path: the checkout directory's name only, nothing of where it is on the host.
    assert box.visible_root == "/workspace/repo"
    outcome = await box.run("bash", {"command": "pwd; cat pkg/calc.py; ls /root 2>&1 | head -1"})
    assert outcome.content.startswith("/workspace/repo\n")
    assert "return a - b" in outcome.content
    content, is_error = await edit(
        box, command="str_replace", path="/workspace/repo/pkg/calc.py", old_str="-", new_str="+"
    )
    assert not is_error, content
    check = await box.run("bash", {"command": "grep -c 'a + b' /workspace/repo/pkg/calc.py"})
    assert check.content.strip() == "1"
