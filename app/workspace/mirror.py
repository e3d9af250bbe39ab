"""Per-repository mirrors, fresh per-run clones made from them, and the push back."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.workspace.git import GitError, git, git_error

BRANCH_PREFIX = "honk/"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Honk's changes are judged by the working tree; submodules the agent might have
# created are never entered (their config could run commands on the host).
_NO_SUBMODULES = "--ignore-submodules=all"


class PushRejected(GitError):
    """The remote refused the push (not a fast-forward, or a protected branch)."""


class PushRefused(RuntimeError):
    """Honk itself will not push this branch (the base, or outside honk/)."""


@dataclass
class Checkout:
    """One run's private clone; `start_sha` is where the run began on `branch`."""

    path: Path
    repo: str
    branch: str
    base: str
    clone_url: str
    start_sha: str = field(default="", repr=False)

    async def has_changes(self) -> bool:
        """True when the run changed anything: uncommitted edits or new commits."""
        status = await git("status", "--porcelain", _NO_SUBMODULES, cwd=self.path)
        return bool(status.stdout.strip()) or await self.head_sha() != self.start_sha

    async def changed_files(self) -> list[str]:
        """Paths changed since the run began, committed or not (untracked included)."""
        result = await self._against_start("--name-only", "--no-renames", "-z")
        return sorted({p for p in result.split("\0") if p})

    async def diff(self) -> str:
        """The unified diff of everything changed since the run began (for the run page)."""
        return await self._against_start("--no-color", "--no-renames")

    async def diff_stat(self) -> str:
        """`git diff --stat` of everything changed since the run began."""
        return await self._against_start("--stat")

    async def commit_all(self, message: str, *, author_name: str, author_email: str) -> str | None:
        """Stage everything not ignored and commit it; None when there was nothing."""
        status = await git("status", "--porcelain", _NO_SUBMODULES, cwd=self.path)
        if not status.stdout.strip():
            return None
        identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        await git("add", "-A", cwd=self.path)
        await git(
            "commit", "--quiet", "--no-verify", "--file=-", cwd=self.path, env=identity,
            input=message,
        )  # fmt: skip
        return await self.head_sha()

    async def push(self, token: str | None) -> str:
        """Push refs/heads/<branch> to the clone URL, never forced; returns its sha."""
        if self.branch == self.base or not self.branch.startswith(BRANCH_PREFIX):
            raise PushRefused(
                f"refusing to push {self.branch!r}: Honk pushes only its own "
                f"{BRANCH_PREFIX}* branches, never the base branch"
            )
        ref = f"refs/heads/{self.branch}"
        sha = (await git("rev-parse", "--verify", ref, cwd=self.path)).stdout.strip()
        # The URL is Honk's, not whatever the checkout's config says now.
        result = await git(
            "push", "--porcelain", "--no-verify", self.clone_url, f"{ref}:{ref}",
            cwd=self.path, token=token, check=False,
        )  # fmt: skip
        rejected = [line for line in result.stdout.splitlines() if line.startswith("!")]
        if rejected:
            reason = rejected[0].split("\t")[-1]
            raise PushRejected(
                f"push of {self.branch} rejected: {reason}",
                returncode=result.returncode,
                stderr=result.stderr,
            )
        if result.returncode != 0:
            raise git_error(("push", self.clone_url), result)
        return sha

    def ignore_locally(self, patterns: Sequence[str]) -> None:
        """Ignore `patterns` in this clone only (.git/info/exclude is never committed)."""
        exclude = self.path / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as handle:
            handle.write("\n# Honk: test and build caches\n" + "\n".join(patterns) + "\n")

    async def head_sha(self) -> str:
        return (await git("rev-parse", "HEAD", cwd=self.path)).stdout.strip()

    async def commits_ahead_of_base(self) -> int:
        """Commits on HEAD that the base branch lacks: work an earlier attempt already pushed."""
        result = await git(
            "rev-list", "--count", f"refs/remotes/origin/{self.base}..HEAD", cwd=self.path
        )
        return int(result.stdout.strip() or 0)

    async def _against_start(self, *diff_args: str) -> str:
        # Stage into a throwaway copy of the index so untracked files count too and
        # the real index is left as the agent left it. copy2 keeps the index mtime,
        # which git needs to re-check files changed in the second it was written.
        index = self.path.parent / f".{self.path.name}.index-{secrets.token_hex(6)}"
        real_index = self.path / ".git" / "index"
        try:
            if real_index.exists():
                await asyncio.to_thread(shutil.copy2, real_index, index)
            env = {"GIT_INDEX_FILE": str(index)}
            await git("add", "-A", cwd=self.path, env=env)
            result = await git(
                "diff", "--cached", "--no-ext-diff", "--no-textconv", _NO_SUBMODULES,
                *diff_args, self.start_sha, cwd=self.path, env=env,
            )  # fmt: skip
            return result.stdout
        finally:
            index.unlink(missing_ok=True)


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
