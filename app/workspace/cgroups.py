"""Cgroups made for one command: a pids cgroup (cgroup v1's pids hierarchy, or v2 with pids
delegated to Honk's cgroup) and a memory cgroup (v1's memory hierarchy, or v2 with memory
delegated), found once per process, entered before the command can fork, removed after it;
what holds a command to its limits on this host, for doctor."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from app.workspace.limits import MIB, SandboxLimits

_CGROUP_PREFIX = "honk-sandbox-"


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
