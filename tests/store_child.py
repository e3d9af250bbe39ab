"""A store worker in its own OS process for the store tests, and `running()` to start one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from app.store import Store

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def running(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """This script as a child process (`claim-all URL WORKER`, `hold URL WORKER LEASE` or
    `events URL RUN_ID`)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def read_line(child: asyncio.subprocess.Process) -> str:
    assert child.stdout is not None
    async with asyncio.timeout(30):
        return (await child.stdout.readline()).decode().strip()


async def claim_all(store: Store, worker: str) -> None:
    """Say ready, wait for `go` on stdin, then claim runs until none is left, one id a line."""
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    while (run := await store.runs.claim(worker, lease_seconds=60)) is not None:
        print(run.id, flush=True)
        # A moment's work between claims, as a real worker has: SQLite's busy handler backs
        # off, so a process claiming back to back could otherwise take every run alone.
        await asyncio.sleep(0.005)


async def hold(store: Store, worker: str, lease_seconds: float) -> None:
    """Claim a run (one is queued already) and keep renewing its lease until killed."""
    run = await store.runs.claim(worker, lease_seconds)
    if run is None:
        sys.exit("nothing to claim")
    print(f"claimed {run.id}", flush=True)
    while True:
        await asyncio.sleep(lease_seconds / 4)
        if not await store.runs.renew_lease(run.id, worker, lease_seconds):
            sys.exit("lost the lease")


async def print_events(store: Store, run_id: int) -> None:
    """A run's stored events, one JSON line each: what any other process would serve."""
    for event in await store.events.read(run_id):
        print(json.dumps({"seq": event.seq, "kind": event.kind, "data": event.data}), flush=True)


async def main(mode: str, url: str, worker: str, *rest: str) -> None:
    store = await Store.open(url)
    try:
        if mode == "claim-all":
            await claim_all(store, worker)
        elif mode == "events":
            await print_events(store, int(worker))
        else:
            await hold(store, worker, float(rest[0]))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
