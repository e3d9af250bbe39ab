"""Per-repository mirrors and the fresh per-run clones made from them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from app.config import Settings
from app.workspace import prune
from app.workspace.checkout import Checkout
from app.workspace.git import GitError, git
from app.workspace.run_home import RUN_HOME, make_home

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_OPAQUE = re.compile(r"^[0-9a-f]{24}$")  # a checkout's directory: blake2b, 12 bytes


# Beside each checkout (never inside it, so never in the sandbox): the run and its attempt,
# so whichever process shares this directory can tell what a checkout is and sweep it.
MARKER = "run.json"
# A directory without a marker (a layout before markers, or a marker not yet written) is
# left alone this long after its last change, then swept.
UNMARKED_AGE = 24 * 3600.0
# Still in use, or not: (run id, attempt) -> whether that attempt may still work in it.
InUse = Callable[[int, int], Awaitable[bool]]


class Workspaces:
    """Mirrors under data_dir/mirrors/<owner>/<name>.git; runs in checkouts_dir/<opaque>/<name>.

    The sandbox's mount table shows a checkout's host path, so it names neither the data
    directory nor the run: the opaque part is a keyed hash of the run id and its attempt (the
    key is kept in the data directory). Beside the checkout, MARKER names the run and attempt
    for `sweep`, which any process sharing the checkouts directory runs: a process that dies
    leaves its checkouts to whoever sweeps next, whatever their key.
    """

    clone_timeout: float = 1800.0

    def __init__(self, data_dir: Path, checkouts_dir: Path | None = None) -> None:
        self.mirrors_dir = Path(data_dir) / "mirrors"
        self.checkouts_dir = Path(checkouts_dir or Path(data_dir) / "runs").absolute()
        self._key_path = Path(data_dir) / "checkout-names.key"
        self._key: bytes | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def for_settings(cls, settings: Settings) -> Workspaces:
        return cls(settings.store.data_dir, settings.sandbox.checkout_dir)

    def mirror_path(self, repo: str) -> Path:
        owner, name = split_repo(repo)
        return self.mirrors_dir / owner / f"{name}.git"

    def checkout_path(self, repo: str, run_id: int, attempt: int = 1) -> Path:
        """Where attempt `attempt` of run `run_id` checks `repo` out (blocking the first time:
        reads the key)."""
        _owner, name = split_repo(repo)
        named = f"{int(run_id)}:{int(attempt)}".encode()
        opaque = hashlib.blake2b(named, key=self._name_key(), digest_size=12)
        return self.checkouts_dir / opaque.hexdigest() / name

    def _name_key(self) -> bytes:
        if self._key is None:
            self._key = _shared_key(self._key_path)
        return self._key

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
        attempt: int = 1,
    ) -> AsyncIterator[Checkout]:
        """A fresh clone for one attempt of a run on `branch`, with the run's home beside it
        (`Checkout.home`); both removed on exit, however it exits (what a killed process
        leaves, `sweep` removes)."""
        mirror = self.mirror_path(repo)
        path = await asyncio.to_thread(self.checkout_path, repo, run_id, attempt)
        try:
            async with self._mirror_lock(repo):
                await self._update_mirror(mirror, clone_url, token)
                if base is None:
                    base = await _default_branch(mirror)
                await _remove(path)  # anything there is a leftover: this attempt is ours
                await asyncio.to_thread(_private_dir, self.checkouts_dir)
                await asyncio.to_thread(_mark, path.parent, run_id, attempt)
                # A plain local clone hard-links the mirror's objects: fast, and
                # independent of later repacks of the mirror (unlike --shared).
                await git("clone", "--quiet", "--no-checkout", str(mirror), str(path))
            await git("remote", "set-url", "origin", clone_url, cwd=path)
            # The reflogs say "clone: from <mirror path>": the data directory's place.
            await git("config", "core.logAllRefUpdates", "false", cwd=path)
            await asyncio.to_thread(shutil.rmtree, path / ".git" / "logs", True)
            start = await _switch_to_branch(path, branch, base)
            # The run's HOME, beside the checkout: private, and gone with it.
            home = await asyncio.to_thread(make_home, path.parent / RUN_HOME)
            yield Checkout(path, repo, branch, base, clone_url, start_sha=start, home=home)
        finally:
            await asyncio.shield(_remove(path.parent))  # the checkout and its marker

    async def sweep(self, in_use: InUse) -> int:
        """Remove the checkouts in the checkouts directory whose attempt `in_use` says is
        over (the run ended, or was claimed again), whichever process made them; how many.

        Checkouts of processes on other machines lie on their own disks: theirs to sweep.
        """
        removed = 0
        for entry, marked in await asyncio.to_thread(_entries, self.checkouts_dir):
            if marked is _RECENT or (marked is not _STALE and await in_use(*marked)):
                continue
            await asyncio.shield(_remove(entry))
            removed += 1
        return removed

    async def _update_mirror(self, mirror: Path, clone_url: str, token: str | None) -> None:
        if (mirror / "HEAD").exists():
            await git("remote", "set-url", "origin", clone_url, cwd=mirror)
            await prune.fetch_and_prune(mirror, token=token, git_timeout=self.clone_timeout)
            return
        mirror.parent.mkdir(parents=True, exist_ok=True)
        partial = mirror.with_name(f".{mirror.name}.partial-{os.getpid()}")
        await _remove(partial)
        try:
            # Bare, not --mirror: branches and tags only (see prune.py).
            await git(
                "clone", "--bare", "--quiet", clone_url, str(partial), token=token,
                timeout=self.clone_timeout,
            )  # fmt: skip
            await prune.configure(partial)
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
            async with flocked(lock_path, exclusive=True):
                yield


@contextlib.asynccontextmanager
async def flocked(path: Path, *, exclusive: bool) -> AsyncIterator[None]:
    """An flock on `path` (made if missing, never through a link), shared or exclusive, held
    across processes; waited for in a thread, so the event loop goes on."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    waiter = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, mode))
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


def _shared_key(path: Path) -> bytes:
    """A random key kept in `path`, made once by whichever process gets there first."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # never replaces a key another process made
        draft.unlink()
    return path.read_bytes()


def _mark(directory: Path, run_id: int, attempt: int) -> None:
    """Make the checkout's directory with its marker in it, before anything is cloned."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"run": int(run_id), "attempt": int(attempt)}, handle)


_RECENT = (-1, -1)  # unmarked, changed within UNMARKED_AGE: left alone
_STALE = (-2, -2)  # unmarked and older: swept


def _entries(checkouts_dir: Path) -> list[tuple[Path, tuple[int, int]]]:
    """The checkouts' directories there, each with its (run, attempt) or _RECENT or _STALE."""
    found: list[tuple[Path, tuple[int, int]]] = []
    try:
        entries = list(os.scandir(checkouts_dir))
    except FileNotFoundError:
        return found
    now = time.time()
    for entry in entries:
        # Only names this class gives (24 hex digits): anything else there is not Honk's.
        if not _OPAQUE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            data = json.loads((path / MARKER).read_text())
            found.append((path, (int(data["run"]), int(data["attempt"]))))
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                old = now - entry.stat(follow_symlinks=False).st_mtime > UNMARKED_AGE
                found.append((path, _STALE if old else _RECENT))
    return found


def _private_dir(path: Path) -> None:
    """`path` as a directory of this user's only (it may be in a world-writable /var/tmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(
            f"{path} is not a directory of this user's: set HONK_CHECKOUT_DIR to one that is"
        )
    if info.st_mode & 0o077:
        path.chmod(0o700)


async def _remove(path: Path) -> None:
    await asyncio.to_thread(remove_tree, path)


def remove_tree(path: Path) -> None:
    """Remove `path` whatever it holds: a directory made read-only inside (Go's module cache
    without -modcacherw) is made writable first. Blocking."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path) or os.path.islink(path):
        return
    for parent, dirs, _files in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                child = os.path.join(parent, name)
                if not os.path.islink(child):
                    os.chmod(child, 0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    shutil.rmtree(path, ignore_errors=True)
