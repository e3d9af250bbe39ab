"""A worker process killed mid-run: its run waits out the lease, then another worker takes it."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from app.models import RunState
from app.store import NewRun, Store
from tests.store_child import read_line, running

LEASE = 1.0


async def test_a_killed_workers_run_is_claimed_again_once_its_lease_runs_out(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'honk.db'}"
    store = await Store.open(url)
    try:
        run = await store.runs.enqueue(
            NewRun(repo="octo/widgets", installation_id=7, issue_number=1)
        )
        assert run is not None
        async with running("hold", url, "doomed", str(LEASE)) as child:
            assert await read_line(child) == f"claimed {run.id}"
            # Outlive the first lease: only the child's renewals keep the run from us now.
            await asyncio.sleep(LEASE * 1.5)
            assert await store.runs.claim("rescuer", 30) is None
            held = await store.runs.get(run.id)
            assert held is not None and held.lease_owner == "doomed"
            assert held.lease_expires_at is not None
            assert held.lease_expires_at > datetime.now(UTC)

            child.send_signal(signal.SIGKILL)
            assert await child.wait() == -signal.SIGKILL
        killed_at = time.monotonic()
        assert await store.runs.claim("rescuer", 30) is None  # the dead worker's lease is live

        claimed = None
        async with asyncio.timeout(LEASE * 5):
            while claimed is None:
                await asyncio.sleep(0.05)
                claimed = await store.runs.claim("rescuer", 30)
        # The child renewed every LEASE/4, so its last lease outlived it by at least 3/4 LEASE.
        assert time.monotonic() - killed_at > LEASE * 0.5
        assert claimed.id == run.id
        assert (claimed.state, claimed.attempts, claimed.lease_owner) == (
            RunState.RUNNING,
            2,
            "rescuer",
        )
        assert claimed.started_at == held.started_at
    finally:
        await store.close()
