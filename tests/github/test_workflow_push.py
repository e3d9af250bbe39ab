"""GitHub refuses Honk (no `workflows` permission) a push that changes a workflow; Honk can
leave such changes out of its commit (Checkout.drop_changes) and push the rest."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from app.workspace.checkout import PushRejected
from app.workspace.mirror import Workspaces
from tests.fakes.git_http import create_git_app, init_bare_repo, run_git, token_auth

REPO = "octo/widgets"
TOKEN = "tok-" + secrets.token_hex(16)
AUTHOR = {"author_name": "honk[bot]", "author_email": "honk@example.com"}
WORKFLOW = ".github/workflows/ci.yml"


@pytest.fixture
async def remote(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> tuple[Path, str]:
    root = tmp_path / "remote"
    await init_bare_repo(root, REPO, {"src/app.py": "x = 1\n", WORKFLOW: "on: push\n"})
    server = await aiohttp_server(create_git_app(root, token_auth({REPO: TOKEN})))
    return root / f"{REPO}.git", str(server.make_url(f"/{REPO}.git"))


async def test_a_workflow_change_is_refused_and_can_be_left_out(
    remote: tuple[Path, str], tmp_path: Path
) -> None:
    bare, url = remote
    workspaces = Workspaces(tmp_path / "data")
    async with workspaces.checkout(
        repo=REPO, clone_url=url, token=TOKEN, run_id=1, branch="honk/1-ci"
    ) as checkout:
        (checkout.path / "src" / "app.py").write_text("x = 2\n")
        (checkout.path / WORKFLOW).write_text("on: [push, pull_request]\n")
        await checkout.commit_all("Fix and touch CI", **AUTHOR)
        with pytest.raises(PushRejected):
            await checkout.push(TOKEN)
    assert await run_git("branch", "--list", "honk/1-ci", cwd=bare) == ""

    async with workspaces.checkout(
        repo=REPO, clone_url=url, token=TOKEN, run_id=2, branch="honk/2-ci"
    ) as checkout:
        (checkout.path / "src" / "app.py").write_text("x = 2\n")
        (checkout.path / WORKFLOW).write_text("on: [push, pull_request]\n")
        (checkout.path / ".github" / "workflows" / "new.yml").write_text("on: push\n")
        await checkout.drop_changes([WORKFLOW, ".github/workflows/new.yml"])
        assert await checkout.changed_files() == ["src/app.py"]
        await checkout.commit_all("Fix", **AUTHOR)
        sha = await checkout.push(TOKEN)
    assert await run_git("show", f"{sha}:src/app.py", cwd=bare) == "x = 2\n"
    assert await run_git("show", f"{sha}:{WORKFLOW}", cwd=bare) == "on: push\n"
