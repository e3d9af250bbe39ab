"""The checkout's disk use against its limit: the work tree and the run's home, walked only
when the filesystem's free space says they may have grown past it."""

from __future__ import annotations

import os
import time
from pathlib import Path


class DiskWatch:
    """The checkout's work tree (without .git) and the run's home against one limit, looked
    at cheaply.

    A full walk is costly on a big checkout. Between walks, what the filesystem lost in
    free space bounds how much the checkout can have grown, so the tree is walked again
    when that bound passes the limit (at most every few walk-durations), and at least
    every half minute (another run freeing space on the same filesystem hides growth).
    """

    def __init__(self, root: Path, limit_bytes: int, *, min_interval: float = 0.25) -> None:
        self.root = root
        self.limit = limit_bytes
        self.min_interval = min_interval
        # Directories counted with `root` (the run's home), on the same filesystem.
        self.also: tuple[Path, ...] = ()
        self.known: int | None = None  # bytes at the last walk
        self._free_then = 0
        self._next_walk = 0.0
        self._stale_at = 0.0

    def measure(self, *, fresh: bool = False) -> int:
        """Bytes in use: an upper bound while it is within the limit, else a walk's count.

        Right after a walk another one waits a while (the limit is then taken as not
        passed yet) unless `fresh`. Blocking: call in a thread.
        """
        free = _free_bytes(self.root)
        # The home on a filesystem of its own (`honk run`): what that one lost counts too.
        free += sum(_free_bytes(path) for path in self.also if _device(path) != _device(self.root))
        now = time.monotonic()
        if self.known is not None and now < self._stale_at:
            bound = self.known + max(0, self._free_then - free)
            if bound <= self.limit:
                return bound
            if now < self._next_walk and not fresh:
                return min(self.known, self.limit)
        homes = sum(tree_bytes(path, skip_git=False) for path in self.also)
        self.known = tree_bytes(self.root) + homes
        self._free_then = free
        took = time.monotonic() - now
        self._next_walk = time.monotonic() + max(self.min_interval, 4 * took)
        self._stale_at = time.monotonic() + max(30.0, 20 * took)
        return self.known


def tree_bytes(root: Path, *, skip_git: bool = True) -> int:
    """Disk blocks used under `root`, .git at the top left out (unless not `skip_git`), each
    inode counted once."""
    total, seen = 0, set()
    pending = [str(root)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if skip_git and current == str(root) and entry.name == ".git":
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if info.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                        if (info.st_dev, info.st_ino) in seen:
                            continue
                        seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
        except OSError:
            continue
    return total


def _device(path: Path) -> int:
    try:
        return os.stat(path).st_dev
    except OSError:
        return -1


def _free_bytes(path: Path) -> int:
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize
