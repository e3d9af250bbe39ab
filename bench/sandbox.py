"""What one sandboxed command costs: Honk's sandbox (mounts, limits, watch) vs bare processes.

Baselines measured in the same run: `bash -c true` started directly, and bwrap with one
read-only bind of / (no allowlist, no limits, no watch).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from app.network_policy import Entry, Rule
from app.workspace.command_env import sandbox_env
from app.workspace.egress import EgressProxy
from app.workspace.egress_config import ProxyConfig
from app.workspace.sandbox import Sandbox


async def _spawn(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, env=sandbox_env())
    await proc.wait()


async def _median(work, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(quick: bool = False) -> None:
    rounds = 10 if quick else 40
    bwrap = shutil.which("bwrap")
    with tempfile.TemporaryDirectory(prefix="honk-bench-sandbox-") as tmp:
        root = Path(tmp) / "widgets"
        root.mkdir()
        sandbox = Sandbox(root)
        await sandbox.run("true")  # first use finds the pids cgroup
        plain = await _median(lambda: _spawn("bash", "-c", "true"), rounds)
        bare = (
            await _median(
                lambda: _spawn(bwrap, "--ro-bind", "/", "/", "--unshare-all", "bash", "-c", "true"),
                rounds,
            )
            if bwrap
            else float("nan")
        )
        honk = await _median(lambda: sandbox.run("true"), rounds)
        config = ProxyConfig((Rule(Entry("pypi.org")),), setting="network")
        proxy = await EgressProxy.start(config, phase="bench")
        try:
            sandbox.proxy = proxy.sandbox
            proxied = await _median(lambda: sandbox.run("true"), rounds)
        finally:
            await proxy.stop()
    print(f"sandbox benchmark: median of {rounds} runs of `true`")
    print(f"  bash, unsandboxed        {plain * 1000:7.1f} ms")
    print(f"  bare bwrap (ro /)        {bare * 1000:7.1f} ms")
    print(f"  Honk's sandbox           {honk * 1000:7.1f} ms (allowlist, limits, watch)")
    print(f"  ... with the net proxy   {proxied * 1000:7.1f} ms (socat started inside, listening)")


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
