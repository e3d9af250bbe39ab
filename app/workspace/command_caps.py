"""What holds one sandboxed command to its limits: its cgroups where Honk can make them, the
watch while it runs (processes, memory, the checkout's disk), the limit it ran into."""

from __future__ import annotations

import asyncio
import functools
import signal
from dataclasses import dataclass

from app.workspace.cgroups import MemoryCgroup, PidsCgroup
from app.workspace.disk_watch import DiskWatch
from app.workspace.limits import MIB, SandboxLimits
from app.workspace.process_tree import descendants, private_memory

# bash's status for a command killed by SIGXFSZ (a file reached RLIMIT_FSIZE).
_FILE_TOO_BIG = 128 + signal.SIGXFSZ
_FILE_TOO_BIG_NOTE = "File size limit exceeded"  # what bash says of such a child (LANG=C)


@dataclass
class CommandCaps:
    """What holds one command: its limits as they apply here, and its cgroups."""

    limits: SandboxLimits
    pids: PidsCgroup | None = None
    memory: MemoryCgroup | None = None
    memory_hit: bool = False  # the kernel killed in its memory cgroup

    @classmethod
    def create(cls, limits: SandboxLimits) -> CommandCaps:
        """The command's cgroups where Honk can make them; without a memory cgroup, the
        limits that stand in for it (blocking: cgroup files)."""
        pids = PidsCgroup.create(limits.processes) if limits.use_cgroup else None
        memory = None
        if limits.memory_cgroup:
            memory = MemoryCgroup.create(limits.memory_mb * MIB, beside=pids)
        if memory is None:
            limits = limits.without_memory_cgroup()
            if pids is not None and not pids.set_limit(limits.processes):
                pids.remove()
                pids = None
        return cls(limits, pids, memory)

    def cgroups(self) -> list[PidsCgroup | MemoryCgroup]:
        return [c for c in (self.pids, self.memory) if c is not None]

    def limit_reached(self, pid: int, disk: DiskWatch, disk_before: int) -> str | None:
        """The limit the running command (`pid`) has reached, if any (blocking: /proc)."""
        limits, cgroup = self.limits, self.pids
        members: list[int] = []
        if cgroup is not None and cgroup.tasks() > 0:
            too_many = cgroup.hit_limit()  # the kernel refused a fork: the cap was reached
            if limits.address_space:
                members = cgroup.members()
        else:
            tasks, members = descendants(pid)
            too_many = tasks >= limits.processes
        if too_many:
            return limits.process_message()
        if self.memory is not None and self.memory.oom_kills() > 0:
            self.memory_hit = True  # the kernel killed in it: the whole command ends
            return limits.memory_message()
        if limits.address_space and private_memory(members) > limits.memory_mb * MIB:
            return limits.memory_message()
        used = disk.measure()
        # Growing past the limit ends the command; shrinking (rm) never does.
        if used > disk.limit and used > disk_before:
            return limits.disk_message(used)
        return None

    async def after(
        self, returncode: int | None, output: str, disk: DiskWatch, limits: SandboxLimits
    ) -> str | None:
        """A limit the finished command ran into: memory, a file too big, the checkout full
        (`limits`: the sandbox's own, which name the file size and disk limits)."""
        if self.memory_hit:
            return self.limits.memory_message()
        if self.limits.refused_allocation(returncode, output):
            return self.limits.allocation_message()
        if returncode == _FILE_TOO_BIG or _FILE_TOO_BIG_NOTE in output:
            return limits.file_size_message()
        used = await asyncio.to_thread(functools.partial(disk.measure, fresh=True))
        return limits.disk_message(used) if used > disk.limit else None

    async def remove(self) -> None:
        """The command's cgroups go with it; their last tasks are gone within moments of its
        end."""
        for cgroup in self.cgroups():
            for delay in (0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
                await asyncio.sleep(delay)
                if await asyncio.to_thread(cgroup.remove):
                    break
