"""Webhook ingest at the hardware's pace: Honk beside a bare aiohttp + gidgethub baseline.

`python -m bench ingest` starts each server in its own process, fires the same signed
deliveries of events that start nothing at it from this process (`--concurrency` at a time,
over loopback), and prints deliveries/s, p50 and p99 for both, the ratios against the goal
(at least 0.9x the baseline's throughput, a p99 within 2x its p99), and how fast Honk's
dispatcher drained what was stored. Honk stores every delivery durably before its 2xx.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import typing
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.store import Store
from tests.conftest import WEBHOOK_SECRET, load_payload, sign

ROOT = Path(__file__).resolve().parents[1]
GOAL_THROUGHPUT = 0.9  # Honk's deliveries/s at least this share of the baseline's
GOAL_P99 = 2.0  # Honk's p99 at most this multiple of the baseline's
EVENTS = ("issues", "issue_comment", "ping", "star")


@dataclass
class Figures:
    name: str
    count: int
    seconds: float
    latencies: list[float]
    failures: int
    cpu: float = 0.0  # the server's CPU seconds during the run

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<42} {self.rate:>9,.0f}/s   p50 {self.percentile(0.5):6.1f} ms   "
            f"p99 {self.percentile(0.99):6.1f} ms   "
            f"server CPU {self.cpu / self.count * 1e6:5.0f} us/delivery   failed {self.failures}"
        )


def deliveries(count: int) -> list[tuple[str, bytes]]:
    """Real payloads of events no handler acts on, spread over many issues."""
    opened = load_payload("issues.opened.1")
    comment = load_payload("issue_comment.created.1")
    ping = load_payload("ping.1")
    made: list[tuple[str, bytes]] = []
    for n in range(count):
        event = EVENTS[n % len(EVENTS)]
        if event == "issues":
            payload = {**opened, "issue": {**opened["issue"], "number": n}}
        elif event == "issue_comment":
            body = {**comment["comment"], "body": f"thanks {n}", "id": n}
            payload = {**comment, "comment": body, "issue": {**comment["issue"], "number": n}}
        elif event == "ping":
            payload = ping
        else:
            payload = {"action": "created", "starred_at": None, "repository": opened["repository"]}
        payload = {k: v for k, v in payload.items() if k != "installation"}
        made.append((event, json.dumps(payload).encode()))
    return made


async def fire(url: str, items: list[tuple[str, bytes]], concurrency: int, name: str) -> Figures:
    """POST every delivery, `concurrency` at a time; the latency of each, the wall time."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while True:
                try:
                    event, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": sign(body),
                }
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status >= 300:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Figures(name, len(items), seconds, latencies, failures)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used (Linux /proc): robust under contention."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def server(argv: list[str], env: dict[str, str], port: int) -> AsyncIterator[int]:
    """A server process, until it answers on `port` (its pid); stopped at the end."""
    # A file, not a pipe: a pipe nobody reads could fill up and stall the server.
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=errors
        )
        try:
            await _until_listening(process, port, errors)
            yield process.pid
        finally:
            if process.returncode is None:
                process.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _until_listening(
    process: asyncio.subprocess.Process, port: int, errors: typing.IO[bytes]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        if process.returncode is not None or time.monotonic() > deadline:
            errors.seek(0)
            raise RuntimeError(f"the server did not start: {errors.read().decode()[-2000:]}")
        await asyncio.sleep(0.05)


def base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": str(ROOT),
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LOG_LEVEL": "WARNING",
    }


async def bare(items: list[tuple[str, bytes]], concurrency: int) -> Figures:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_server", str(port)]
    async with server(argv, base_env(), port) as pid:
        url = f"http://127.0.0.1:{port}/api/github/webhooks"
        await fire(url, items[:200], concurrency, "warm-up")
        before = cpu_seconds(pid)
        figures = await fire(url, items, concurrency, "bare aiohttp + gidgethub (stores nothing)")
        figures.cpu = cpu_seconds(pid) - before
        return figures


async def honk(
    items: list[tuple[str, bytes]], concurrency: int, data_dir: Path
) -> tuple[Figures, int, float]:
    """Honk's figures, the deliveries still pending when the load ended, and the drain time."""
    port = free_port()
    database = f"sqlite+aiosqlite:///{data_dir / 'honk.db'}"
    env = base_env() | {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "HONK_DATA_DIR": str(data_dir),
        "DATABASE_URL": database,
        "HONK_WORKERS": "0",
        "HONK_SANDBOX": "off",
        "LOG_FORMAT": "json",
    }
    argv = [sys.executable, "-m", "app", "--env-file", "", "serve"]
    async with server(argv, env, port) as pid:
        url = f"http://127.0.0.1:{port}/api/github/webhooks"
        await fire(url, items[:200], concurrency, "warm-up")
        before = cpu_seconds(pid)
        figures = await fire(url, items, concurrency, "Honk (stores durably, dispatches)")
        figures.cpu = cpu_seconds(pid) - before
        store = await Store.open(database, migrate=False)
        try:
            pending = await store.count_deliveries(pending=True)
            started = time.perf_counter()
            while await store.count_deliveries(pending=True):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
            drain = time.perf_counter() - started
            stored = await store.count_deliveries()
        finally:
            await store.close()
    if stored < len(items) + 200:
        raise RuntimeError(f"only {stored} of {len(items) + 200} deliveries were stored")
    return figures, pending, drain


async def main(*, count: int = 3000, concurrency: int = 64) -> None:
    items = deliveries(count)
    print(f"\n== ingest: {count} signed deliveries, {concurrency} at a time, over loopback ==")
    baseline = await bare(items, concurrency)
    with tempfile.TemporaryDirectory(prefix="honk-bench-ingest-") as tmp:
        honk_figures, pending, drain = await honk(items, concurrency, Path(tmp))
    print(baseline.line())
    print(honk_figures.line())
    throughput = honk_figures.rate / baseline.rate
    p99 = honk_figures.percentile(0.99) / baseline.percentile(0.99)
    verdict = "met" if throughput >= GOAL_THROUGHPUT and p99 <= GOAL_P99 else "NOT met"
    print(
        f"ratios: throughput {throughput:.2f}x (goal >= {GOAL_THROUGHPUT}x), "
        f"p99 {p99:.2f}x (goal <= {GOAL_P99}x): goal {verdict}"
    )
    drained = pending / drain if drain > 0 else float("inf")
    print(
        f"dispatch: {pending} deliveries pending when the load ended, drained in {drain:.2f} s"
        + (f" ({drained:,.0f}/s)" if pending else " (kept pace with ingest)")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    arguments = parser.parse_args()
    asyncio.run(main(count=arguments.count, concurrency=arguments.concurrency))
