"""Scratch trees beside a run's checkout, for the outcome checks; the checkout itself (what
will be committed) is only read.

Each tree is named like the checkout, so it shows at the same path in its sandbox
(`/workspace/<name>`): a virtualenv or an editable install made by setup, which name that
path, work there too. What git sees is copied (the change and the base commit's files are
real copies); the ignored files setup made before the agent began (`.venv`,
`node_modules`) are hard-linked, and ignored files made or changed since then (by the
agent) are left out, so nothing the change hid from git takes part in the checks.

A file's inode change time tells which is which: the agent cannot set it back. Linking a
file changes it too, so the times seen right after Honk's own links are remembered
(`Scratch.known`, kept by the caller across the looks of one run): a file whose time moved
on since then was changed after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.workspace.checkout import Checkout
from app.workspace.git import git

_CACHES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
SCRATCH_PREFIX = ".honk-review-"


@dataclass(frozen=True)
class Change:
    """The change against the base commit, path by path."""

    base_sha: str
    base_paths: frozenset[str]  # the base commit's files
    paths: frozenset[str]  # the change's files as git sees them (tracked and untracked)
    changed: dict[str, str]  # path -> A, M or D against the base commit
    ignored: tuple[str, ...]  # ignored entries of the checkout (directories end with "/")


@dataclass
class Scratch:
    """Scratch trees of one review look; removed with `remove()`."""

    checkout: Checkout
    since: float | None = None  # when the agent began; None: every ignored file is setup's
    known: dict[str, int] = field(default_factory=dict)  # path -> ctime_ns after Honk's link
    root: Path = field(init=False)
    _linked: list[tuple[str, bool]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = self.checkout.path.parent / f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"

    @property
    def name(self) -> str:
        return self.checkout.path.name

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    async def change(self) -> Change:
        """What the change is against the base commit (untracked files included)."""
        path = self.checkout.path
        base = await self.checkout.base_sha()
        listed = await git("ls-tree", "-r", "-z", "--name-only", "--full-tree", base, cwd=path)
        base_paths = frozenset(filter(None, listed.stdout.split("\0")))
        seen = await git(
            "-c", "core.quotePath=false", "ls-files", "-z", "--cached", "--others",
            "--exclude-standard", cwd=path,
        )  # fmt: skip
        paths = frozenset(p for p in seen.stdout.split("\0") if p and _exists(path / p))
        ignored = await git(
            "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory",
            cwd=path,
        )  # fmt: skip
        changed = await self._changed_since(base)
        return Change(
            base, base_paths, paths, changed, tuple(filter(None, ignored.stdout.split("\0")))
        )

    async def _changed_since(self, base: str) -> dict[str, str]:
        """`git diff --raw` of everything `git add -A` would stage, against `base`, in a
        throwaway index (the checkout's own is left as it is)."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        index = self.root / f"index-{secrets.token_hex(4)}"
        real = self.checkout.path / ".git" / "index"
        try:
            if real.exists():
                await asyncio.to_thread(shutil.copy2, real, index)
            env = {"GIT_INDEX_FILE": str(index)}
            await git("add", "-A", cwd=self.checkout.path, env=env)
            result = await git(
                "diff", "--cached", "--raw", "-z", "--no-renames", "--no-ext-diff",
                "--ignore-submodules=all", base, cwd=self.checkout.path, env=env,
            )  # fmt: skip
        finally:
            await asyncio.to_thread(index.unlink, True)
        parts = result.stdout.split("\0")
        return {
            path: meta.split()[-1][0]
            for meta, path in zip(parts[::2], parts[1::2], strict=False)
            if meta.startswith(":")
        }

    async def base_tree(self, label: str, change: Change) -> Path:
        """A tree of the base commit's files (git's own copy of them), with setup's ignored
        files; at `<scratch>/<label>/<name>`."""
        tree = self.root / label / self.name
        await asyncio.to_thread(tree.mkdir, parents=True)
        index = self.root / f"index-{label}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            await git("read-tree", change.base_sha, cwd=self.checkout.path, env=env)
            await git(
                "checkout-index", "--all", "--force", f"--prefix={tree}/",
                cwd=self.checkout.path, env=env,
            )  # fmt: skip
        finally:
            await asyncio.to_thread(index.unlink, True)
        await self._link_ignored(tree, change)
        return tree

    async def change_tree(self, label: str, change: Change) -> Path:
        """A copy of the checkout as the change left it (what git sees), with setup's ignored
        files; at `<scratch>/<label>/<name>`."""
        tree = self.root / label / self.name
        await asyncio.to_thread(_copy_paths, self.checkout.path, tree, sorted(change.paths))
        await self._link_ignored(tree, change)
        return tree

    async def _classified(self, change: Change) -> list[tuple[str, bool]]:
        if self._linked is None:
            self._linked = await asyncio.to_thread(
                _ignored_files, self.checkout.path, change.ignored, self.since, dict(self.known)
            )
        return self._linked

    async def _link_ignored(self, tree: Path, change: Change) -> None:
        kept = [path for path, setup_made in await self._classified(change) if setup_made]
        linked = await asyncio.to_thread(_link_paths, self.checkout.path, tree, kept)
        self.known.update(linked)

    async def left_out(self, change: Change) -> list[str]:
        """Ignored files made or changed after the agent began (left out of every tree)."""
        return [path for path, setup_made in await self._classified(change) if not setup_made]


async def overlay(target: Path, source: Path, paths: Iterable[str], present: Iterable[str]) -> None:
    """Make `paths` in `target` what they are in `source`: copied when in `present` (the
    source's files), removed otherwise."""
    await asyncio.to_thread(_overlay, target, source, sorted(paths), frozenset(present))


def _overlay(target: Path, source: Path, paths: list[str], present: frozenset[str]) -> None:
    for path in paths:
        destination = _inside(target, path)
        if destination is None:
            continue
        if destination.is_symlink() or destination.is_file():
            destination.unlink()
        elif destination.is_dir():
            shutil.rmtree(destination)
        if path in present:
            _copy_one(source, target, path)


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _inside(root: Path, relative: str) -> Path | None:
    """`root/relative`, or None when a directory on the way is a symlink (or it leaves root):
    a copy never follows a link out of the tree, on either side."""
    if relative.startswith("/") or ".." in relative.split("/"):
        return None
    path = root / relative
    parent = os.path.realpath(path.parent)
    real_root = os.path.realpath(root)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        return None
    return path


def _copy_one(source_root: Path, target_root: Path, relative: str) -> None:
    source = _inside(source_root, relative)
    if source is None:
        return
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        return
    (target_root / relative).parent.mkdir(parents=True, exist_ok=True)
    target = _inside(target_root, relative)
    if target is None:
        return
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(info.st_mode):
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, stat.S_IMODE(info.st_mode))


def _copy_paths(source: Path, target: Path, paths: list[str]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for relative in paths:
        _copy_one(source, target, relative)


def _ignored_files(
    root: Path, entries: Iterable[str], since: float | None, known: dict[str, int]
) -> list[tuple[str, bool]]:
    """Every file under the ignored `entries` (caches left out), and whether setup made it:
    its inode changed last before `since`, or not since Honk linked it (`known`)."""
    found: list[tuple[str, bool]] = []
    for entry in entries:
        top = entry.rstrip("/")
        if not top or top.split("/")[-1] in _CACHES or top.startswith(SCRATCH_PREFIX):
            continue
        start = _inside(root, top)
        if start is None:
            continue
        if not start.is_dir() or start.is_symlink():
            found.append((top, _setup_made(start, top, since, known)))
            continue
        for directory, dirs, names in os.walk(start):
            dirs[:] = [d for d in dirs if d not in _CACHES]
            relative_dir = os.path.relpath(directory, root)
            for name in names + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
                relative = os.path.join(relative_dir, name)
                found.append((relative, _setup_made(root / relative, relative, since, known)))
    return found


def _setup_made(path: Path, relative: str, since: float | None, known: dict[str, int]) -> bool:
    if since is None:
        return True
    try:
        changed = os.lstat(path).st_ctime_ns
    except OSError:
        return False
    if relative in known:
        return changed == known[relative]
    return changed <= int(since * 1e9)


def _link_paths(source: Path, target: Path, paths: list[str]) -> dict[str, int]:
    """Hard links (copies across file systems) of `paths`; each source's change time after."""
    linked: dict[str, int] = {}
    for relative in paths:
        origin = _inside(source, relative)
        if origin is None:
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        destination = _inside(target, relative)
        if destination is None or os.path.lexists(destination):
            continue
        try:
            info = os.lstat(origin)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(origin), destination)
        elif stat.S_ISREG(info.st_mode):
            try:
                os.link(origin, destination, follow_symlinks=False)
            except OSError:  # another file system, or links refused: a copy
                shutil.copy2(origin, destination, follow_symlinks=False)
        with contextlib.suppress(OSError):
            linked[relative] = os.lstat(origin).st_ctime_ns
    return linked
