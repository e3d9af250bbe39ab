"""The egress proxy: one process per sandbox phase, on a UNIX socket bound into the sandbox.

HTTPS goes through `CONNECT host:port` (a tunnel by host name: no TLS interception) and a
tunnel carries TLS only: its ClientHello is read and the tunnel refused unless it names
(SNI) the host it connects to; only an operator's `tcp://host:port` entry lets a tunnel carry
anything else. Plain HTTP comes as absolute-form requests, their heads read strictly
(`egress_wire`), the Host the target itself, one request per connection, forwarded with
`Connection: close`. Only hosts the phase's rules allow; every name is resolved once, each
address vetted, and the connection made to that very address (no DNS rebinding). Every
connection is reported on stdout as one JSON line, every field of it bounded.

Run by `app.workspace.egress` from a clean environment, this module, `egress_wire` and
`app.network_policy` are all it loads of Honk: it never sees Honk's settings or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from app.network_policy import Entry, Rule, address_problem, match, request_host
from app.workspace.egress_wire import (
    CLIENT_HELLO_LIMIT,
    HEAD_LIMIT,
    NotTls,
    RequestHead,
    WireError,
    chunk_size,
    client_hello,
    parse_head,
    shown,
    split_absolute,
    split_authority,
    too_large,
)

STREAM_LIMIT = 256 * 1024  # the stream buffers' size; a request head is read up to HEAD_LIMIT
HEAD_SECONDS = 30.0  # for a request head, and for a tunnel's TLS ClientHello
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
                "rules": [[asdict(r.entry), r.private_ok, r.plain_ok] for r in self.rules],
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
            rules=tuple(Rule(Entry(**e), bool(ok), bool(plain)) for e, ok, plain in data["rules"]),
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
    """One connection as the proxy saw it; every text in it is bounded (SHOWN_LIMIT)."""

    host: str
    port: int = 0
    method: str = ""
    allowed: bool = False
    reason: str = ""  # why it was refused or failed
    address: str = ""  # the vetted address it connected to
    up: int = 0  # bytes from the sandbox
    down: int = 0  # bytes to the sandbox
    seconds: float = 0.0
    sni: str = ""  # the server name a tunnel's TLS ClientHello named
    host_header: str = ""  # the Host a plain request (or a tunnel's plain bytes) named
    rule: str = ""  # the entry that allowed it (`*.example.org`, `pypi.org`)


class Refused(Exception):
    def __init__(self, status: int, title: str, body: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.title, self.body, self.reason = status, title, body, reason


@dataclass(frozen=True)
class Request:
    """A request head the proxy will act on: a tunnel (`forward` None) or one plain request."""

    method: str
    host: str
    port: int
    host_header: str = ""
    forward: bytes | None = None  # the head sent upstream
    chunked: bool = False  # the body's framing: chunked, else `length` bytes
    length: int = 0


# A fatal TLS alert, access_denied: what a refused tunnel answers a ClientHello with.
_ACCESS_DENIED = bytes((21, 3, 3, 0, 2, 2, 49))


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
                head = await _read_head(reader)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    record = Record("(malformed)", reason="the request ended early")
                return
            except WireError as error:
                record = Record("(malformed)", reason=error.reason)
                await _reply(writer, error.status, error.title, f"Honk's proxy: {error.reason}.\n")
                return
            except (TimeoutError, ValueError):
                record = Record("(malformed)", reason="no complete request head")
                await _reply(writer, 400, "Bad Request", "Honk's proxy: no request head.\n")
                return
            record = Record("(malformed)")
            try:
                request = self._request(head, record)
                upstream_reader, upstream, rule = await self._connect(
                    request.host, request.port, record
                )
            except Refused as refusal:
                record.reason = refusal.reason
                await _reply(writer, refusal.status, refusal.title, refusal.body)
                return
            record.rule = shown(str(rule.entry))
            if request.forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await self._tunnel(reader, writer, upstream_reader, upstream, record, rule)
            else:
                record.allowed = True
                upstream.write(request.forward)
                record.up += len(request.forward)
                await _relay_one(reader, writer, upstream_reader, upstream, record, request)
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

    def _request(self, raw: bytes, record: Record) -> Request:
        """The request `raw` names, read strictly; `record` learns what it could of it."""
        try:
            head = parse_head(raw)
        except WireError as error:
            raise _refusal(error) from None
        record.method = head.method
        hosts = head.values("host")
        record.host_header = shown(hosts[0]) if hosts else ""
        try:
            if head.method == "CONNECT":
                host, port = self._target(*split_authority(head.target, None))
                authority = head.target
            else:
                authority, path = split_absolute(head.target)
                host, port = self._target(*split_authority(authority, 80))
        except WireError as error:
            raise _refusal(error) from None
        record.host, record.port = host, port
        if len(hosts) > 1:
            raise _bad("more than one Host header")
        default = port if head.method == "CONNECT" else 80
        if hosts and self._named(hosts[0], default) != (host, port):
            raise _bad(f"the Host header names {shown(hosts[0], 80)}, not {shown(authority, 80)}")
        if head.method == "CONNECT":
            return Request(head.method, host, port, record.host_header)
        return self._plain(head, host, port, authority, path, record.host_header)

    def _named(self, text: str, default_port: int) -> tuple[str, int] | None:
        """What a Host header names, normalised like a target; None if it names nothing."""
        try:
            return self._target(*split_authority(text, default_port))
        except (WireError, Refused):
            return None

    def _plain(
        self, head: RequestHead, host: str, port: int, authority: str, path: str, seen: str
    ) -> Request:
        """One plain request as it goes upstream: its own Host, `Connection: close`, hop-by-hop
        headers dropped, its body's framing known (the proxy relays that body and no more)."""
        lengths, codings = head.values("content-length"), head.values("transfer-encoding")
        chunked, length = False, 0
        if codings:
            if len(codings) > 1 or codings[0].lower() != "chunked" or lengths:
                raise _bad("a Transfer-Encoding other than chunked alone (no Content-Length)")
            if head.version != "HTTP/1.1":
                raise _bad("a chunked body in an HTTP/1.0 request")
            chunked = True
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
                raise _bad("not one valid Content-Length")
            length = int(lengths[0])
        dropped = _HOP_BY_HOP | {"host"} | _connection_tokens(head)
        kept = [f"{name}: {value}" for name, value in head.headers if name.lower() not in dropped]
        lines = [f"{head.method} {path} {head.version}", f"Host: {authority}", *kept]
        lines.append("Connection: close")
        forward = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return Request(head.method, host, port, seen, forward, chunked, length)

    def _target(self, host_text: str, port: int | None) -> tuple[str, int]:
        named = request_host(host_text)
        if named is None or port is None:
            raise _bad(f"{shown(host_text, 80)}:{port} is not a host and port")
        return named[0], port

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        record: Record,
        rule: Rule,
    ) -> None:
        """A CONNECT tunnel: TLS whose ClientHello names the tunnel's host, unless the
        operator's `tcp://` entry lets it carry anything."""
        if not rule.plain_ok:
            try:
                first = await _read_client_hello(reader, record)
            except NotTls as error:
                record.reason = error.reason
                target = _shown_target(record.host, record.port)
                body = (
                    f"Honk's network policy refused this tunnel to {target}: {error.reason}. A "
                    "CONNECT tunnel carries TLS (https://) to the host it names; send plain HTTP "
                    f"as a request to the proxy (http_proxy), or the operator allows "
                    f"tcp://{target} (HONK_NETWORK_ALLOW).\n"
                )
                await _reply(writer, 403, "Forbidden by Honk: a tunnel carries TLS only", body)
                return
            except WireError as error:
                record.reason = error.reason
                writer.write(_ACCESS_DENIED)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            if first is None:
                record.allowed = True
                record.reason = "closed before sending anything"
                return
            upstream.write(first)
            record.up += len(first)
        record.allowed = True
        await _relay(reader, writer, upstream_reader, upstream, record)

    async def _connect(
        self, host: str, port: int, record: Record
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Rule]:
        """The upstream connection, made only to an address the rules allow, and that rule."""
        config = self.config
        target = _shown_target(host, port)
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
                    asyncio.open_connection(address, port, limit=STREAM_LIMIT), CONNECT_SECONDS
                )
            except (OSError, TimeoutError) as exc:
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            record.address = address
            return (*opened, rule)
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


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head, CRLF CRLF included; WireError past HEAD_LIMIT."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
    except asyncio.LimitOverrunError:
        raise too_large() from None
    if len(head) > HEAD_LIMIT:
        raise too_large()
    return head


async def _read_client_hello(reader: asyncio.StreamReader, record: Record) -> bytes | None:
    """The tunnel's first bytes, read until they hold a whole TLS ClientHello that names the
    tunnel's host (NotTls, WireError otherwise); None if the client sent nothing at all."""
    buffer = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEAD_SECONDS
    while True:
        try:
            hello = client_hello(buffer)
        except NotTls:
            record.host_header = _plain_host(bytes(buffer)) or record.host_header
            raise
        if hello is not None:
            break
        if len(buffer) > CLIENT_HELLO_LIMIT + 1024:
            raise WireError(f"no TLS ClientHello within {CLIENT_HELLO_LIMIT // 1024} KiB")
        try:
            chunk = await asyncio.wait_for(reader.read(CHUNK), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise WireError("no TLS ClientHello in time") from None
        if not chunk:
            if buffer:
                raise WireError("the tunnel closed inside a TLS ClientHello")
            return None
        buffer += chunk
    record.sni = shown(hello.sni or "")
    if hello.encrypted:
        raise WireError("an encrypted ClientHello hides the server name")
    if hello.sni is None:
        raise WireError("a TLS ClientHello without a server name (SNI)")
    named = request_host(hello.sni)
    if named is None or named[1] or named[0] != record.host:
        raise WireError(f"the TLS server name {shown(hello.sni, 80)} is not {record.host}")
    return bytes(buffer)


def _plain_host(data: bytes) -> str:
    """The Host a tunnel's plain HTTP bytes named, for the record (best effort)."""
    for line in data[:CHUNK].split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return shown(value.strip())
    return ""


def _shown_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refusal(error: WireError) -> Refused:
    return Refused(error.status, error.title, f"Honk's proxy: {error.reason}.\n", error.reason)


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


def _connection_tokens(head: RequestHead) -> set[str]:
    """Headers a `Connection:` header names: hop-by-hop too."""
    tokens: set[str] = set()
    for value in head.values("connection"):
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


async def _relay_one(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    record: Record,
    request: Request,
) -> None:
    """One plain request's body upstream (as its framing delimits it, no byte more), the
    response back until the server closes; whatever the client sends after its request is
    read and dropped, never relayed: a second request never reaches the server."""

    async def send() -> None:
        if request.chunked:
            await _send_chunked(client_reader, upstream, record)
        else:
            left = request.length
            while left > 0:
                data = await client_reader.read(min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                record.up += len(data)
                upstream.write(data)
                await upstream.drain()
        dropped = 0
        while data := await client_reader.read(CHUNK):
            dropped += len(data)
            record.reason = f"one request per connection: {dropped} bytes after it dropped"

    async def receive() -> None:
        # The response's head says `Connection: close`: the proxy takes one request per
        # connection, and a client that kept the socket for its next request (npm's agent
        # does, with 15 sockets for 25 downloads) would have it reset and retry 10 s later.
        head = await _response_head(upstream_reader)
        record.down += len(head)
        client.write(head)
        while data := await upstream_reader.read(CHUNK):
            record.down += len(data)
            client.write(data)
            await client.drain()

    sending = asyncio.ensure_future(send())
    receiving = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        if sending in done and sending.exception() is None:
            await receiving
        elif sending in done and isinstance(sending.exception(), WireError):
            record.reason = f"{sending.exception()}; the request was cut off"
    finally:
        await _finish(sending, receiving)


async def _response_head(reader: asyncio.StreamReader) -> bytes:
    """The server's response head(s) with `Connection: close` in the final one (any
    `Connection`/`Keep-Alive` of its own left out); interim 1xx heads pass unchanged. What
    is not a head within HEAD_LIMIT (or ends first) passes as it came."""
    passed = b""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return passed + exc.partial
        except asyncio.LimitOverrunError:
            return passed
        if len(head) > HEAD_LIMIT:
            return passed + head
        status, *fields = head[:-4].split(b"\r\n")
        if re.match(rb"HTTP/1\.[01] 1\d\d ", status):
            passed += head
            continue
        kept = [
            line for line in fields
            if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
        ]  # fmt: skip
        return passed + b"\r\n".join([status, *kept, b"Connection: close", b"", b""])


async def _send_chunked(
    reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, record: Record
) -> None:
    """A chunked body, read as strictly as a head, relayed up to its last chunk's trailers."""

    async def line() -> bytes:
        try:
            return await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise WireError("a chunked body's line is too long") from None

    async def forward(data: bytes) -> None:
        record.up += len(data)
        upstream.write(data)
        await upstream.drain()

    while True:
        size_line = await line()
        size = chunk_size(size_line)
        await forward(size_line)
        if size == 0:
            break
        await forward(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise WireError("a chunk not followed by CRLF")
        await forward(b"\r\n")
    trailers = 0
    while (trailer := await line()) != b"\r\n":
        trailers += len(trailer)
        if trailers > HEAD_LIMIT or b"\r" in trailer[:-2] or b"\n" in trailer[:-2]:
            raise WireError("a chunked body's trailers are too large or not CRLF lines")
        await forward(trailer)
    await forward(b"\r\n")


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
        await _finish(sending, receiving)


async def _finish(*tasks: asyncio.Future[None]) -> None:
    """Cancel what is left; a connection lost on either side is raised (the record says so)."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
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

    def on_stdin() -> None:
        if not os.read(stdin, 4096):  # Honk closed its end (or died): stop
            stop.set()

    loop.add_reader(stdin, on_stdin)
    server = await asyncio.start_unix_server(handle, path=socket_path, limit=STREAM_LIMIT)
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
