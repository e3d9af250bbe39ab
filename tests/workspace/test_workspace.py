"""Mirrors, per-run clones and pushes against real repositories served by git http-backend."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from app.workspace import mirror as mirror_module
from app.workspace.checkout import PushRefused, PushRejected
from app.workspace.git import GitAuthError, GitError, git
from app.workspace.mirror import Workspaces, split_repo
from tests.fakes.git_http import create_git_app, init_bare_repo, run_git, token_auth

REPO = "octo/widgets"
# Not shaped like a GitHub token: only the registered value can redact it.
TOKEN = "tok-" + secrets.token_hex(16)
AUTHOR = {"author_name": "honk[bot]", "author_email": "honk@example.com"}


class GitHost:
    """Bare repositories on loopback behind a token check, and helpers to inspect them."""

    def __init__(self, root: Path, server: TestServer) -> None:
        self.root = root
        self.server = server

    def url(self, repo: str = REPO) -> str:
        return str(self.server.make_url(f"/{repo}.git"))

    def bare(self, repo: str = REPO) -> Path:
        return self.root / f"{repo}.git"

    async def ref(self, ref: str, repo: str = REPO) -> str | None:
        out = await run_git("for-each-ref", "--format=%(objectname)", ref, cwd=self.bare(repo))
        return out.strip() or None

    async def commit_directly(self, branch: str, filename: str, text: str, tmp: Path) -> str:
        """Someone else's commit on `branch`, pushed straight into the bare repo."""
        work = tmp / f"direct-{secrets.token_hex(4)}"
        await run_git("clone", "-q", str(self.bare()), str(work))
        if await self.ref(f"refs/heads/{branch}"):
            await run_git("checkout", "-q", branch, cwd=work)
        else:
            await run_git("checkout", "-q", "-b", branch, cwd=work)
        (work / filename).write_text(text)
        await run_git("add", "-A", cwd=work)
        await run_git("commit", "-q", "-m", f"direct {filename}", cwd=work)
        await run_git("push", "-q", "origin", f"{branch}:refs/heads/{branch}", cwd=work)
        return (await run_git("rev-parse", "HEAD", cwd=work)).strip()


@pytest.fixture
async def host(tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> GitHost:
    root = tmp_path / "remote"
    await init_bare_repo(
        root, REPO, {"README.md": "# widgets\n", ".gitignore": "*.log\n", "src/app.py": "x = 1\n"}
    )
    server = await aiohttp_server(create_git_app(root, token_auth({REPO: TOKEN})))
    return GitHost(root, server)


@pytest.fixture
def workspaces(tmp_path: Path) -> Workspaces:
    return Workspaces(tmp_path / "data")


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Every process the workspace layer starts: argv and environment."""
    calls: list[tuple[tuple[str, ...], dict[str, str]]] = []
    real = asyncio.create_subprocess_exec

    async def spy(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        calls.append((tuple(map(str, args)), dict(kwargs.get("env") or {})))
        return await real(*args, **kwargs)

    monkeypatch.setattr(mirror_module.asyncio, "create_subprocess_exec", spy)
    return calls


def _checkout(ws: Workspaces, host: GitHost, run_id: int, branch: str, **kw: Any) -> Any:
    return ws.checkout(
        repo=REPO, clone_url=host.url(), token=kw.pop("token", TOKEN), run_id=run_id,
        branch=branch, **kw,
    )  # fmt: skip


async def test_first_checkout_mirrors_then_later_runs_fetch(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    mirror = workspaces.mirror_path(REPO)
    async with _checkout(workspaces, host, 1, "honk/1-a") as first:
        # An opaque name in place of the run id (the sandbox's mount table shows the path).
        assert first.path.parent.parent == workspaces.checkouts_dir
        assert first.path.name == "widgets" and len(first.path.parent.name) == 24
        assert "1" not in first.path.relative_to(workspaces.checkouts_dir).parts
        assert first.path == workspaces.checkout_path(REPO, 1) != workspaces.checkout_path(REPO, 2)
        assert (first.path / "src" / "app.py").read_text() == "x = 1\n"
        assert first.base == "main"
    inode = mirror.stat().st_ino
    # A file git never writes: it survives only if the mirror is not cloned again.
    (mirror / "honk-marker").write_text("same mirror")
    newer = await host.commit_directly("main", "NEW.md", "new\n", tmp_path)

    async with _checkout(workspaces, host, 2, "honk/2-b") as second:
        assert await second.head_sha() == newer
        assert (second.path / "NEW.md").exists()
    assert mirror.stat().st_ino == inode
    assert (mirror / "honk-marker").exists()


async def test_run_clone_hard_links_the_mirror_objects(
    host: GitHost, workspaces: Workspaces
) -> None:
    async with _checkout(workspaces, host, 3, "honk/3-links") as co:
        mirror_objects = {
            p.stat().st_ino for p in (workspaces.mirror_path(REPO) / "objects").rglob("*")
            if p.is_file()
        }  # fmt: skip
        clone_files = [p for p in (co.path / ".git" / "objects").rglob("*") if p.is_file()]
        linked = [p for p in clone_files if p.stat().st_ino in mirror_objects]
        assert linked, "the per-run clone copied objects instead of hard-linking them"
        assert all(p.stat().st_nlink > 1 for p in linked)
        # Not --shared: the clone does not borrow objects through alternates.
        assert not (co.path / ".git" / "objects" / "info" / "alternates").exists()


async def test_token_only_in_environment_never_in_config_or_argv(
    host: GitHost,
    workspaces: Workspaces,
    spawned: list[tuple[tuple[str, ...], dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    webhook_secret = "whsec-" + secrets.token_hex(8)
    monkeypatch.setenv("WEBHOOK_SECRET", webhook_secret)
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    async with _checkout(workspaces, host, 4, "honk/4-secret") as co:
        (co.path / "feature.txt").write_text("feature\n")
        await co.commit_all("Add feature", **AUTHOR)
        await co.push(TOKEN)
        configs = [co.path / ".git" / "config", workspaces.mirror_path(REPO) / "config"]
        for config in configs:
            text = config.read_text()
            assert TOKEN not in text and encoded not in text
            assert "extraheader" not in text.lower()
    assert spawned, "the spy saw no git processes"
    for argv, env in spawned:
        assert not any(TOKEN in a or encoded in a for a in argv), argv
        assert webhook_secret not in "".join(env.values())
    authenticated = [env for _argv, env in spawned if encoded in "".join(env.values())]
    # The first run clones the mirror, then pushes: the header went in GIT_CONFIG_VALUE_n.
    assert {a[1] for a, env in spawned if env in authenticated} >= {"clone", "push"}
    for env in authenticated:
        key = next(k for k, v in env.items() if encoded in v)
        assert key.startswith("GIT_CONFIG_VALUE_")
        assert env[key.replace("VALUE", "KEY")] == "http.extraHeader"


async def test_wrong_token_fails_clearly_without_showing_it(
    host: GitHost, workspaces: Workspaces
) -> None:
    wrong = "tok-wrong-" + secrets.token_hex(12)
    with pytest.raises(GitAuthError) as caught:
        async with _checkout(workspaces, host, 5, "honk/5-x", token=wrong):
            pytest.fail("a checkout with a wrong token must not be entered")
    message = str(caught.value)
    assert "authentication failed" in message
    assert wrong not in message and wrong not in caught.value.stderr
    assert not workspaces.checkout_path(REPO, 5).exists()
    assert not workspaces.mirror_path(REPO).exists()


async def test_git_error_messages_are_redacted(tmp_path: Path) -> None:
    token = "tok-" + secrets.token_hex(10)
    await run_git("init", "-q", str(tmp_path))
    with pytest.raises(GitError) as caught:
        # git echoes the unknown revision; the registered token is cut from the message.
        await git("show", token, cwd=tmp_path, token=token)
    assert "unknown revision" in str(caught.value)
    assert token not in str(caught.value) and "[REDACTED]" in str(caught.value)


async def test_commit_and_push_of_honk_branch_lands_in_the_remote(
    host: GitHost, workspaces: Workspaces
) -> None:
    async with _checkout(workspaces, host, 6, "honk/6-fix") as co:
        assert not await co.has_changes()
        assert await co.commit_all("nothing", **AUTHOR) is None
        (co.path / "src" / "app.py").write_text("x = 2\n")
        (co.path / "docs").mkdir()
        (co.path / "docs" / "new.md").write_text("new\n")
        (co.path / "debug.log").write_text("ignored by .gitignore\n")
        assert await co.has_changes()
        assert await co.changed_files() == ["docs/new.md", "src/app.py"]
        assert "2 files changed" in await co.diff_stat()

        sha = await co.commit_all("Fix the widget\n\nCloses #6", **AUTHOR)
        assert sha and sha == await co.head_sha()
        # Still "changed" after the commit: relative to where the run began.
        assert await co.has_changes()
        assert await co.changed_files() == ["docs/new.md", "src/app.py"]
        assert await co.push(TOKEN) == sha

    assert await host.ref("refs/heads/honk/6-fix") == sha
    shown = await run_git("show", "--stat", "--format=%an <%ae>|%cn|%s", sha, cwd=host.bare())
    assert shown.startswith("honk[bot] <honk@example.com>|honk[bot]|Fix the widget")
    assert "debug.log" not in shown
    assert await host.ref("refs/heads/main") != sha


async def test_same_size_edit_right_after_checkout_is_seen(
    host: GitHost, workspaces: Workspaces
) -> None:
    async with _checkout(workspaces, host, 32, "honk/32-racy") as co:
        # Same size, same second as the checkout wrote the index: only git's racy-clean
        # check (which needs the index's own mtime) tells this file apart.
        (co.path / "src" / "app.py").write_text("x = 9\n")
        await asyncio.sleep(1.1)
        assert await co.changed_files() == ["src/app.py"]
        assert await co.has_changes()


async def test_agent_commits_count_as_changes(host: GitHost, workspaces: Workspaces) -> None:
    async with _checkout(workspaces, host, 7, "honk/7-self") as co:
        (co.path / "a.txt").write_text("a\n")
        await git("add", "a.txt", cwd=co.path)
        await git(
            "commit", "-q", "-m", "agent commit", cwd=co.path,
            env={"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
                 "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"},
        )  # fmt: skip
        assert await co.has_changes()
        assert await co.commit_all("nothing more", **AUTHOR) is None
        assert await co.changed_files() == ["a.txt"]


@pytest.mark.parametrize("branch", ["main", "feature/x"])
async def test_push_refused_for_base_and_non_honk_branches(
    host: GitHost, workspaces: Workspaces, branch: str
) -> None:
    before = await host.ref(f"refs/heads/{branch}")
    async with _checkout(workspaces, host, 8, branch, base="main") as co:
        (co.path / "evil.txt").write_text("x\n")
        await co.commit_all("direct to base", **AUTHOR)
        with pytest.raises(PushRefused):
            await co.push(TOKEN)
    assert await host.ref(f"refs/heads/{branch}") == before


async def test_non_fast_forward_push_is_rejected_not_forced(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    async with _checkout(workspaces, host, 9, "honk/9-race") as co:
        (co.path / "mine.txt").write_text("mine\n")
        await co.commit_all("mine", **AUTHOR)
        theirs = await host.commit_directly("honk/9-race", "theirs.txt", "theirs\n", tmp_path)
        with pytest.raises(PushRejected) as caught:
            await co.push(TOKEN)
        assert TOKEN not in str(caught.value)
    assert await host.ref("refs/heads/honk/9-race") == theirs


async def test_retry_checks_out_the_existing_remote_branch(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    earlier = await host.commit_directly("honk/10-retry", "first-try.txt", "1\n", tmp_path)
    async with _checkout(workspaces, host, 10, "honk/10-retry", base="main") as co:
        assert await co.head_sha() == earlier
        assert (co.path / "first-try.txt").read_text() == "1\n"
        assert not await co.has_changes()
        (co.path / "second-try.txt").write_text("2\n")
        assert await co.changed_files() == ["second-try.txt"]
        sha = await co.commit_all("second try", **AUTHOR)
        assert await co.push(TOKEN) == sha
    parent = await run_git("rev-parse", f"{sha}^", cwd=host.bare())
    assert parent.strip() == earlier


async def test_branch_created_from_given_base(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    release = await host.commit_directly("release", "release.txt", "r\n", tmp_path)
    async with _checkout(workspaces, host, 11, "honk/11-rel", base="release") as co:
        assert co.base == "release" and await co.head_sha() == release
    with pytest.raises(GitError, match="neither a branch nor a commit"):
        async with _checkout(workspaces, host, 12, "honk/12-x", base="no-such-branch"):
            pass
    assert not workspaces.checkout_path(REPO, 12).exists()


async def test_checkout_removed_on_exception_and_cancellation(
    host: GitHost, workspaces: Workspaces
) -> None:
    with pytest.raises(RuntimeError, match="agent blew up"):
        async with _checkout(workspaces, host, 13, "honk/13-boom") as co:
            (co.path / "scratch.txt").write_text("x\n")
            raise RuntimeError("agent blew up")
    assert not co.path.exists()
    assert not co.path.parent.exists()

    entered = asyncio.Event()

    async def stuck() -> None:
        async with _checkout(workspaces, host, 14, "honk/14-cancel"):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(stuck())
    await entered.wait()
    assert workspaces.checkout_path(REPO, 14).exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not workspaces.checkout_path(REPO, 14).exists()


async def test_concurrent_runs_of_one_repository(host: GitHost, workspaces: Workspaces) -> None:
    async def one(run_id: int) -> str:
        async with _checkout(workspaces, host, run_id, f"honk/{run_id}-c") as co:
            (co.path / f"run{run_id}.txt").write_text(f"{run_id}\n")
            await co.commit_all(f"run {run_id}", **AUTHOR)
            return await co.push(TOKEN)

    shas = await asyncio.gather(*(one(i) for i in (21, 22, 23)))
    for run_id, sha in zip((21, 22, 23), shas, strict=True):
        assert await host.ref(f"refs/heads/honk/{run_id}-c") == sha


async def test_stale_leftovers_of_a_dead_worker_are_replaced(
    host: GitHost, workspaces: Workspaces
) -> None:
    stale = workspaces.checkout_path(REPO, 30)
    stale.mkdir(parents=True)
    (stale / "leftover.txt").write_text("from a crashed worker\n")
    async with _checkout(workspaces, host, 30, "honk/30-again") as co:
        assert not (co.path / "leftover.txt").exists()
        assert (co.path / "README.md").exists()


async def test_hooks_planted_in_the_checkout_never_run(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    proof = tmp_path / "hook-ran"
    async with _checkout(workspaces, host, 31, "honk/31-hooks") as co:
        for hook in ("pre-commit", "commit-msg", "post-commit", "pre-push"):
            script = co.path / ".git" / "hooks" / hook
            script.write_text(f"#!/bin/sh\necho {hook} >> {proof}\n")
            script.chmod(0o755)
        await git("config", "core.fsmonitor", f"echo fsmonitor >> {proof}", cwd=co.path)
        (co.path / "change.txt").write_text("x\n")
        assert await co.has_changes()
        await co.commit_all("change", **AUTHOR)
        await co.push(TOKEN)
    assert not proof.exists()


@pytest.mark.parametrize("repo", ["../etc", "owner/..", "owner", "a/b/c", "own er/x", "/abs"])
def test_repository_names_cannot_escape_the_data_dir(repo: str) -> None:
    with pytest.raises(ValueError):
        split_repo(repo)
    assert split_repo("octo/.github") == ("octo", ".github")


async def test_git_timeout_kills_the_command(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GitError, match="timed out"):
        await git("-c", "alias.slow=!sleep 30", "slow", cwd=tmp_path, timeout=0.5)
    assert loop.time() - started < 10


async def test_commits_ahead_of_base_counts_work_already_pushed(
    host: GitHost, workspaces: Workspaces
) -> None:
    async with _checkout(workspaces, host, 901, "honk/9-ahead") as checkout:
        assert await checkout.commits_ahead_of_base() == 0
        (checkout.path / "new.txt").write_text("new\n")
        await checkout.commit_all("add new", author_name="Honk", author_email="h@example.com")
        assert await checkout.commits_ahead_of_base() == 1
        await checkout.push(TOKEN)
    # A later attempt on the same branch starts from the pushed work.
    async with _checkout(workspaces, host, 902, "honk/9-ahead") as again:
        assert not await again.has_changes()
        assert await again.commits_ahead_of_base() == 1


async def test_a_sweep_removes_what_is_over_whoever_made_it(
    host: GitHost, workspaces: Workspaces, tmp_path: Path
) -> None:
    """Checkouts are named per run and attempt and marked; a process with another key (its
    own data directory) sweeps what is over and leaves what may still be in use."""
    other = Workspaces(tmp_path / "other-data", workspaces.checkouts_dir)
    assert other.checkout_path(REPO, 40, 1) != workspaces.checkout_path(REPO, 40, 1)
    assert workspaces.checkout_path(REPO, 40, 1) != workspaces.checkout_path(REPO, 40, 2)
    asked: list[tuple[int, int]] = []

    async def in_use(run_id: int, attempt: int) -> bool:
        asked.append((run_id, attempt))
        return (run_id, attempt) == (41, 1)  # run 40 was claimed again; 41 still works

    async with (
        _checkout(workspaces, host, 40, "honk/40-a", attempt=1) as dead,
        _checkout(workspaces, host, 41, "honk/41-b", attempt=1) as alive,
    ):
        recent = workspaces.checkouts_dir / ("a" * 24)  # unmarked: made before markers
        recent.mkdir()
        old = workspaces.checkouts_dir / ("b" * 24)
        old.mkdir()
        os.utime(old, (time.time() - 2 * mirror_module.UNMARKED_AGE,) * 2)
        foreign = workspaces.checkouts_dir / "not-honks"
        foreign.mkdir()
        os.utime(foreign, (time.time() - 2 * mirror_module.UNMARKED_AGE,) * 2)

        assert await other.sweep(in_use) == 2
        assert not dead.path.parent.exists() and not old.exists()
        assert alive.path.exists() and recent.exists() and foreign.exists()
        assert sorted(asked) == [(40, 1), (41, 1)]
    assert not alive.path.parent.exists()  # its own run removed it, marker and all
