"""The editor runs on the host: what the agent leaves in the checkout cannot hang or sink it."""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from app.agent.tools import EDITOR_TOOL_NAME, ToolBox
from app.workspace.sandbox import Sandbox

MIB = 1024 * 1024


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return root


@pytest.fixture
def box(repo: Path) -> ToolBox:
    return ToolBox(Sandbox(repo, mode="off", timeout=20), max_file_bytes=MIB)


async def edit(box: ToolBox, **tool_input: Any) -> tuple[str, bool]:
    outcome = await box.run(EDITOR_TOOL_NAME, tool_input)
    return outcome.content, outcome.is_error


EDITS = [
    {"command": "create", "file_text": "x = 1\n"},
    {"command": "view"},
    {"command": "str_replace", "old_str": "a", "new_str": "b"},
    {"command": "insert", "insert_line": 0, "insert_text": "x = 1\n"},
]


@pytest.mark.parametrize("call", EDITS, ids=[c["command"] for c in EDITS])
async def test_a_fifo_is_refused_at_once(box: ToolBox, repo: Path, call: dict[str, Any]) -> None:
    os.mkfifo(repo / "pipe")
    content, is_error = await asyncio.wait_for(edit(box, path="pipe", **call), 5)
    assert is_error and "is a FIFO" in content and "regular files only" in content


async def test_six_fifo_edits_at_once_leave_the_executor_free(box: ToolBox, repo: Path) -> None:
    """The default executor has six threads on a two-core machine: none may be held."""
    for index in range(6):
        os.mkfifo(repo / f"pipe{index}")
    calls = [
        edit(box, command="create", path=f"pipe{index}", file_text="x\n") for index in range(6)
    ]
    results = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert all(is_error and "FIFO" in content for content, is_error in results)
    # Any later to_thread in Honk still runs.
    assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2) == "free"


async def test_a_socket_is_refused(box: ToolBox, repo: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(repo / "sock"))
        for call in EDITS:
            content, is_error = await asyncio.wait_for(edit(box, path="sock", **call), 5)
            assert is_error and "is a socket" in content, (call, content)
    finally:
        listener.close()


async def test_a_huge_sparse_file_is_refused_without_reading_it(box: ToolBox, repo: Path) -> None:
    huge = repo / "huge.bin"
    with huge.open("wb") as handle:
        handle.truncate(100 * 1024**3)  # 100 GB, no blocks
    tracemalloc.start()
    try:
        for call in EDITS[1:]:
            content, is_error = await edit(box, path="huge.bin", **call)
            assert is_error and "102,400.0 MiB" in content, (call, content)
            assert "HONK_EDITOR_MAX_FILE_MB" in content
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB
    assert huge.stat().st_size == 100 * 1024**3  # not truncated either


async def test_files_are_read_and_written_within_the_bound(box: ToolBox, repo: Path) -> None:
    (repo / "big.txt").write_bytes(b"x" * (MIB + 1))
    content, is_error = await edit(box, command="view", path="big.txt")
    assert is_error and "more than the editor's limit of 1.0 MiB" in content
    (repo / "fits.txt").write_bytes(b"y" * (MIB - 10) + b"\n")
    _, is_error = await edit(box, command="view", path="fits.txt")
    assert not is_error
    content, is_error = await edit(box, command="create", path="new.txt", file_text="z" * (MIB + 1))
    assert is_error and "limit" in content and not (repo / "new.txt").exists()
    # A replacement that would grow the file past the bound leaves it as it was.
    content, is_error = await edit(
        box, command="str_replace", path="fits.txt", old_str="\n", new_str="w" * 100
    )
    assert is_error and (repo / "fits.txt").stat().st_size == MIB - 9


async def test_hard_linked_files_are_not_written(box: ToolBox, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("host file\n")
    os.link(outside, repo / "linked.txt")
    content, is_error = await edit(
        box, command="create", path="linked.txt", file_text="overwritten\n"
    )
    assert is_error and "hard links" in content
    assert outside.read_text() == "host file\n"


async def test_listing_never_follows_symlinks(box: ToolBox, repo: Path, tmp_path: Path) -> None:
    """A link to a host directory must not look like a directory (an oracle for the host)."""
    host_dir = tmp_path / "mirrors" / "other-org"
    host_dir.mkdir(parents=True)
    (host_dir / "repo.git").mkdir()
    (repo / "src").mkdir()
    (repo / "to-host").symlink_to(host_dir)
    (repo / "to-nothing").symlink_to(tmp_path / "mirrors" / "no-such-org")
    (repo / "src" / "deep-link").symlink_to(host_dir)
    content, is_error = await edit(box, command="view", path=".")
    assert not is_error
    root = box.visible_root
    assert f"{root}/to-host -> {host_dir}" in content
    assert f"{root}/to-nothing -> {tmp_path}/mirrors/no-such-org" in content
    assert f"{root}/src/deep-link -> {host_dir}" in content
    assert f"{root}/src/" in content
    assert "repo.git" not in content  # never listed through the link
    assert f"{root}/to-host/" not in content


@pytest.mark.bwrap
async def test_fifo_made_inside_the_sandbox_is_refused_by_the_editor(repo: Path) -> None:
    box = ToolBox(Sandbox(repo, timeout=20))
    made = await box.run("bash", {"command": "mkfifo trap && ls -l trap"})
    assert not made.is_error and made.content.startswith("p")
    content, is_error = await asyncio.wait_for(
        edit(box, command="create", path="trap", file_text="x"), 5
    )
    assert is_error and "FIFO" in content
