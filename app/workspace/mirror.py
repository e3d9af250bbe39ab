"""Per-repository mirrors and the fresh per-run clones made from them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from app.workspace.checkout import Checkout
from app.workspace.git import GitError, git

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Workspaces:
    """Mirrors under data_dir/mirrors/<owner>/<name>.git, runs under data_dir/runs/<id>/<name>."""

    clone_timeout: float = 1800.0

    def __init__(self, data_dir: Path) -> None:
        self.mirrors_dir = Path(data_dir) / "mirrors"
        self.runs_dir = Path(data_dir) / "runs"
        self._locks: dict[str, asyncio.Lock] = {}

    def mirror_path(self, repo: str) -> Path:
        owner, name = split_repo(repo)
        return self.mirrors_dir / owner / f"{name}.git"

    def checkout_path(self, repo: str, run_id: int) -> Path:
        _owner, name = split_repo(repo)
        return self.runs_dir / str(int(run_id)) / name

    @contextlib.asynccontextmanager
    async def checkout(
        self,
        *,
        repo: str,
        clone_url: str,
        token: str | None,
        run_id: int,
        branch: str,
        base: str | None = None,
    ) -> AsyncIterator[Checkout]:
        """A fresh clone for one run on `branch`; removed on exit, however it exits."""
        mirror = self.mirror_path(repo)
        path = self.checkout_path(repo, run_id)
        try:
            async with self._mirror_lock(repo):
                await self._update_mirror(mirror, clone_url, token)
                if base is None:
                    base = await _default_branch(mirror)
                # A claim of an expired lease may find the dead worker's leftovers.
                await _remove(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                # A plain local clone hard-links the mirror's objects: fast, and
                # independent of later repacks of the mirror (unlike --shared).
                await git("clone", "--quiet", "--no-checkout", str(mirror), str(path))
            await git("remote", "set-url", "origin", clone_url, cwd=path)
            start = await _switch_to_branch(path, branch, base)
            yield Checkout(path, repo, branch, base, clone_url, start_sha=start)
        finally:
            await asyncio.shield(_remove(path))
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    async def _update_mirror(self, mirror: Path, clone_url: str, token: str | None) -> None:
        if (mirror / "HEAD").exists():
            await git("remote", "set-url", "origin", clone_url, cwd=mirror)
            await git(
                "fetch", "--prune", "--quiet", "origin", cwd=mirror, token=token,
                timeout=self.clone_timeout,
            )  # fmt: skip
            return
        mirror.parent.mkdir(parents=True, exist_ok=True)
        partial = mirror.with_name(f".{mirror.name}.partial-{os.getpid()}")
        await _remove(partial)
        try:
            await git(
                "clone", "--mirror", "--quiet", clone_url, str(partial), token=token,
                timeout=self.clone_timeout,
            )  # fmt: skip
            # Renamed into place only when complete: a crash never leaves half a mirror.
            partial.rename(mirror)
        finally:
            await _remove(partial)

    @contextlib.asynccontextmanager
    async def _mirror_lock(self, repo: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(repo.lower(), asyncio.Lock())
        async with lock:
            mirror = self.mirror_path(repo)
            lock_path = mirror.with_name(f"{mirror.name}.lock")
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            waiter = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
            try:
                await asyncio.shield(waiter)
            except BaseException:
                # Closing the descriptor releases the lock, once the thread has it.
                waiter.add_done_callback(lambda _: os.close(fd))
                raise
            try:
                yield
            finally:
                os.close(fd)


def split_repo(repo: str) -> tuple[str, str]:
    """("owner", "name") from "owner/name", refusing anything that is not a plain name."""
    owner, _, name = repo.partition("/")
    for part in (owner, name):
        if not _NAME.match(part) or part in (".", ".."):
            raise ValueError(f"not a repository name: {repo!r}")
    return owner, name


async def _default_branch(mirror: Path) -> str:
    head = await git("symbolic-ref", "--short", "HEAD", cwd=mirror)
    return head.stdout.strip()


async def _switch_to_branch(path: Path, branch: str, base: str) -> str:
    """Check out `branch` from the remote if it exists (a retry), else create it at `base`."""
    if await _resolves(path, f"refs/remotes/origin/{branch}"):
        await git("checkout", "--quiet", "-B", branch, f"refs/remotes/origin/{branch}", cwd=path)
    else:
        start = f"refs/remotes/origin/{base}"
        if not await _resolves(path, start):
            if not await _resolves(path, f"{base}^{{commit}}"):
                raise GitError(f"base {base!r} is neither a branch nor a commit of the repository")
            start = base
        await git("checkout", "--quiet", "--no-track", "-B", branch, start, cwd=path)
    return (await git("rev-parse", "HEAD", cwd=path)).stdout.strip()


async def _resolves(path: Path, rev: str) -> bool:
    result = await git("rev-parse", "--verify", "--quiet", rev, cwd=path, check=False)
    return result.returncode == 0


async def _remove(path: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
