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

The limits are this module's; the cgroups are cgroups.py's, the watch's looks at /proc
process_tree.py's and at the disk disk_watch.py's, a command's caps command_caps.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from app.config import SandboxSettings

MIB = 1024 * 1024
# Without a memory cgroup: at most this many processes, each with its own address-space
# limit, so that between two looks of the watch the command cannot go far past its memory.
FALLBACK_PROCESSES = 128
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
