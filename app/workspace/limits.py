"""What one sandboxed command may use: processes, memory, file size, /tmp, the checkout's disk.

bwrap sets no resource limits. Inside the sandbox a `ulimit` preamble sets hard limits the
command cannot raise (no capabilities). RLIMIT_NPROC binds no process of root, so where
Honk can make a pids cgroup (cgroup v1's pids hierarchy, or v2 with pids delegated to
Honk's cgroup) each command runs in one of its own; either way Honk watches the command
and ends it with a clear error when it reaches its process or disk limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings

MIB = 1024 * 1024
_CGROUP_PREFIX = "honk-sandbox-"


@dataclass(frozen=True)
class SandboxLimits:
    """Per command; `check_interval` is how often a running command is looked at."""

    processes: int = 512
    memory_mb: int = 4096
    file_size_mb: int = 1024
    tmp_mb: int = 512
    disk_mb: int = 10240
    check_interval: float = 0.25
    # False: never a pids cgroup (as where none is writable): RLIMIT_NPROC and the watch.
    use_cgroup: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        return cls(
            processes=settings.sandbox_max_processes,
            memory_mb=settings.sandbox_memory_mb,
            file_size_mb=settings.sandbox_file_size_mb,
            tmp_mb=settings.sandbox_tmp_mb,
            disk_mb=settings.sandbox_disk_mb,
        )

    def preamble(self, before: str = "") -> str:
        """Shell that sets the hard limits, runs `before` (shell, under those limits too),
        then the command given as "$1".

        A limit already lower than ours (the host's hard limit) cannot be raised and stays.
        """
        limits = (
            ("-u", self.processes),
            ("-d", self.memory_mb * 1024),  # KiB
            ("-f", self.file_size_mb * 1024),  # KiB in bash's default mode
        )
        sets = "".join(f"ulimit -HS {flag} {value} 2>/dev/null; " for flag, value in limits)
        return sets + before + 'exec bash -c "$1"'

    def process_message(self) -> str:
        return (
            f"stopped: the command reached the sandbox's limit of {self.processes} "
            "processes and threads (HONK_SANDBOX_MAX_PROCESSES); run fewer at once"
        )

    def disk_message(self, used: int) -> str:
        return (
            f"the checkout holds {used / MIB:,.0f} MiB, more than the sandbox's limit of "
            f"{self.disk_mb:,} MiB (HONK_SANDBOX_DISK_MB); delete files to go on"
        )

    def file_size_message(self) -> str:
        return (
            f"a file reached the sandbox's file size limit of {self.file_size_mb:,} MiB "
            "(HONK_SANDBOX_FILE_SIZE_MB): writing past it was refused"
        )


class PidsCgroup:
    """One command's pids cgroup: the kernel caps its tasks; Honk sees when it hit the cap."""

    _parent: Path | bool | None = False  # False: not looked for yet

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        """A fresh cgroup capped at `limit` tasks, or None where Honk cannot make one."""
        if cls._parent is False:
            cls._parent = _usable_parent(_pids_dirs())
        if not isinstance(cls._parent, Path):
            return None
        path = cls._parent / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started inside the cgroup before it can fork (no race with its children)."""
        procs = str(self.path / "cgroup.procs")
        # Where the move is refused (a v2 hierarchy Honk may not write), the command still
        # runs, capped by RLIMIT_NPROC and watched by count_tasks.
        return ["/bin/sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"', procs, *argv]

    def tasks(self) -> int:
        """Tasks in it now (0 where the command could not be moved into it)."""
        try:
            return int((self.path / "pids.current").read_text())
        except (OSError, ValueError):
            return 0

    def hit_limit(self) -> bool:
        try:
            events = (self.path / "pids.events").read_text()
        except OSError:
            return False
        counts = dict(line.split() for line in events.splitlines() if len(line.split()) == 2)
        return counts.get("max", "0") != "0"

    def remove(self) -> bool:
        """Kill what is left in it and remove it; False while tasks still linger."""
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return False
            raise
        return True


def process_cap() -> str:
    """What holds a command to its process limit on this host (blocking: probes cgroups)."""
    probe = PidsCgroup.create(1)
    if probe is not None:
        probe.remove()
        return "a pids cgroup per command"
    if os.getuid() != 0:
        return "RLIMIT_NPROC in the sandbox's user namespace"
    return "Honk's watch only (root is not bound by RLIMIT_NPROC and no pids cgroup is writable)"


def count_tasks(pid: int) -> int:
    """Tasks (threads) of `pid` and all its descendants, from /proc (blocking).

    Used where no cgroup counts them: it reads every process's stat, so only then.
    """
    children: dict[int, list[int]] = {}
    threads: dict[int, int] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    stat = handle.read().decode(errors="replace")
                # Fields after "(comm)": state, ppid, ... num_threads is the 18th of them.
                rest = stat[stat.rindex(")") + 2 :].split()
                ppid, count = int(rest[1]), int(rest[17])
            except (OSError, ValueError, IndexError):
                continue
            threads[int(entry.name)] = count
            children.setdefault(ppid, []).append(int(entry.name))
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += threads.get(current, 0)
        pending += children.get(current, [])
    return total


class DiskWatch:
    """The checkout's work tree (without .git) against a limit, looked at cheaply.

    A full walk is costly on a big checkout. Between walks, what the filesystem lost in
    free space bounds how much the checkout can have grown, so the tree is walked again
    when that bound passes the limit (at most every few walk-durations), and at least
    every half minute (another run freeing space on the same filesystem hides growth).
    """

    def __init__(self, root: Path, limit_bytes: int, *, min_interval: float = 0.25) -> None:
        self.root = root
        self.limit = limit_bytes
        self.min_interval = min_interval
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
        now = time.monotonic()
        if self.known is not None and now < self._stale_at:
            bound = self.known + max(0, self._free_then - free)
            if bound <= self.limit:
                return bound
            if now < self._next_walk and not fresh:
                return min(self.known, self.limit)
        self.known = tree_bytes(self.root)
        self._free_then = free
        took = time.monotonic() - now
        self._next_walk = time.monotonic() + max(self.min_interval, 4 * took)
        self._stale_at = time.monotonic() + max(30.0, 20 * took)
        return self.known


def tree_bytes(root: Path) -> int:
    """Disk blocks used under `root`, .git at the top left out, each inode counted once."""
    total, seen = 0, set()
    pending = [str(root)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if current == str(root) and entry.name == ".git":
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


def _free_bytes(path: Path) -> int:
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def _pids_dirs() -> list[Path]:
    """Honk's own cgroup directories that can hold a pids controller (v1 first, then v2)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    return pids_dirs(mountinfo, own)


def pids_dirs(mountinfo: str, own_cgroups: str) -> list[Path]:
    """Where this process's pids cgroup is, from /proc/self/mountinfo and /proc/self/cgroup."""
    membership: dict[str, str] = {}
    for line in own_cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                membership[controller] = parts[2]
    found: list[Path] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mount_point, fstype, options = fields[3], fields[4], tail[0], tail[2]
        if fstype == "cgroup" and "pids" in options.split(","):
            own = membership.get("pids")
        elif fstype == "cgroup2":
            own = membership.get("")
        else:
            continue
        if own is None or not under_root(own, root):
            continue
        relative = own[len(root.rstrip("/")) :].lstrip("/")
        path = Path(mount_point) / relative
        if fstype == "cgroup":
            found.insert(0, path)
        else:
            found.append(path)
    return found


def under_root(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def _usable_parent(candidates: list[Path]) -> Path | None:
    """The first candidate where a child capped by pids.max can be made and removed."""
    for parent in candidates:
        _sweep(parent)
        probe = parent / f"{_CGROUP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            probe.mkdir()
        except OSError:
            continue
        try:
            (probe / "pids.max").write_text("1")
            return parent
        except OSError:
            continue
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
    return None


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups a dead Honk process left behind (a crash, a kill -9)."""
    try:
        children = list(parent.glob(f"{_CGROUP_PREFIX}*"))
    except OSError:
        return
    for child in children:
        owner = child.name.removeprefix(_CGROUP_PREFIX).removeprefix("probe-").split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                child.rmdir()  # refused while tasks remain in it
