"""The egress proxy: one process per sandbox phase, on a UNIX socket bound into the sandbox.

HTTPS goes through `CONNECT host:port` (a tunnel by host name: no TLS interception), plain
HTTP as absolute-form requests, forwarded with `Connection: close`. Only hosts the phase's
rules allow; every name is resolved once, each address vetted, and the connection made to
that very address (no DNS rebinding). Every connection is reported on stdout as one JSON line.

Run by `app.workspace.egress` from a clean environment, this module and `app.network_policy`
are all it loads of Honk: it never sees Honk's settings or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.network_policy import Entry, Rule, address_problem, match, request_host

HEAD_LIMIT = 256 * 1024  # the request line and headers; also the stream buffers' size
HEAD_SECONDS = 30.0
CONNECT_SECONDS = 10.0
CHUNK = 256 * 1024
# After the server has finished, how long the client may still send before the tunnel closes.
LINGER_SECONDS = 5.0
STOP_GRACE_SECONDS = 1.0
MAX_CONNECTIONS = 256  # at once; more get a 503 (the sandbox's processes are capped too)
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
}

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class ProxyConfig:
    """What the proxy process is told (on stdin): nothing secret."""

    rules: tuple[Rule, ...]
    setting: str  # the .github/honk.yml setting that would allow a refused host
    cap_any: bool = False  # the operator lets repositories name any host
    # What the operator lets repositories name, for a refusal's advice: (a preset's name, or
    # "" for a host entry, and the entries it allows), smallest first.
    cap: tuple[tuple[str, tuple[Entry, ...]], ...] = ()
    # Test-only: names resolved from this table instead of the system's resolver.
    static_hosts: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "rules": [[asdict(r.entry), r.private_ok] for r in self.rules],
                "setting": self.setting,
                "cap_any": self.cap_any,
                "cap": [[name, [asdict(e) for e in entries]] for name, entries in self.cap],
                "static_hosts": self.static_hosts,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ProxyConfig:
        data = json.loads(text)
        return cls(
            rules=tuple(Rule(Entry(**e), bool(ok)) for e, ok in data["rules"]),
            setting=data["setting"],
            cap_any=bool(data["cap_any"]),
            cap=tuple((name, tuple(Entry(**e) for e in entries)) for name, entries in data["cap"]),
            static_hosts={k: list(v) for k, v in data.get("static_hosts", {}).items()},
        )

    def advice(self, target: str, host: str, port: int) -> str | None:
        """What a repository could add to reach `host:port`; None if the cap allows nothing."""
        for name, entries in self.cap:
            if any(e.matches(host, port) for e in entries):
                return f"the preset `{name}`" if name else target
        return target if self.cap_any else None


@dataclass
class Record:
    """One connection as the proxy saw it."""

    host: str
    port: int = 0
    method: str = ""
    allowed: bool = False
    reason: str = ""  # why it was refused or failed
    address: str = ""  # the vetted address it connected to
    up: int = 0  # bytes from the sandbox
    down: int = 0  # bytes to the sandbox
    seconds: float = 0.0


class Refused(Exception):
    def __init__(self, status: int, title: str, body: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.title, self.body, self.reason = status, title, body, reason


class EgressRelay:
    """Decides and relays each connection; `emit` gets its record when it ends."""

    def __init__(
        self,
        config: ProxyConfig,
        emit: Callable[[Record], None],
        resolver: Resolver | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.resolver = resolver or _system_resolver

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        record: Record | None = None
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    record = Record("(malformed)", reason="the request ended early")
                return
            except (asyncio.LimitOverrunError, TimeoutError, ValueError):
                record = Record("(malformed)", reason="no complete request head")
                await _reply(writer, 400, "Bad Request", "Honk's proxy: no request head.\n")
                return
            try:
                method, host, port, forward = self._parse(head)
            except Refused as refusal:
                record = Record("(malformed)", reason=refusal.reason)
                await _reply(writer, refusal.status, refusal.title, refusal.body)
                return
            record = Record(host, port, method)
            try:
                upstream_reader, upstream = await self._connect(host, port, record)
            except Refused as refusal:
                record.reason = refusal.reason
                await _reply(writer, refusal.status, refusal.title, refusal.body)
                return
            record.allowed = True
            if forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.write(forward)
                record.up += len(forward)
            await _relay(reader, writer, upstream_reader, upstream, record)
        except (ConnectionError, OSError) as exc:
            if record is not None and not record.reason:
                record.reason = f"connection lost ({type(exc).__name__})"
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
            if record is not None:
                record.seconds = round(time.monotonic() - started, 3)
                self.emit(record)

    def _parse(self, head: bytes) -> tuple[str, str, int, bytes | None]:
        """(method, host, port, the request to forward, None for a tunnel)."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _bad("not an HTTP/1 request line")
        method, target, version = parts
        if method == "CONNECT":
            host_text, _, port_text = target.rpartition(":")
            return method, *self._target(host_text, port_text), None
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise _bad("plain HTTP requests name an absolute http:// URL; HTTPS uses CONNECT")
        try:
            url_port = url.port
        except ValueError:
            raise _bad("not a valid port") from None
        host, port = self._target(url.hostname, str(url_port or 80))
        path = url.path or "/"
        path += f"?{url.query}" if url.query else ""
        headers = [line for line in lines[1:] if line]
        dropped = _HOP_BY_HOP | {"host"} | _connection_tokens(headers)
        kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in dropped]
        authority = url.netloc.rpartition("@")[2]
        request = [f"{method} {path} {version}", f"Host: {authority}", *kept, "Connection: close"]
        return method, host, port, ("\r\n".join(request) + "\r\n\r\n").encode("latin-1")

    def _target(self, host_text: str, port_text: str) -> tuple[str, int]:
        named = request_host(host_text)
        if named is None or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _bad(f"{host_text}:{port_text} is not a host and port")
        return named[0], int(port_text)

    async def _connect(
        self, host: str, port: int, record: Record
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The upstream connection, made only to an address the rules allow."""
        config = self.config
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        literal = request_host(host)
        is_literal = literal is not None and literal[1]
        rule = match(config.rules, host, port)
        if rule is None or (is_literal and not rule.entry.exact):
            raise self._not_listed(target, is_literal, host, port)
        if is_literal:
            addresses = [host]
        else:
            try:
                addresses = await self._resolve(host, port)
            except OSError as exc:
                raise Refused(
                    502, "Bad Gateway", f"Honk's proxy cannot resolve {host}: {exc}.\n",
                    f"cannot resolve: {exc}",
                ) from None  # fmt: skip
        if not rule.private_ok:
            for address in addresses:
                problem = address_problem(address)
                if problem:
                    raise _private(target, host, address, problem)
        failures: list[str] = []
        for address in addresses:
            try:
                opened = await asyncio.wait_for(
                    asyncio.open_connection(address, port, limit=HEAD_LIMIT), CONNECT_SECONDS
                )
            except (OSError, TimeoutError) as exc:
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            record.address = address
            return opened
        raise Refused(
            502, "Bad Gateway", f"Honk's proxy could not connect to {target}: "
            f"{'; '.join(failures)}.\n", "could not connect",
        )  # fmt: skip

    async def _resolve(self, host: str, port: int) -> list[str]:
        static = self.config.static_hosts.get(host)
        addresses = list(static) if static is not None else await self.resolver(host, port)
        if not addresses:
            raise OSError("no address")
        return list(dict.fromkeys(addresses))

    def _not_listed(self, target: str, is_literal: bool, host: str, port: int) -> Refused:
        setting = f"`{self.config.setting}:` in .github/honk.yml"
        if is_literal:
            why = (
                "it is an IP address, and the proxy connects to host names only. Name the "
                "host instead; an address is reachable only as an exact entry "
                "(address:port) the operator allows (HONK_NETWORK_ALLOW)"
            )
        elif advice := self.config.advice(target, host, port):
            why = f"it is not in this run's list. To allow it, add {advice} to {setting}"
        else:
            why = (
                "it is not in this run's list, and this Honk's operator does not let "
                "repositories name it: it must be allowed in HONK_NETWORK_ALLOW first, then "
                f"added to {setting}"
            )
        return Refused(
            403, f"Forbidden by Honk: {target} is not allowed ({self.config.setting}:)",
            f"Honk's network policy refused {target}: {why}.\n", "not allowed",
        )  # fmt: skip


def _private(target: str, host: str, address: str, problem: str) -> Refused:
    body = (
        f"Honk's network policy refused {target}: {host} resolves to {address}, {problem}. "
        f"Only an exact entry ({target}) the operator allows (HONK_NETWORK_ALLOW or "
        "HONK_NETWORK_PRESETS) may reach such an address.\n"
    )
    return Refused(
        403, f"Forbidden by Honk: {target} resolves to {problem}", body, f"{address}: {problem}"
    )


def _bad(reason: str) -> Refused:
    return Refused(400, "Bad Request", f"Honk's proxy: {reason}.\n", reason)


def _connection_tokens(headers: list[str]) -> set[str]:
    """Headers a `Connection:` header names: hop-by-hop too."""
    tokens: set[str] = set()
    for header in headers:
        name, _, value = header.partition(":")
        if name.strip().lower() == "connection":
            tokens |= {t.strip().lower() for t in value.split(",") if t.strip()}
    return tokens


async def _reply(writer: asyncio.StreamWriter, status: int, title: str, body: str) -> None:
    data = body.encode()
    title = "".join(c for c in title if c.isprintable())
    writer.write(
        f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _relay(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    record: Record,
) -> None:
    """Bytes both ways until both ends are done; counts them on `record`."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
        while data := await src.read(CHUNK):
            if up:
                record.up += len(data)
            else:
                record.down += len(data)
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()

    sending = asyncio.ensure_future(pipe(client_reader, upstream, True))
    receiving = asyncio.ensure_future(pipe(upstream_reader, client, False))
    try:
        done, _ = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        if receiving in done and receiving.exception() is None and not sending.done():
            # The server is done: the client may finish sending for a moment, then it ends.
            await asyncio.wait({sending}, timeout=LINGER_SECONDS)
        elif sending in done and sending.exception() is None:
            await receiving
    finally:
        for task in (sending, receiving):
            task.cancel()
        results = await asyncio.gather(sending, receiving, return_exceptions=True)
        for result in results:
            if isinstance(result, ConnectionError | OSError):
                raise result


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _emit(record: Record) -> None:
    sys.stdout.write(json.dumps(asdict(record)) + "\n")
    sys.stdout.flush()


async def serve(socket_path: str, config: ProxyConfig) -> None:
    """Listen until SIGTERM or the end of stdin (Honk closed it, or died); then let open
    connections end for a moment, and stop."""
    relay = EgressRelay(config, _emit)
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(handlers) >= MAX_CONNECTIONS:
            reason = f"more than {MAX_CONNECTIONS} connections at once"
            await _reply(writer, 503, "Service Unavailable", f"Honk's proxy: {reason}.\n")
            writer.close()
            _emit(Record("(too many connections)", reason=reason))
            return
        handlers.add(task)
        try:
            await relay.handle(reader, writer)
        finally:
            handlers.discard(task)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: os.read(stdin, 4096) or stop.set())
    server = await asyncio.start_unix_server(handle, path=socket_path, limit=HEAD_LIMIT)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    server.close()
    if handlers:
        await asyncio.wait(set(handlers), timeout=STOP_GRACE_SECONDS)
    for task in set(handlers):
        task.cancel()
    if handlers:
        await asyncio.wait(set(handlers), timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(OSError):
        os.unlink(socket_path)


def main() -> None:
    """`<python> -I -c ...` from app.workspace.egress: the socket path in argv, the config as
    stdin's first line; stdin stays open while Honk wants the proxy."""
    socket_path = sys.argv[1]
    config = ProxyConfig.from_json(sys.stdin.buffer.readline())
    asyncio.run(serve(socket_path, config))
