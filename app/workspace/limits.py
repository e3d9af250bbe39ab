"""What one sandboxed command may use: processes, memory, file size, /tmp, the checkout's disk.

bwrap sets no resource limits. Inside the sandbox a `ulimit` preamble sets hard limits the
command cannot raise (no capabilities). RLIMIT_NPROC binds no process of root, so where
Honk can make a pids cgroup (cgroup v1's pids hierarchy, or v2 with pids delegated to
Honk's cgroup) each command runs in one of its own; either way Honk watches the command
and ends it with a clear error when it reaches its process or disk limit.

Memory is capped for the command as a whole: where Honk can make a memory cgroup (v1's
memory hierarchy, or v2 with memory delegated) the kernel holds all its processes together
to HONK_SANDBOX_MEMORY_MB, no swap, and kills inside it past that; elsewhere each process
gets an address-space limit (RLIMIT_AS) of that size, the command fewer processes
(FALLBACK_PROCESSES), and Honk's watch ends it when their memory together passes the limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from app.config import SandboxSettings

MIB = 1024 * 1024
# Without a memory cgroup: at most this many processes, each with its own address-space
# limit, so that between two looks of the watch the command cannot go far past its memory.
FALLBACK_PROCESSES = 128
_CGROUP_PREFIX = "honk-sandbox-"
_PAGE = os.sysconf("SC_PAGE_SIZE")
# What a process whose allocation was refused (RLIMIT_AS) says, in the common runtimes.
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|std::bad_alloc|out of memory|JavaScript heap",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SandboxLimits:
    """Per command; `check_interval` is how often a running command is looked at. The
    defaults are the settings' (app/config/run.py, SandboxSettings)."""

    processes: int = SandboxSettings.max_processes
    memory_mb: int = SandboxSettings.memory_mb
    file_size_mb: int = SandboxSettings.file_size_mb
    tmp_mb: int = SandboxSettings.tmp_mb
    disk_mb: int = SandboxSettings.disk_mb
    check_interval: float = 0.25
    # False: never a pids cgroup (as where none is writable): RLIMIT_NPROC and the watch.
    use_cgroup: bool = True
    # False: never a memory cgroup (as where none can be made): the fallback below.
    memory_cgroup: bool = True
    # The fallback in force (`without_memory_cgroup`): RLIMIT_AS per process, and the watch
    # sums the command's memory.
    address_space: bool = False

    @classmethod
    def from_settings(cls, sandbox: SandboxSettings) -> SandboxLimits:
        return cls(
            processes=sandbox.max_processes,
            memory_mb=sandbox.memory_mb,
            file_size_mb=sandbox.file_size_mb,
            tmp_mb=sandbox.tmp_mb,
            disk_mb=sandbox.disk_mb,
        )

    def preamble(self, before: str = "") -> str:
        """Shell that sets the hard limits, runs `before` (shell, under those limits too),
        then the command given as "$1".

        A limit already lower than ours (the host's hard limit) cannot be raised and stays.
        """
        limits = [
            ("-u", self.processes),
            ("-d", self.memory_mb * 1024),  # KiB
            ("-f", self.file_size_mb * 1024),  # KiB in bash's default mode
        ]
        if self.address_space:
            limits.append(("-v", self.memory_mb * 1024))  # KiB
        sets = "".join(f"ulimit -HS {flag} {value} 2>/dev/null; " for flag, value in limits)
        return sets + before + 'exec bash -c "$1"'

    def without_memory_cgroup(self) -> SandboxLimits:
        """The limits where no memory cgroup holds the command: fewer processes, each with
        an address-space limit, and the watch on their total."""
        return replace(self, processes=min(self.processes, FALLBACK_PROCESSES), address_space=True)

    def memory_message(self) -> str:
        return (
            f"stopped: the command reached the sandbox's memory limit of {self.memory_mb:,} "
            "MiB for all its processes together (HONK_SANDBOX_MEMORY_MB); use less at once "
            "(fewer parallel jobs, smaller inputs)"
        )

    def allocation_message(self) -> str:
        return (
            "a process ran out of memory: each may map at most "
            f"{self.memory_mb:,} MiB (HONK_SANDBOX_MEMORY_MB) on this host"
        )

    def refused_allocation(self, returncode: int | None, output: str) -> bool:
        """Under the address-space limit, a failed command that says it ran out of memory."""
        return self.address_space and returncode != 0 and bool(_OUT_OF_MEMORY.search(output))

    def process_message(self) -> str:
        return (
            f"stopped: the command reached the sandbox's limit of {self.processes} "
            "processes and threads (HONK_SANDBOX_MAX_PROCESSES); run fewer at once"
        )

    def disk_message(self, used: int) -> str:
        return (
            f"the checkout (with $HOME) holds {used / MIB:,.0f} MiB, more than the sandbox's "
            f"limit of {self.disk_mb:,} MiB (HONK_SANDBOX_DISK_MB); delete files to go on"
        )

    def file_size_message(self) -> str:
        return (
            f"a file reached the sandbox's file size limit of {self.file_size_mb:,} MiB "
            "(HONK_SANDBOX_FILE_SIZE_MB): writing past it was refused"
        )


class _CommandCgroup:
    """A cgroup made for one command: entered before it can fork, removed after it."""

    def __init__(self, path: Path, *, owned: bool = True) -> None:
        self.path = path
        self.owned = owned  # False: another cgroup's directory (v2: one for both controllers)

    def remove(self) -> bool:
        """Kill what is left in it and remove it; False while tasks still linger."""
        if not self.owned:
            return True
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

    def members(self) -> list[int]:
        """The processes in it now."""
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []


class PidsCgroup(_CommandCgroup):
    """One command's pids cgroup: the kernel caps its tasks; Honk sees when it hit the cap."""

    _parent: Path | bool | None = False  # False: not looked for yet

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        """A fresh cgroup capped at `limit` tasks, or None where Honk cannot make one."""
        if cls._parent is False:
            cls._parent = _usable_parent(_controller_dirs("pids"), _probe_pids)
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

    def set_limit(self, limit: int) -> bool:
        try:
            (self.path / "pids.max").write_text(str(limit))
        except OSError:
            return False
        return True

    def tasks(self) -> int:
        """Tasks in it now (0 where the command could not be moved into it)."""
        try:
            return int((self.path / "pids.current").read_text())
        except (OSError, ValueError):
            return 0

    def hit_limit(self) -> bool:
        return _event_count(self.path / "pids.events", "max") > 0


class MemoryCgroup(_CommandCgroup):
    """One command's memory cgroup: the kernel holds all its processes together to the
    limit, without swap, and kills inside it past that; Honk sees that it did."""

    _parent: Path | bool | None = False  # False: not looked for yet

    def __init__(self, path: Path, *, v2: bool, owned: bool = True) -> None:
        super().__init__(path, owned=owned)
        self.v2 = v2

    @classmethod
    def create(cls, limit_bytes: int, *, beside: PidsCgroup | None = None) -> MemoryCgroup | None:
        """A cgroup capped at `limit_bytes`, or None where Honk cannot make one. On cgroup v2
        a process is in one cgroup only: the command's pids cgroup, if it is in the same
        hierarchy, takes the memory limit too."""
        if cls._parent is False:
            cls._parent = _usable_parent(_controller_dirs("memory"), _probe_memory)
        parent = cls._parent
        if not isinstance(parent, Path):
            return None
        v2 = (parent / "cgroup.controllers").exists()
        if v2 and beside is not None and beside.path.parent == parent:
            path, owned = beside.path, False
        else:
            path, owned = parent / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}", True
        try:
            if owned:
                path.mkdir()
            _limit_memory(path, limit_bytes, v2=v2)
        except OSError:
            if owned:
                with contextlib.suppress(OSError):
                    path.rmdir()
            return None
        return cls(path, v2=v2, owned=owned)

    def oom_kills(self) -> int:
        """Processes the kernel killed in it for want of memory."""
        if self.v2:
            return _event_count(self.path / "memory.events", "oom_kill")
        return _event_count(self.path / "memory.oom_control", "oom_kill")


def _limit_memory(path: Path, limit_bytes: int, *, v2: bool) -> None:
    """The limit, and no swap beyond it where the kernel accounts swap."""
    if v2:
        (path / "memory.max").write_text(str(limit_bytes))
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            with contextlib.suppress(OSError):
                (path / name).write_text(value)
        return
    (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
    with contextlib.suppress(OSError):  # absent without swap accounting (swapaccount=0)
        (path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))


def _event_count(path: Path, key: str) -> int:
    """`key`'s count in a flat "name value" file (pids.events, memory.events, oom_control)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def enter(argv: list[str], cgroups: Iterable[_CommandCgroup]) -> list[str]:
    """`argv` started inside each cgroup before it can fork (no race with its children).

    Where a move is refused (a v2 hierarchy Honk may not write), the command still runs,
    capped by its rlimits and watched.
    """
    procs = list(dict.fromkeys(str(c.path / "cgroup.procs") for c in cgroups))
    if not procs:
        return argv
    script = 'n=$0; while [ "$n" -gt 0 ]; do echo $$ > "$1" 2>/dev/null; shift; n=$((n-1)); done; '
    return ["/bin/sh", "-c", script + 'exec "$@"', str(len(procs)), *procs, *argv]


def process_cap() -> str:
    """What holds a command to its process limit on this host (blocking: probes cgroups)."""
    probe = PidsCgroup.create(1)
    if probe is not None:
        probe.remove()
        return "a pids cgroup per command"
    if os.getuid() != 0:
        return "RLIMIT_NPROC in the sandbox's user namespace"
    return "Honk's watch only (root is not bound by RLIMIT_NPROC and no pids cgroup is writable)"


def memory_cap(limits: SandboxLimits) -> str:
    """What holds a command to its memory limit on this host, and the limit (blocking)."""
    probe = MemoryCgroup.create(limits.memory_mb * MIB) if limits.memory_cgroup else None
    if probe is not None:
        probe.remove()
        kind = "v2" if probe.v2 else "v1"
        return (
            f"a memory cgroup ({kind}) per command: {limits.memory_mb:,} MiB for all its "
            "processes together, no swap"
        )
    fallback = limits.without_memory_cgroup()
    why = "not used" if not limits.memory_cgroup else "none can be made here"
    return (
        f"an address-space limit (RLIMIT_AS) of {fallback.memory_mb:,} MiB per process, at "
        f"most {fallback.processes} processes, and Honk's watch of their total "
        f"({fallback.memory_mb:,} MiB); no memory cgroup: {why}"
    )


def private_memory(pids: Iterable[int]) -> int:
    """Bytes of memory the processes hold of their own (resident, not file-backed or
    shared), from /proc (blocking)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                fields = handle.read().split()
            total += max(0, int(fields[1]) - int(fields[2])) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


def count_tasks(pid: int) -> int:
    """Tasks (threads) of `pid` and all its descendants, from /proc (blocking)."""
    return descendants(pid)[0]


def descendants(pid: int) -> tuple[int, list[int]]:
    """Tasks (threads) of `pid` and all its descendants, and their pids, from /proc
    (blocking). Used where no cgroup counts them: it reads every process's stat, so only then.
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
    total, pending, found = 0, [pid], []
    while pending:
        current = pending.pop()
        if current in threads:
            found.append(current)
        total += threads.get(current, 0)
        pending += children.get(current, [])
    return total, found


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


def _controller_dirs(controller: str) -> list[Path]:
    """Honk's own cgroup directories that can hold `controller` (v1 first, then v2)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        own = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    return controller_dirs(controller, mountinfo, own)


def pids_dirs(mountinfo: str, own_cgroups: str) -> list[Path]:
    """Where this process's pids cgroup is, from /proc/self/mountinfo and /proc/self/cgroup."""
    return controller_dirs("pids", mountinfo, own_cgroups)


def controller_dirs(controller: str, mountinfo: str, own_cgroups: str) -> list[Path]:
    """Where this process's cgroup for `controller` is (a v1 hierarchy of its own, or v2's),
    from /proc/self/mountinfo and /proc/self/cgroup."""
    membership: dict[str, str] = {}
    for line in own_cgroups.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                membership[name] = parts[2]
    found: list[Path] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mount_point, fstype, options = fields[3], fields[4], tail[0], tail[2]
        if fstype == "cgroup" and controller in options.split(","):
            own = membership.get(controller)
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


def _usable_parent(candidates: list[Path], probe: Callable[[Path], None]) -> Path | None:
    """The first candidate where a child can be made, limited by `probe`, and removed."""
    for parent in candidates:
        _sweep(parent)
        child = parent / f"{_CGROUP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            child.mkdir()
        except OSError:
            continue
        try:
            probe(child)
            return parent
        except OSError:
            continue
        finally:
            with contextlib.suppress(OSError):
                child.rmdir()
    return None


def _probe_pids(child: Path) -> None:
    (child / "pids.max").write_text("1")


def _probe_memory(child: Path) -> None:
    # A v2 child has memory.max only where the parent delegates the memory controller.
    _limit_memory(child, 64 * MIB, v2=(child.parent / "cgroup.controllers").exists())


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
