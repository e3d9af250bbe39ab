"""Nothing of other tenants or of the host reaches a run's clone or its sandbox."""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from app.config import Settings
from app.workspace import prune
from app.workspace.mirror import Workspaces
from app.workspace.sandbox import Sandbox
from tests.fakes.git_http import create_git_app, init_bare_repo, run_git, token_auth
from tests.workspace.test_workspace import REPO, TOKEN, GitHost, _checkout, host, workspaces

__all__ = ["host", "workspaces"]  # fixtures shared with test_workspace


async def _objects(repo: Path) -> set[str]:
    listing = await run_git(
        "cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=repo
    )
    return set(listing.split())


async def _push_secret_then_erase(host: GitHost, tmp_path: Path, *, how: str) -> str:
    """A commit holding a secret lands upstream, then is force-pushed away or deleted."""
    secret = f"password={secrets.token_hex(8)}\n"
    work = tmp_path / f"upstream-{how}"
    await run_git("clone", "-q", str(host.bare()), str(work))
    await run_git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "creds.txt").write_text(secret)
    await run_git("add", "-A", cwd=work)
    await run_git("commit", "-q", "-m", "oops", cwd=work)
    blob = (await run_git("rev-parse", "HEAD:creds.txt", cwd=work)).strip()
    await run_git("push", "-q", "origin", "feature", cwd=work)
    return blob


async def _erase(host: GitHost, tmp_path: Path, how: str) -> None:
    work = tmp_path / f"upstream-{how}"
    if how == "force-push":
        await run_git("reset", "-q", "--hard", "HEAD~1", cwd=work)
        (work / "safe.txt").write_text("nothing to see\n")
        await run_git("add", "-A", cwd=work)
        await run_git("commit", "-q", "-m", "clean", cwd=work)
        await run_git("push", "-q", "-f", "origin", "feature", cwd=work)
    else:
        await run_git("push", "-q", "origin", ":feature", cwd=work)
    # GitHub collects the garbage upstream; the mirror must not keep it.
    await run_git("gc", "-q", "--prune=now", cwd=host.bare())


@pytest.mark.parametrize("how", ["force-push", "branch-deleted"])
async def test_objects_gone_upstream_are_not_in_later_clones(
    host: GitHost, workspaces: Workspaces, tmp_path: Path, how: str
) -> None:
    blob = await _push_secret_then_erase(host, tmp_path, how=how)
    async with _checkout(workspaces, host, 41, "honk/41-a") as first:
        assert blob in await _objects(first.path)  # the mirror fetched the branch
    await _erase(host, tmp_path, how)
    assert blob not in await _objects(host.bare())
    async with _checkout(workspaces, host, 42, "honk/42-b") as later:
        assert blob not in await _objects(later.path)
        assert (later.path / "README.md").exists()
    assert blob not in await _objects(workspaces.mirror_path(REPO))


async def test_a_repack_that_did_not_finish_is_done_by_the_next_fetch(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    blob = await _push_secret_then_erase(host, tmp_path, how="force-push")
    async with _checkout(workspaces, host, 45, "honk/45-a"):
        pass
    await _erase(host, tmp_path, "force-push")
    mirror = workspaces.mirror_path(REPO)
    # The fetch that lost the objects ran, but its repack did not (Honk died in between).
    await run_git(
        "fetch", "-q", "--prune", str(host.bare()), "+refs/heads/*:refs/heads/*", cwd=mirror
    )
    (mirror / "honk-prune-pending").touch()
    assert blob in await _objects(mirror)
    assert await prune.fetch_and_prune(mirror, token=TOKEN, git_timeout=60)
    assert blob not in await _objects(mirror)
    assert not (mirror / "honk-prune-pending").exists()


async def test_a_fast_forward_fetch_does_not_repack(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    async with _checkout(workspaces, host, 43, "honk/43-a"):
        pass
    await host.commit_directly("main", "MORE.md", "more\n", tmp_path)
    mirror = workspaces.mirror_path(REPO)
    assert not await prune.fetch_and_prune(mirror, token=TOKEN, git_timeout=60)
    assert "refs/heads/main" in await prune.refs(mirror)


async def test_an_old_style_mirror_drops_pull_refs_and_their_objects(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    """Mirrors made with `clone --mirror` held GitHub's refs/pull/*; they are pruned."""
    blob = await _push_secret_then_erase(host, tmp_path, how="pull")
    feature = await host.ref("refs/heads/feature")
    await run_git("update-ref", "refs/pull/7/head", feature or "", cwd=host.bare())
    await run_git("push", "-q", str(host.bare()), ":feature", cwd=tmp_path / "upstream-pull")
    mirror = workspaces.mirror_path(REPO)
    mirror.parent.mkdir(parents=True)
    await run_git("clone", "-q", "--mirror", str(host.bare()), str(mirror))
    assert "refs/pull/7/head" in await prune.refs(mirror)
    async with _checkout(workspaces, host, 44, "honk/44-a") as co:
        assert blob not in await _objects(co.path)
    refs = await prune.refs(mirror)
    assert refs and all(r.startswith(("refs/heads/", "refs/tags/")) for r in refs)
    assert blob not in await _objects(mirror)


@pytest.mark.bwrap
async def test_the_sandbox_sees_neither_the_data_directory_nor_the_run_id(
    host: GitHost, base_settings: Settings, tmp_path: Path
) -> None:
    settings = base_settings.with_overrides(
        data_dir=tmp_path / "honk-data-dir", checkout_dir=tmp_path / "neutral"
    )
    spaces = Workspaces.for_settings(settings)
    # A run id long enough never to turn up by chance in the hex of a commit id (4711 did:
    # git's refs and packed-refs hold commit ids).
    async with _checkout(spaces, host, 47114711, "honk/7-x") as co:
        sandbox = Sandbox.for_settings(settings, co.path)
        assert sandbox.visible_root == "/workspace/widgets"
        seen = await sandbox.run(
            "cat /proc/self/mountinfo; echo ---; cat /proc/self/cgroup; env; pwd; echo ---; "
            "grep -rla -e honk-data-dir -e 47114711 -e mirrors .git; echo searched"
        )
    mountinfo, _, rest = seen.output.partition("---")
    assert "/workspace/widgets" in mountinfo
    for line in mountinfo.splitlines():
        root, mount_point = line.split()[3:5]
        assert "honk-data-dir" not in root and "47114711" not in root, line
        assert "47114711" not in mount_point
    # Neither the environment, the cgroup nor the clone's own files say it either.
    assert "honk-data-dir" not in rest and "47114711" not in rest.split("---")[0]
    assert rest.strip().splitlines()[-1] == "searched"
    assert rest.split("---")[1].strip() == "searched"


@pytest.mark.parametrize("planted", ["symlink", "foreign-owner"])
async def test_a_checkouts_directory_planted_by_someone_else_is_refused(
    host: GitHost, tmp_path: Path, planted: str
) -> None:
    """HONK_CHECKOUT_DIR defaults to world-writable /var/tmp: another user may be first."""
    checkouts = tmp_path / "shared-tmp" / "honk-checkouts"
    checkouts.parent.mkdir()
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    if planted == "symlink":
        checkouts.symlink_to(elsewhere)
    else:
        checkouts.mkdir()
        os.chown(checkouts, 65534, 65534)
    spaces = Workspaces(tmp_path / "data", checkouts)
    with pytest.raises(RuntimeError, match="HONK_CHECKOUT_DIR"):
        async with _checkout(spaces, host, 46, "honk/46-a"):
            pytest.fail("a checkout in a directory of someone else's must not be entered")
    assert not any(elsewhere.iterdir())


async def test_a_fetch_that_fails_once_is_tried_again(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    """The remote fails the fetch once (as a push racing it can): the mirror tries again."""
    root = tmp_path / "flaky-remote"
    await init_bare_repo(root, REPO, {"README.md": "# widgets\n"})
    allowed = token_auth({REPO: TOKEN})
    refused: list[str] = []
    failing = {"on": False}

    def once_refusing(authorization: str | None, repo: str) -> bool:
        if failing["on"] and not refused:
            refused.append(repo)
            return False
        return allowed(authorization, repo)

    host = GitHost(root, await aiohttp_server(create_git_app(root, once_refusing)))
    workspaces = Workspaces(tmp_path / "data")
    async with _checkout(workspaces, host, 46, "honk/46-a"):
        pass  # the mirror is made
    await host.commit_directly("main", "MORE.md", "more\n", tmp_path)
    failing["on"] = True
    mirror = workspaces.mirror_path(REPO)
    assert not await prune.fetch_and_prune(mirror, token=TOKEN, git_timeout=60)
    assert refused == [REPO]  # the first try was refused; the second fetched
    assert await prune.refs(mirror) == {"refs/heads/main": await host.ref("refs/heads/main")}
