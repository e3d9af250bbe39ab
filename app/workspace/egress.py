"""The sandbox's one way out: Honk's egress proxy for a phase, and how a sandbox reaches it.

The sandbox always has a network namespace of its own (loopback only). When a phase's
policy allows any host, Honk starts the proxy (`egress_proxy`) in a process of its own,
from a clean environment, listening on a UNIX socket in a private directory; the sandbox
gets that socket bound in and socat, inside, exposes it as 127.0.0.1:3128, where the
standard proxy variables point. The proxy stops when the phase ends.

How a sandbox reaches it is egress_reach's; the phase's summary, egress_summary's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from app import metrics
from app.errors import HonkError
from app.network_policy import ANY, Cap, Entry, Rule, is_preset_name, parse_rule
from app.workspace.egress_config import ProxyConfig, Record
from app.workspace.egress_reach import SandboxProxy, no_proxy
from app.workspace.egress_summary import KEPT_RECORDS, NetworkSummary

log = logging.getLogger(__name__)

START_SECONDS = 15.0
STOP_SECONDS = 5.0
# One record line from the proxy: its records are bounded far below this; a longer line is
# read past, counted as one unreadable record.
RECORD_LINE_LIMIT = 64 * 1024
_PROXY_SCRIPT = Path(__file__).with_name("egress_proxy.py")
# What the proxy imports of Honk, in the order they import each other: (name, path).
_PROXY_MODULES = (
    ("app.network_policy", Path(__file__).parents[1] / "network_policy.py"),
    ("app.workspace.egress_wire", Path(__file__).with_name("egress_wire.py")),
    ("app.workspace.egress_config", Path(__file__).with_name("egress_config.py")),
    ("app.workspace.egress_streams", Path(__file__).with_name("egress_streams.py")),
)
# Loads those modules by path, then the proxy, so the proxy process imports nothing else of
# Honk's (not even app.workspace's package, which reaches the settings); argv: the modules'
# names and paths in pairs, the proxy's path, the socket's.
_BOOT = """
import importlib.util, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
while len(sys.argv) > 3:
    load(sys.argv.pop(1), sys.argv.pop(1))
load("honk_egress_proxy", sys.argv.pop(1)).main()
"""


class EgressUnavailable(HonkError, RuntimeError):
    """The proxy (or socat, which the sandbox reaches it through) cannot start here."""


@dataclass
class EgressProxy:
    """One running proxy process and the connections it has reported."""

    phase: str
    directory: Path
    process: asyncio.subprocess.Process
    sandbox: SandboxProxy
    records: list[Record] = field(default_factory=list)
    uncounted: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    malformed: int = 0
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
                *(str(part) for module in _PROXY_MODULES for part in module),
                str(_PROXY_SCRIPT), str(socket_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=RECORD_LINE_LIMIT,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # nothing of Honk's
                cwd=directory,
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, directory, True)
            raise
        proxy = cls(phase, directory, process, SandboxProxy(socket_path, no_proxy(config.rules)))
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
        """One record per line until the proxy's stdout ends. A line that is too long or no
        record is counted as one unreadable record, and reading goes on."""
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    self._take(exc.partial)
                return
            except asyncio.LimitOverrunError as exc:
                self._unreadable("a line longer than the reader's buffer")
                try:
                    await _skip_line(stdout, exc.consumed)
                except asyncio.IncompleteReadError:
                    return
                continue
            self._take(line)

    def _take(self, line: bytes) -> None:
        try:
            data = json.loads(line)
            if len(line) > RECORD_LINE_LIMIT or not isinstance(data, dict):
                raise ValueError("not a record")
            record = Record(**data)
            if not _well_typed(record):
                raise ValueError("not a record")
        except (ValueError, TypeError):
            self._unreadable(f"{len(line)} bytes that are no record")
            return
        if len(self.records) < KEPT_RECORDS:
            self.records.append(record)
        else:  # a flood: counted, not kept
            self.uncounted[0 if record.allowed else 1] += 1
            self.uncounted[2] += record.down
            self.uncounted[3] += record.up
        outcome = "allowed" if record.allowed else "refused"
        metrics.sandbox_connections.labels(self.phase, outcome).inc()

    def _unreadable(self, what: str) -> None:
        self.malformed += 1
        log.warning("the %s phase's network proxy wrote an unreadable record: %s", self.phase, what)

    async def _read_errors(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while chunk := await stderr.read(4096):
            self._errors += chunk
            del self._errors[:-4096]

    async def stop(self) -> NetworkSummary:
        """Stop the process (open connections get a moment to end) and sum up.

        Never raises: whatever went wrong on the way, the process is gone, its directory
        removed, and the summary holds what was read.
        """
        try:
            await self._end_process()
        except Exception as exc:
            log.warning("stopping the %s phase's network proxy: %r", self.phase, exc)
        finally:
            for task in self._tasks:
                try:
                    await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
                except Exception as exc:  # the reader's own failure: the summary goes on
                    log.warning("the %s phase's proxy reader failed: %r", self.phase, exc)
                task.cancel()
            await asyncio.to_thread(shutil.rmtree, self.directory, True)
        more = self.uncounted
        return NetworkSummary(
            self.phase, tuple(self.records), (more[0], more[1], more[2], more[3]), self.malformed
        )

    async def _end_process(self) -> None:
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


def _well_typed(record: Record) -> bool:
    """Each field of the type its default has (a bool where a bool belongs, text for text)."""
    for item in fields(Record):
        value, default = getattr(record, item.name), item.default
        if item.name == "host":
            default = ""
        kinds = (int, float) if isinstance(default, float) else (type(default),)
        if not isinstance(value, kinds) or (isinstance(value, bool) != isinstance(default, bool)):
            return False
    return True


async def _skip_line(stream: asyncio.StreamReader, consumed: int) -> None:
    """Read past the rest of an over-long line (its newline included)."""
    await stream.readexactly(consumed)
    while True:
        try:
            await stream.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await stream.readexactly(exc.consumed)


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
