"""Package caches kept across runs, per (installation, repository), keyed by lock files.

Before setup, the entry for the run's key (a hash of the lock files at the base commit), or
on a miss the repository's most recently used entry, is COPIED into the run's home; after
setup succeeds, the home's cache directories (run_home.CACHE_DIRS) are copied out as the
entry for the key. Only setup, which runs over the base branch's files, feeds an entry: the
agent (which a hostile issue may steer) works in the run's own copy, and nothing it writes
is ever saved. Entries never cross repositories or installations; together they stay under
HONK_CACHE_MAX_MB, the least recently used going first.

Layout: <cache dir>/<scope>/<repository>/<key>/{home/, meta.json}, with `.lock` (flock:
shared while an entry is copied in, exclusive while one is replaced or removed) beside the
entries. meta.json's modification time is when the entry was last used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app import metrics
from app.config import Settings
from app.log import describe_error
from app.workspace.changes import LOCK_FILES
from app.workspace.disk_watch import tree_bytes
from app.workspace.git import git
from app.workspace.limits import MIB
from app.workspace.mirror import flocked, remove_tree, split_repo
from app.workspace.run_home import CACHE_DIRS, copy_tree, inside

log = logging.getLogger(__name__)

# The files whose content decides what setup downloads, wherever they are in the tree.
LOCK_NAMES = LOCK_FILES | {
    # Tracked manifests and sums that also decide what setup downloads.
    "go.sum",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "libs.versions.toml",
}
_LOCK_PATTERN = re.compile(r"requirements[\w.-]*\.txt")
_KEY_VERSION = "honk-cache-1"
_KEY = re.compile(r"^[0-9a-f]{16}$")
_META = "meta.json"
_LOCK = ".lock"
_PARTIAL = ".partial-"
# A copy in progress (`.partial-*`) older than this was left by a process that died.
_ABANDONED = 24 * 3600.0

HIT, PARTIAL, MISS = "hit", "partial", "miss"


def is_lock_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in LOCK_NAMES or bool(_LOCK_PATTERN.fullmatch(name))


def lock_key(files: Iterable[tuple[str, str]]) -> str:
    """The cache key of lock files given as (path, content digest), in any order."""
    text = "\n".join(f"{path}\0{digest}" for path, digest in sorted(set(files)))
    return hashlib.sha256(f"{_KEY_VERSION}\n{text}".encode()).hexdigest()[:16]


async def lock_files_at(repo: Path, rev: str) -> list[tuple[str, str]]:
    """The lock files of commit `rev` in the git repository at `repo`: (path, blob id)."""
    listing = await git("ls-tree", "-r", "-z", "--full-tree", rev, cwd=repo)
    found = []
    for entry in filter(None, listing.stdout.split("\0")):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob" and is_lock_file(path):
            found.append((path, parts[2]))
    return found


async def key_at(repo: Path, rev: str | None) -> str:
    """The cache key of commit `rev` (None, or a repository without commits: no lock files)."""
    if rev is None:
        return lock_key(())
    return lock_key(await lock_files_at(repo, rev))


async def head_key(repo: Path) -> str:
    """The cache key of the checkout's HEAD (`honk run`); no commit yet: no lock files."""
    head = await git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=repo, check=False)
    return await key_at(repo, head.stdout.strip() if head.returncode == 0 else None)


@dataclass(frozen=True)
class CacheScope:
    """Whose entries: an installation's repository, or `honk run`'s directory."""

    owner: str  # "installation-<id>" or "local"
    name: str  # "<owner>+<name>" (lower case) or a digest of the directory's path

    @classmethod
    def repository(cls, installation_id: int, repo: str) -> CacheScope:
        owner, name = split_repo(repo)
        return cls(f"installation-{int(installation_id)}", f"{owner}+{name}".lower())

    @classmethod
    def directory(cls, path: Path) -> CacheScope:
        digest = hashlib.sha256(os.path.realpath(path).encode()).hexdigest()[:24]
        return cls("local", digest)


@dataclass(frozen=True)
class Restored:
    """What went into the run's home: `result` is HIT (the key's own entry), PARTIAL (the
    repository's most recently used entry, another key's) or MISS."""

    result: str
    key: str
    from_key: str | None = None
    bytes: int = 0
    # The cache directories as restored (file names, sizes, times): saved again only if
    # setup changed them.
    fingerprint: str = ""

    def describe(self) -> str:
        size = f"{self.bytes / MIB:,.0f} MB"
        if self.result == HIT:
            return f"Package caches restored: key {self.key[:12]}, {size}."
        if self.result == PARTIAL and self.from_key:
            return (
                f"Package caches restored from an earlier lock file (key {self.from_key[:12]}, "
                f"{size}); this one's key is {self.key[:12]}."
            )
        return f"No package cache yet for these lock files (key {self.key[:12]})."


class PackageCaches:
    """The cache entries under `root`, `max_bytes` at most in all."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root).absolute()
        self.max_bytes = max_bytes

    @classmethod
    def for_settings(cls, settings: Settings) -> PackageCaches | None:
        """The operator's caches; None when HONK_CACHE_MAX_MB is 0 (caching off)."""
        if settings.sandbox.cache_max_mb <= 0:
            return None
        return cls(settings.package_cache_dir, settings.sandbox.cache_max_mb * MIB)

    def _dir(self, scope: CacheScope) -> Path:
        return self.root / scope.owner / scope.name

    async def restore(self, scope: CacheScope, key: str, home: Path) -> Restored:
        """Copy the entry for `key` (else the scope's most recently used one) into `home`,
        counted in honk_cache_restores_total. A failure is a miss, never the run's end."""
        restored = Restored(MISS, key)
        try:
            restored = await self._restore(scope, key, home)
        except Exception as exc:
            log.warning("could not restore the package caches: %s", describe_error(exc))
            await asyncio.to_thread(_clear_caches, home)
            restored = Restored(MISS, key)
        fingerprint, _size = await asyncio.to_thread(fingerprint_of, home)
        metrics.cache_restores.labels(restored.result).inc()
        return Restored(restored.result, key, restored.from_key, restored.bytes, fingerprint)

    async def _restore(self, scope: CacheScope, key: str, home: Path) -> Restored:
        directory = self._dir(scope)
        if not await asyncio.to_thread(directory.is_dir):
            return Restored(MISS, key)
        async with _locked(directory, exclusive=False):
            found = await asyncio.to_thread(_pick, directory, key)
            if found is None:
                return Restored(MISS, key)
            entry, size = found
            await copy_tree(entry / "home", home, contents=True)
            await asyncio.to_thread(_touch, entry / _META)
        result = HIT if entry.name == key else PARTIAL
        return Restored(result, key, entry.name, size)

    async def save(self, scope: CacheScope, home: Path, restored: Restored) -> int | None:
        """After setup succeeded: the home's cache directories as the entry for the key,
        replacing it atomically; the bytes saved, or None when nothing was saved (an exact
        hit setup did not change, nothing to keep, too big, or a failure, logged)."""
        try:
            return await self._save(scope, home, restored)
        except Exception as exc:
            log.warning("could not save the package caches: %s", describe_error(exc))
            return None

    async def _save(self, scope: CacheScope, home: Path, restored: Restored) -> int | None:
        key = restored.key
        if not _KEY.match(key):
            raise ValueError(f"not a cache key: {key!r}")
        fingerprint, size = await asyncio.to_thread(fingerprint_of, home)
        if restored.result == HIT and fingerprint == restored.fingerprint:
            return None  # the entry already holds exactly this
        if size == 0 or size > self.max_bytes:
            return None
        directory = self._dir(scope)
        await asyncio.to_thread(_private_dirs, self.root, directory)
        draft = directory / f"{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
        old = directory / f"{_PARTIAL}old-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            await asyncio.to_thread((draft / "home").mkdir, parents=True, mode=0o700)
            for relative in CACHE_DIRS:
                source = await asyncio.to_thread(inside, home, relative)
                if source is None:
                    continue
                target = draft / "home" / relative
                await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
                await copy_tree(source, target)
            saved = await asyncio.to_thread(tree_bytes, draft / "home", skip_git=False)
            meta = {"key": key, "bytes": saved, "saved": time.time()}
            await asyncio.to_thread((draft / _META).write_text, json.dumps(meta))
            async with _locked(directory, exclusive=True):
                await asyncio.to_thread(_swap_in, draft, directory / key, old)
        finally:
            await asyncio.to_thread(remove_tree, draft)
            await asyncio.to_thread(remove_tree, old)
        await self.prune()
        return saved

    async def prune(self) -> int:
        """Remove the least recently used entries, across every scope, until they hold at
        most `max_bytes`; copies abandoned by a dead process go too. How many went."""
        entries = await asyncio.to_thread(_all_entries, self.root)
        total = sum(size for _used, size, _path in entries)
        removed = 0
        for _used, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            async with _locked(path.parent, exclusive=True):
                await asyncio.to_thread(remove_tree, path)
            total -= size
            removed += 1
        return removed


def fingerprint_of(home: Path) -> tuple[str, int]:
    """A digest of the home's cache directories (every name, size, time and mode) and the
    bytes they hold. Blocking."""
    digest = hashlib.sha256()
    size = 0
    for relative in CACHE_DIRS:
        top = inside(home, relative)
        if top is None:
            continue
        size += tree_bytes(top, skip_git=False)
        for parent, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files + dirs):
                path = os.path.join(parent, name)
                with contextlib.suppress(OSError):
                    info = os.lstat(path)
                    line = f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode}\n"
                    digest.update(line.encode("utf-8", "surrogateescape"))
    return digest.hexdigest(), size


def _pick(directory: Path, key: str) -> tuple[Path, int] | None:
    """The entry for `key`, else the most recently used of the others; with its size."""
    best: tuple[float, Path, int] | None = None
    for entry in _entries_of(directory):
        used, size, path = entry
        if path.name == key:
            return path, size
        if best is None or used > best[0]:
            best = (used, path, size)
    return (best[1], best[2]) if best is not None else None


def _entries_of(directory: Path) -> list[tuple[float, int, Path]]:
    found: list[tuple[float, int, Path]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        if not _KEY.match(name):
            continue
        meta = directory / name / _META
        try:
            used = meta.stat().st_mtime
            size = int(json.loads(meta.read_text())["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((used, size, directory / name))
    return found


def _all_entries(root: Path) -> list[tuple[float, int, Path]]:
    """Every entry under `root`; abandoned partial copies are removed on the way."""
    found: list[tuple[float, int, Path]] = []
    now = time.time()
    for scope in _subdirs(root):
        for directory in _subdirs(scope):
            found += _entries_of(directory)
            for name in os.listdir(directory):
                path = directory / name
                if name.startswith(_PARTIAL):
                    with contextlib.suppress(OSError):
                        if now - path.lstat().st_mtime > _ABANDONED:
                            remove_tree(path)
    return found


def _subdirs(path: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _swap_in(draft: Path, target: Path, old: Path) -> None:
    """`draft` becomes `target`; the entry it replaces is moved to `old` (to be removed)."""
    if os.path.lexists(target):
        target.rename(old)
    draft.rename(target)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _clear_caches(home: Path) -> None:
    for relative in CACHE_DIRS:
        found = inside(home, relative)
        if found is not None:
            remove_tree(found)


def _private_dirs(root: Path, directory: Path) -> None:
    """The cache root and the scope's directory, each this user's only."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{root} is not a directory of this user's: set HONK_CACHE_DIR")
    if info.st_mode & 0o077:
        root.chmod(0o700)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _locked(directory: Path, *, exclusive: bool) -> contextlib.AbstractAsyncContextManager[None]:
    """An flock on the scope's `.lock`, shared or exclusive, across processes."""
    return flocked(directory / _LOCK, exclusive=exclusive)
