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


def deliveries(count: int, first: int = 0) -> list[tuple[str, bytes]]:
    """Real payloads of events no handler acts on, spread over many issues; each body differs
    from every other of `first` .. `first + count` (a body seen before is a replay to Honk)."""
    opened = load_payload("issues.opened.1")
    comment = load_payload("issue_comment.created.1")
    ping = load_payload("ping.1")
    made: list[tuple[str, bytes]] = []
    for n in range(first, first + count):
        event = EVENTS[n % len(EVENTS)]
        if event == "issues":
            payload = {**opened, "issue": {**opened["issue"], "number": n}}
        elif event == "issue_comment":
            body = {**comment["comment"], "body": f"thanks {n}", "id": n}
            payload = {**comment, "comment": body, "issue": {**comment["issue"], "number": n}}
        elif event == "ping":
            payload = {**ping, "zen": f"{ping['zen']} ({n})"}
        else:
            starred = f"2026-12-07T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"
            payload = {"action": "created", "starred_at": starred,
                       "repository": opened["repository"]}  # fmt: skip
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


def honk_env(port: int, data_dir: Path) -> dict[str, str]:
    return base_env() | {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "HONK_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url(data_dir),
        "HONK_WORKERS": "0",
        "HONK_SANDBOX": "off",
        "LOG_FORMAT": "json",
    }


def database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'honk.db'}"


async def measure(url: str, pid: int, items: list[tuple[str, bytes]], c: int, name: str) -> Figures:
    before = cpu_seconds(pid)
    figures = await fire(url, items, c, name)
    figures.cpu = cpu_seconds(pid) - before
    return figures


async def drained(data_dir: Path, expected: int) -> tuple[int, float]:
    """Deliveries still pending when the load ended, and how long the dispatcher took."""
    store = await Store.open(database_url(data_dir), migrate=False)
    try:
        pending = await store.inbox.count(pending=True)
        started = time.perf_counter()
        while await store.inbox.count(pending=True):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)
        drain = time.perf_counter() - started
        stored = await store.inbox.count()
    finally:
        await store.close()
    if stored < expected:
        raise RuntimeError(f"only {stored} of {expected} deliveries were stored")
    return pending, drain


def median(figures: list[Figures]) -> Figures:
    return sorted(figures, key=lambda f: f.rate)[len(figures) // 2]


async def main(*, count: int = 3000, concurrency: int = 64, rounds: int = 3) -> None:
    """Both servers run side by side; the rounds alternate between them, the median counts."""
    # Each round (and the warm-up) sends bodies of its own, the two servers the same ones.
    warm_up = deliveries(200, first=count * rounds)
    batches = [deliveries(count, first=n * count) for n in range(rounds)]
    print(
        f"\n== ingest: {count} signed deliveries, {concurrency} at a time, over loopback; "
        f"{rounds} rounds each, alternating ==",
        flush=True,
    )
    bare_port, honk_port = free_port(), free_port()
    bare_argv = [sys.executable, "-m", "bench.bare_server", str(bare_port)]
    honk_argv = [sys.executable, "-m", "app", "--env-file", "", "serve"]
    path = "/api/github/webhooks"
    bare_url, honk_url = (f"http://127.0.0.1:{p}{path}" for p in (bare_port, honk_port))
    with tempfile.TemporaryDirectory(prefix="honk-bench-ingest-") as tmp:
        data_dir = Path(tmp)
        async with (
            server(bare_argv, base_env(), bare_port) as bare_pid,
            server(honk_argv, honk_env(honk_port, data_dir), honk_port) as honk_pid,
        ):
            await fire(bare_url, warm_up, concurrency, "warm-up")
            await fire(honk_url, warm_up, concurrency, "warm-up")
            bare_runs: list[Figures] = []
            honk_runs: list[Figures] = []
            for n in range(rounds):
                name = f"bare aiohttp + gidgethub, round {n + 1}"
                items = batches[n]
                bare_runs.append(await measure(bare_url, bare_pid, items, concurrency, name))
                name = f"Honk (stores durably, dispatches), round {n + 1}"
                honk_runs.append(await measure(honk_url, honk_pid, items, concurrency, name))
                print(bare_runs[-1].line(), honk_runs[-1].line(), sep="\n", flush=True)
            pending, drain = await drained(data_dir, 200 + count * rounds)
    baseline, honk_figures = median(bare_runs), median(honk_runs)
    baseline.name = "bare aiohttp + gidgethub (median round)"
    honk_figures.name = "Honk (median round)"
    print(baseline.line())
    print(honk_figures.line())
    throughput = honk_figures.rate / baseline.rate
    p99 = honk_figures.percentile(0.99) / baseline.percentile(0.99)
    verdict = "met" if throughput >= GOAL_THROUGHPUT and p99 <= GOAL_P99 else "NOT met"
    print(
        f"ratios: throughput {throughput:.2f}x (goal >= {GOAL_THROUGHPUT}x), "
        f"p99 {p99:.2f}x (goal <= {GOAL_P99}x): goal {verdict}"
    )
    drained_rate = pending / drain if drain > 0 else float("inf")
    print(
        f"dispatch: {pending} deliveries pending when the load ended, drained in {drain:.2f} s"
        + (f" ({drained_rate:,.0f}/s)" if pending else " (kept pace with ingest)")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(
        main(count=arguments.count, concurrency=arguments.concurrency, rounds=arguments.rounds)
    )
