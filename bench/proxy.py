"""The sandbox's egress proxy: Honk's own relay vs proxy.py, beside a direct connection.

Every path is the one a sandboxed command takes: curl -> socat (TCP to the UNIX socket, as
inside the sandbox) -> the proxy -> a loopback origin server in a process of its own. Per
contender: a 50 MB download through a CONNECT tunnel (HTTPS's way) and as a forwarded plain
HTTP request, the time to set up a connection (a fresh connection, tunnel and a tiny
request, repeated), the proxy's start-up time and its memory. Baselines in the same run:
direct, and socat alone forwarding to the origin (the hop both contenders share).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from app.network_policy import Entry, Rule
from app.workspace.egress import EgressProxy, proxy_config
from app.workspace.egress_config import ProxyConfig

SIZE = 50 * 1000 * 1000
ROOT = Path(__file__).resolve().parents[1]
_ORIGIN = """
import http.server, sys
BIG = b"x" * int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = BIG if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass
class Figures:
    name: str
    tunnel_mb_s: float = float("nan")
    forward_mb_s: float = float("nan")
    setup_p50_ms: float = float("nan")
    setup_p95_ms: float = float("nan")
    start_ms: float = float("nan")
    rss_mb: float = float("nan")


async def _process(*argv: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env or {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=ROOT,
        start_new_session=True,
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    await proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _socat(target: str) -> AsyncIterator[int]:
    """A TCP port on 127.0.0.1 forwarding to `target` (socat's address), as in the sandbox."""
    port = _free_port()
    proc = await _process(
        "socat", "-b", "262144", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", target
    )
    await _until_listening(("127.0.0.1", port))
    try:
        yield port
    finally:
        await _stop(proc)


async def _until_listening(address: tuple[str, int] | str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if isinstance(address, str):
                _, writer = await asyncio.open_unix_connection(address)
            else:
                _, writer = await asyncio.open_connection(*address)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)


async def _curl(url: str, proxy_port: int | None, tunnel: bool, rounds: int) -> float:
    """The best download speed of `rounds` tries, MB/s."""
    best = 0.0
    for _ in range(rounds):
        argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download}", "--noproxy", ""]
        if proxy_port is not None:
            argv += ["--proxy", f"http://127.0.0.1:{proxy_port}"] + (["-p"] if tunnel else [])
        proc = await _process(*argv, url)
        out, _ = await proc.communicate()
        best = max(best, float(out or 0) / 1e6)
    return best


async def _setup_times(origin: int, proxy_port: int | None, rounds: int) -> list[float]:
    """A fresh connection each time: the tunnel (if proxied) and a tiny GET, to EOF."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port or origin)
        if proxy_port is not None:
            writer.write(f"CONNECT localhost:{origin} HTTP/1.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        body = await reader.read()
        assert body.endswith(b"ok"), body
        writer.close()
        times.append(time.perf_counter() - started)
    return times


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total / 1e6


async def _measure(
    figures: Figures, origin: int, proxy_port: int | None, rounds: int, setups: int
) -> None:
    big = f"http://localhost:{origin}/big"
    if proxy_port is None:
        figures.tunnel_mb_s = figures.forward_mb_s = await _curl(big, None, False, rounds)
    else:
        figures.tunnel_mb_s = await _curl(big, proxy_port, True, rounds)
        figures.forward_mb_s = await _curl(big, proxy_port, False, rounds)
    times = sorted(await _setup_times(origin, proxy_port, setups))
    figures.setup_p50_ms = statistics.median(times) * 1000
    figures.setup_p95_ms = times[int(len(times) * 0.95) - 1] * 1000


async def _honk(origin: int, rounds: int, setups: int) -> Figures:
    figures = Figures("Honk's relay (asyncio)")
    rule = Rule(Entry("localhost", origin), private_ok=True, plain_ok=True)  # plain tunnels
    config: ProxyConfig = proxy_config([rule], setting="network", cap=_no_cap())
    started = time.perf_counter()
    proxy = await EgressProxy.start(config, phase="bench")
    figures.start_ms = (time.perf_counter() - started) * 1000
    try:
        async with _socat(f"UNIX-CONNECT:{proxy.sandbox.socket_path}") as port:
            await _measure(figures, origin, port, rounds, setups)
            figures.rss_mb = _rss_mb(proxy.process.pid)
    finally:
        summary = await proxy.stop()
    assert summary.allowed, "the relay recorded no connection"
    return figures


async def _proxy_py(origin: int, rounds: int, setups: int, big_buffers: bool) -> Figures:
    buffers = "1 MiB buffers" if big_buffers else "default buffers"
    figures = Figures(f"proxy.py 2.4 ({buffers})")
    with tempfile.TemporaryDirectory(prefix="honk-bench-proxy-") as tmp:
        sock = f"{tmp}/proxy.sock"
        argv = [sys.executable, "-m", "proxy", "--unix-socket-path", sock, "--threadless"]
        argv += ["--num-acceptors", "1", "--log-level", "WARNING"]
        argv += ["--plugins", "bench.proxy_py_plugin.Policy"]
        if big_buffers:
            argv += ["--server-recvbuf-size", "1048576", "--client-recvbuf-size", "1048576"]
        rules = f'[[{{"host": "localhost", "port": {origin}, "wildcard": false}}, true]]'
        env = {"PATH": "/usr/bin:/bin", "HONK_BENCH_PROXY_RULES": rules, "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        proc = await _process(*argv, env=env)
        try:
            await _until_listening(sock)
            figures.start_ms = (time.perf_counter() - started) * 1000
            async with _socat(f"UNIX-CONNECT:{sock}") as port:
                await _measure(figures, origin, port, rounds, setups)
                figures.rss_mb = _rss_mb(proc.pid)
        finally:
            await _stop(proc)
    return figures


def _no_cap():  # type: ignore[no-untyped-def]
    from app.network_policy import Cap, Presets

    return Cap((), Presets.with_overrides({}))


def _have_proxy_py() -> bool:
    try:
        import proxy  # noqa: F401
    except ImportError:
        return False
    return True


async def main(quick: bool = False) -> None:
    if shutil.which("socat") is None or shutil.which("curl") is None:
        print("proxy benchmark: needs socat and curl")
        return
    rounds, setups = (1, 20) if quick else (3, 100)
    origin_proc = await _process(sys.executable, "-c", _ORIGIN, str(SIZE))
    assert origin_proc.stdout is not None
    origin = int(await origin_proc.stdout.readline())
    results = []
    try:
        direct = Figures("direct (no proxy)")
        await _measure(direct, origin, None, rounds, setups)
        results.append(direct)
        hop = Figures("socat hop alone")
        async with _socat(f"TCP:127.0.0.1:{origin}") as port:
            hop.tunnel_mb_s = hop.forward_mb_s = await _curl(
                f"http://localhost:{port}/big", None, False, rounds
            )
        results.append(hop)
        results.append(await _honk(origin, rounds, setups))
        if _have_proxy_py():
            results.append(await _proxy_py(origin, rounds, setups, big_buffers=False))
            results.append(await _proxy_py(origin, rounds, setups, big_buffers=True))
        else:
            print("  (proxy.py is not installed: pip install 'proxy.py' to compare with it)")
    finally:
        await _stop(origin_proc)
    print(
        f"proxy benchmark: {SIZE // 1_000_000} MB download (best of {rounds}), "
        f"connection set-up (CONNECT + tiny GET, {setups} times)"
    )
    print(
        f"  {'':32} {'tunnel':>9} {'forward':>9} {'set-up p50':>11} {'p95':>8}"
        f" {'start':>8} {'memory':>8}"
    )
    for f in results:
        print(
            f"  {f.name:32} {f.tunnel_mb_s:4.0f} MB/s {f.forward_mb_s:4.0f} MB/s"
            f" {f.setup_p50_ms:8.2f} ms {f.setup_p95_ms:5.2f} ms"
            f" {f.start_ms:5.0f} ms {f.rss_mb:5.0f} MB"
        )


if __name__ == "__main__":
    asyncio.run(main(quick="--quick" in sys.argv))
