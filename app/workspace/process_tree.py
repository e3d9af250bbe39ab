"""A command's processes as /proc shows them, where no cgroup counts them: its tasks and
descendants, the memory they hold of their own (blocking reads)."""

from __future__ import annotations

import os
from collections.abc import Iterable

_PAGE = os.sysconf("SC_PAGE_SIZE")


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
