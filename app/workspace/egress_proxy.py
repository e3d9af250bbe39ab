"""The egress proxy: one process per sandbox phase, on a UNIX socket bound into the sandbox.

HTTPS goes through `CONNECT host:port` (a tunnel by host name: no TLS interception) and a
tunnel carries TLS only: its ClientHello is read and the tunnel refused unless it names
(SNI) the host it connects to; only an operator's `tcp://host:port` entry lets a tunnel carry
anything else. Plain HTTP comes as absolute-form requests, their heads read strictly
(`egress_wire`), the Host the target itself, one request per connection, forwarded with
`Connection: close`. Only hosts the phase's rules allow; every name is resolved once, each
address vetted, and the connection made to that very address (no DNS rebinding). Every
connection is reported on stdout as one JSON line, every field of it bounded.

Run by `app.workspace.egress` from a clean environment, this module, `egress_config`,
`egress_streams`, `egress_wire` and `app.network_policy` are all it loads of Honk: it never
sees Honk's settings or secrets. This module decides (which host, which address, which
rule); `egress_streams` moves the bytes.
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
from dataclasses import asdict
from typing import Any

from app.network_policy import Rule, address_problem, match, request_host
from app.workspace.egress_config import (
    ProxyConfig,
    Record,
    Refused,
    Request,
    bad_request,
    private_refusal,
    refusal,
    shown_target,
)
from app.workspace.egress_streams import (
    read_client_hello,
    read_head,
    relay,
    relay_one,
    reply,
)
from app.workspace.egress_wire import (
    NotTls,
    RequestHead,
    WireError,
    parse_head,
    shown,
    split_absolute,
    split_authority,
)

STREAM_LIMIT = 256 * 1024  # the stream buffers' size; a request head is read up to HEAD_LIMIT

CONNECT_SECONDS = 10.0

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
                head = await read_head(reader)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    record = Record("(malformed)", reason="the request ended early")
                return
            except WireError as error:
                record = Record("(malformed)", reason=error.reason)
                await reply(writer, error.status, error.title, f"Honk's proxy: {error.reason}.\n")
                return
            except (TimeoutError, ValueError):
                record = Record("(malformed)", reason="no complete request head")
                await reply(writer, 400, "Bad Request", "Honk's proxy: no request head.\n")
                return
            record = Record("(malformed)")
            try:
                request = self._request(head, record)
                upstream_reader, upstream, rule = await self._connect(
                    request.host, request.port, record
                )
            except Refused as refusal:
                record.reason = refusal.reason
                await reply(writer, refusal.status, refusal.title, refusal.body)
                return
            record.rule = shown(str(rule.entry))
            if request.forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await self._tunnel(reader, writer, upstream_reader, upstream, record, rule)
            else:
                record.allowed = True
                upstream.write(request.forward)
                record.up += len(request.forward)
                await relay_one(reader, writer, upstream_reader, upstream, record, request)
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
            raise refusal(error) from None
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
            raise refusal(error) from None
        record.host, record.port = host, port
        if len(hosts) > 1:
            raise bad_request("more than one Host header")
        default = port if head.method == "CONNECT" else 80
        if hosts and self._named(hosts[0], default) != (host, port):
            raise bad_request(
                f"the Host header names {shown(hosts[0], 80)}, not {shown(authority, 80)}"
            )
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
                raise bad_request(
                    "a Transfer-Encoding other than chunked alone (no Content-Length)"
                )
            if head.version != "HTTP/1.1":
                raise bad_request("a chunked body in an HTTP/1.0 request")
            chunked = True
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
                raise bad_request("not one valid Content-Length")
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
            raise bad_request(f"{shown(host_text, 80)}:{port} is not a host and port")
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
                first = await read_client_hello(reader, record)
            except NotTls as error:
                record.reason = error.reason
                target = shown_target(record.host, record.port)
                body = (
                    f"Honk's network policy refused this tunnel to {target}: {error.reason}. A "
                    "CONNECT tunnel carries TLS (https://) to the host it names; send plain HTTP "
                    f"as a request to the proxy (http_proxy), or the operator allows "
                    f"tcp://{target} (HONK_NETWORK_ALLOW).\n"
                )
                await reply(writer, 403, "Forbidden by Honk: a tunnel carries TLS only", body)
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
        await relay(reader, writer, upstream_reader, upstream, record)

    async def _connect(
        self, host: str, port: int, record: Record
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Rule]:
        """The upstream connection, made only to an address the rules allow, and that rule."""
        config = self.config
        target = shown_target(host, port)
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
                    raise private_refusal(target, host, address, problem)
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


def _connection_tokens(head: RequestHead) -> set[str]:
    """Headers a `Connection:` header names: hop-by-hop too."""
    tokens: set[str] = set()
    for value in head.values("connection"):
        tokens |= {t.strip().lower() for t in value.split(",") if t.strip()}
    return tokens


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
            await reply(writer, 503, "Service Unavailable", f"Honk's proxy: {reason}.\n")
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
