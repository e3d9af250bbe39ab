"""The sandbox's one way out: Honk's egress proxy for a phase, and how a sandbox reaches it.

The sandbox always has a network namespace of its own (loopback only). When a phase's
policy allows any host, Honk starts the proxy (`egress_proxy`) in a process of its own,
from a clean environment, listening on a UNIX socket in a private directory; the sandbox
gets that socket bound in and socat, inside, exposes it as 127.0.0.1:3128, where the
standard proxy variables point. The proxy stops when the phase ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app import metrics
from app.network_policy import ANY, Cap, Entry, Rule, is_preset_name, parse_rule
from app.workspace.egress_proxy import ProxyConfig, Record

PROXY_PORT = 3128  # inside the sandbox's own network namespace: clashes with nothing outside
INSIDE_SOCKET = "/run/honk-egress.sock"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
START_SECONDS = 15.0
STOP_SECONDS = 5.0
SHOWN_HOSTS = 6  # hosts named in a summary before "and N more"
KEPT_RECORDS = 10_000  # per phase; past it, connections are only counted
_PROXY_SCRIPT = Path(__file__).with_name("egress_proxy.py")
_WIRE_MODULE = Path(__file__).with_name("egress_wire.py")
_POLICY_MODULE = Path(__file__).parents[1] / "network_policy.py"
# Loads the three modules by path, so the proxy process imports nothing else of Honk's (not
# even app.workspace's package, which reaches the settings); argv: policy, wire, proxy, socket.
_BOOT = """
import importlib.util, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
load("app.network_policy", sys.argv.pop(1))
load("app.workspace.egress_wire", sys.argv.pop(1))
load("honk_egress_proxy", sys.argv.pop(1)).main()
"""


class EgressUnavailable(RuntimeError):
    """The proxy (or socat, which the sandbox reaches it through) cannot start here."""


@dataclass(frozen=True)
class SandboxProxy:
    """What a sandboxed command needs to use a running proxy: a bind, socat, variables."""

    socket_path: Path
    no_proxy: tuple[str, ...] = LOOPBACK_NAMES

    def bwrap_args(self) -> list[str]:
        args = ["--ro-bind", str(self.socket_path), INSIDE_SOCKET]
        for key, value in self.env().items():
            args += ["--setenv", key, value]
        return args

    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{PROXY_PORT}"
        env: dict[str, str] = {}
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            env[name] = env[name.upper()] = url
        env["no_proxy"] = env["NO_PROXY"] = ",".join(self.no_proxy)
        return env

    def forwarder(self) -> str:
        """Shell that starts socat in the background and waits (without connecting, which
        the proxy would record) until it listens."""
        port = f"{PROXY_PORT:04X}"
        return (
            f"socat -b 262144 TCP-LISTEN:{PROXY_PORT},bind=127.0.0.1,reuseaddr,fork "
            f"UNIX-CONNECT:{INSIDE_SOCKET} </dev/null >/dev/null 2>&1 & "
            "for _ in $(seq 400); do while read -r _ a _ s _; do "
            f'[ "$a $s" = "0100007F:{port} 0A" ] && break 2; done </proc/net/tcp; '
            "sleep 0.005; done; "
        )


@dataclass(frozen=True)
class NetworkSummary:
    """One phase's connections, for the tracking comment and the run's records."""

    phase: str  # "setup" or "agent"
    records: tuple[Record, ...] = ()
    # Past KEPT_RECORDS: (allowed, refused, bytes down, bytes up) of the connections not kept.
    uncounted: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def allowed(self) -> list[Record]:
        return [r for r in self.records if r.allowed]

    @property
    def refused(self) -> list[Record]:
        return [r for r in self.records if not r.allowed]

    def describe(self) -> str:
        """e.g. "14 requests to pypi.org, files.pythonhosted.org (9.1 MB down, 52 kB up);
        1 refused: evil.example"."""
        allowed, refused = self.allowed, self.refused
        more_allowed, more_refused, more_down, more_up = self.uncounted
        if not self.records:
            return "no requests"
        parts = []
        if allowed:
            down = sum(r.down for r in allowed) + more_down
            up = sum(r.up for r in allowed) + more_up
            count = _count(len(allowed) + more_allowed, "request")
            hosts = _names(_target(r) for r in allowed)
            parts.append(f"{count} to {hosts} ({_size(down)} down, {_size(up)} up)")
        if refused:
            count = str(len(refused) + more_refused)
            parts.append(f"{count} refused: {_names(_target(r) for r in refused)}")
        return "; ".join(parts)


@dataclass
class EgressProxy:
    """One running proxy process and the connections it has reported."""

    phase: str
    directory: Path
    process: asyncio.subprocess.Process
    sandbox: SandboxProxy
    records: list[Record] = field(default_factory=list)
    uncounted: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _errors: bytearray = field(default_factory=bytearray)

    @classmethod
    async def start(cls, config: ProxyConfig, *, phase: str) -> EgressProxy:
        """A proxy for `config`'s rules, ready when this returns."""
        if shutil.which("socat") is None:
            raise EgressUnavailable(
                "socat is not installed: the sandbox reaches Honk's network proxy through it "
                "(Debian/Ubuntu: apt-get install socat)"
            )
        directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="honk-egress-"))
        socket_path = directory / "proxy.sock"
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-c", _BOOT,
                str(_POLICY_MODULE), str(_WIRE_MODULE), str(_PROXY_SCRIPT), str(socket_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # nothing of Honk's
                cwd=directory,
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        proxy = cls(phase, directory, process, SandboxProxy(socket_path, _no_proxy(config.rules)))
        try:
            await proxy._handshake(config)
        except BaseException:
            await proxy.stop()
            raise
        metrics.egress_proxies.labels(phase).inc()
        return proxy

    async def _handshake(self, config: ProxyConfig) -> None:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        self._tasks.append(asyncio.create_task(self._read_errors()))
        # One line; stdin then stays open: the proxy stops when it ends, Honk's death included.
        stdin.write(config.to_json().encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await stdin.drain()
        try:
            line = await asyncio.wait_for(stdout.readline(), START_SECONDS)
        except TimeoutError:
            line = b""
        if line != b"ready\n":
            await asyncio.sleep(0.1)  # its last words, if it died
            said = self._errors.decode(errors="replace").strip().splitlines()[-3:]
            raise EgressUnavailable(f"Honk's network proxy did not start: {' '.join(said)}")
        self._tasks.append(asyncio.create_task(self._read_records()))

    async def _read_records(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            with contextlib.suppress(ValueError, TypeError):
                record = Record(**json.loads(line))
                if len(self.records) < KEPT_RECORDS:
                    self.records.append(record)
                else:  # a flood: counted, not kept
                    self.uncounted[0 if record.allowed else 1] += 1
                    self.uncounted[2] += record.down
                    self.uncounted[3] += record.up
                outcome = "allowed" if record.allowed else "refused"
                metrics.sandbox_connections.labels(self.phase, outcome).inc()

    async def _read_errors(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self._errors += chunk
            del self._errors[:-4096]

    async def stop(self) -> NetworkSummary:
        """Stop the process (open connections get a moment to end) and sum up."""
        process = self.process
        if process.stdin is not None:
            process.stdin.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.shield(process.wait())
        for task in self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
            task.cancel()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)
        more = self.uncounted
        return NetworkSummary(self.phase, tuple(self.records), (more[0], more[1], more[2], more[3]))


def proxy_config(
    rules: Sequence[Rule],
    *,
    setting: str,
    cap: Cap,
    static_hosts: dict[str, list[str]] | None = None,
) -> ProxyConfig:
    """What the proxy process is told: the phase's rules, and what the cap would allow (so a
    refusal can say which setting to change)."""
    advice: list[tuple[str, tuple[Entry, ...]]] = []
    for item in cap.items or ():
        if item != ANY and not is_preset_name(item):
            advice.append(("", (parse_rule(item, operator=True).entry,)))
    presets = {name: [r.entry for r in cap.presets.rules(name)] for name in cap.presets.items}
    for name in sorted(presets, key=lambda n: len(presets[n])):
        if cap.allows(name):
            advice.append((name, tuple(presets[name])))
    return ProxyConfig(
        rules=tuple(rules),
        setting=setting,
        cap_any=cap.items is not None and ANY in cap.items,
        cap=tuple(advice),
        static_hosts=dict(static_hosts or {}),
    )


@contextlib.asynccontextmanager
async def phase_proxy(
    config: ProxyConfig, *, phase: str, summaries: list[NetworkSummary]
) -> AsyncIterator[SandboxProxy | None]:
    """A proxy for the phase, or None (and no process at all) when its rules allow nothing.

    The phase's summary is appended to `summaries` however the phase ends.
    """
    if not config.rules:
        yield None
        return
    proxy = await EgressProxy.start(config, phase=phase)
    try:
        yield proxy.sandbox
    finally:
        summaries.append(await asyncio.shield(proxy.stop()))


def _no_proxy(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The sandbox's own loopback goes direct, unless the rules name that name (the host's
    `localhost:8080` mirror is reached through the proxy then)."""
    named = {rule.entry.host for rule in rules}
    return tuple(name for name in LOOPBACK_NAMES if name not in named)


def _target(record: Record) -> str:
    if record.port in (0, 80, 443):
        return record.host
    host = f"[{record.host}]" if ":" in record.host else record.host
    return f"{host}:{record.port}"


def _names(targets: object) -> str:
    distinct = list(dict.fromkeys(targets))  # type: ignore[call-overload]
    shown = ", ".join(distinct[:SHOWN_HOSTS])
    more = len(distinct) - SHOWN_HOSTS
    return f"{shown} and {more} more" if more > 0 else shown


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _size(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"
