"""One allowed name must not front for another on the same CDN edge, for real: the real
proxy process, a loopback edge that serves an allowed and an unlisted name, each attempt
made as an agent would make it, and what the proxy recorded of it.

The edge's name is allowed through the operator's exact entry (as the other proxy tests
allow loopback); `cdn-b.example` is on no list, and the edge would answer for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.network_policy import Cap, Presets, compile_rules
from app.workspace.egress import EgressProxy, proxy_config
from app.workspace.egress_config import Record
from app.workspace.sandbox import Sandbox
from tests.fakes.edge import (
    LenientEdge,
    TlsEdge,
    built_client_hello,
    in_records,
    python_client_hello,
    server_name_extension,
)

pytestmark = pytest.mark.bwrap

ALLOWED, UNLISTED = "cdn-a.example", "cdn-b.example"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
ACCESS_DENIED = bytes((21, 3, 3, 0, 2, 2, 49))  # a fatal TLS alert: access_denied


@pytest.fixture
async def plain_edge() -> AsyncIterator[LenientEdge]:
    async with LenientEdge() as edge:
        yield edge


@pytest.fixture
async def tls_edge(tmp_path: Path) -> AsyncIterator[TlsEdge]:
    async with TlsEdge([ALLOWED, UNLISTED], tmp_path) as edge:
        yield edge


async def edge_proxy(*ports: int, plain: tuple[int, ...] = ()) -> EgressProxy:
    """The agent's proxy for `network: [cdn-a.example:<port>, ...]`; the operator allows those
    exact entries (so they may reach loopback), and `tcp://` ones for the `plain` ports."""
    entries = [f"{ALLOWED}:{port}" for port in ports]
    cap = Cap((*entries, *(f"tcp://{ALLOWED}:{p}" for p in plain)), Presets.with_overrides({}))
    rules = compile_rules(entries, setting="network", cap=cap)
    static = {ALLOWED: ["127.0.0.1"], UNLISTED: ["127.0.0.1"]}
    config = proxy_config(rules, setting="network", cap=cap, static_hosts=static)
    return await EgressProxy.start(config, phase="agent")


async def exchange(proxy: EgressProxy, *pieces: bytes, read: bool = True) -> bytes:
    """Each piece written on its own (a moment apart: separate reads for the proxy), then
    (the client's side closed) everything the proxy answers until it closes."""
    reader, writer = await asyncio.open_unix_connection(str(proxy.sandbox.socket_path))
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        if not read:
            return await asyncio.wait_for(reader.read(4096), 5)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def connect(port: int, host: str = ALLOWED) -> bytes:
    return f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def only(summary_records: tuple[Record, ...]) -> Record:
    assert len(summary_records) == 1, summary_records
    return summary_records[0]


async def test_a_tunnel_to_an_allowed_name_carries_tls_only(plain_edge: LenientEdge) -> None:
    """CONNECT cdn-a.example:80, then plain HTTP naming the unlisted host."""
    fronted = f"GET / HTTP/1.1\r\nHost: {UNLISTED}\r\n\r\n".encode()
    proxy = await edge_proxy(plain_edge.port)
    try:
        answer = await exchange(proxy, connect(plain_edge.port), fronted)
    finally:
        summary = await proxy.stop()
    assert answer.startswith(ESTABLISHED + b"HTTP/1.1 403 Forbidden by Honk: a tunnel carries TLS")
    assert b"the tunnel's first bytes are not a TLS handshake" in answer
    assert f"tcp://{ALLOWED}:{plain_edge.port}".encode() in answer  # what would allow it
    assert b"hello from" not in answer and plain_edge.served == []
    record = only(summary.records)
    assert (record.host, record.allowed, record.host_header) == (ALLOWED, False, UNLISTED)
    assert "not a TLS handshake" in record.reason and record.up == 0


async def test_an_operators_tcp_entry_lets_a_tunnel_carry_anything(
    plain_edge: LenientEdge,
) -> None:
    """The one way to a plain tunnel: the operator wrote `tcp://host:port` (and then the
    edge answers whatever the bytes ask: that is what the operator allowed)."""
    proxy = await edge_proxy(plain_edge.port, plain=(plain_edge.port,))
    try:
        answer = await exchange(
            proxy, connect(plain_edge.port), f"GET / HTTP/1.1\r\nHost: {ALLOWED}\r\n\r\n".encode()
        )
    finally:
        summary = await proxy.stop()
    assert answer.startswith(ESTABLISHED) and answer.endswith(b"hello from cdn-a.example\n")
    assert only(summary.records).allowed


@pytest.mark.parametrize(
    "hello",
    [
        python_client_hello(UNLISTED),
        in_records(python_client_hello(UNLISTED), 3),
        python_client_hello(None),
        built_client_hello([server_name_extension(ALLOWED, UNLISTED)]),
        built_client_hello([server_name_extension(ALLOWED), (0xFE0D, b"\x00" * 40)]),
        built_client_hello([server_name_extension(ALLOWED), server_name_extension(UNLISTED)]),
        built_client_hello([server_name_extension(ALLOWED)])[:-3],
    ],
    ids=[
        "sni-unlisted",
        "sni-unlisted-over-3-records",
        "no-sni",
        "two-names",
        "encrypted-client-hello",
        "server-name-twice",
        "truncated",
    ],
)
async def test_a_client_hello_must_name_the_tunnels_host(tls_edge: TlsEdge, hello: bytes) -> None:
    proxy = await edge_proxy(tls_edge.port)
    try:
        answer = await exchange(proxy, connect(tls_edge.port), hello[:7], hello[7:])
    finally:
        summary = await proxy.stop()
    assert answer == ESTABLISHED + ACCESS_DENIED
    await asyncio.sleep(0.1)
    assert tls_edge.server_names == [] and tls_edge.served == []  # not a byte reached it
    record = only(summary.records)
    assert record.host == ALLOWED and not record.allowed and record.up == 0
    assert record.reason
    if hello == python_client_hello(UNLISTED):
        assert record.sni == UNLISTED
        assert record.reason == f"the TLS server name {UNLISTED} is not {ALLOWED}"


async def test_an_honest_tls_tunnel_still_works(tls_edge: TlsEdge) -> None:
    """SNI the tunnel's name, even split over TCP reads and TLS records: relayed as sent."""
    proxy = await edge_proxy(tls_edge.port)
    try:
        split = in_records(python_client_hello(ALLOWED), 4)
        first = await exchange(
            proxy, connect(tls_edge.port), split[:3], split[3:60], split[60:], read=False
        )
        reader, writer = await asyncio.open_unix_connection(str(proxy.sandbox.socket_path))
        writer.write(connect(tls_edge.port))
        assert await reader.readuntil(b"\r\n\r\n") == ESTABLISHED
        await writer.start_tls(tls_edge.client_context(), server_hostname=ALLOWED)
        writer.write(f"GET /honest HTTP/1.1\r\nHost: {ALLOWED}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        summary = await proxy.stop()
    assert first.startswith(ESTABLISHED + b"\x16\x03")  # the edge's ServerHello came back
    assert answer.endswith(b"hello from cdn-a.example over TLS\n")
    assert tls_edge.server_names == [ALLOWED, ALLOWED]
    assert [r.sni for r in summary.records] == [ALLOWED, ALLOWED]
    assert all(r.allowed and r.up > 0 and r.down > 0 for r in summary.records)


async def test_curl_in_the_sandbox_reaches_the_allowed_name_only(
    tmp_path: Path, tls_edge: TlsEdge, plain_edge: LenientEdge
) -> None:
    """The same through bwrap, socat and curl (OpenSSL's own ClientHello): HTTPS to the
    allowed name works; --connect-to (SNI and Host the unlisted name, the tunnel to the
    allowed one) and a plain tunnel (-p) are refused."""
    checkout = tmp_path / "widgets"
    checkout.mkdir()
    (checkout / "edge.pem").write_bytes(tls_edge.certificate.read_bytes())
    proxy = await edge_proxy(tls_edge.port, plain_edge.port)
    try:
        sandbox = Sandbox(checkout)
        sandbox.proxy = proxy.sandbox
        result = await sandbox.run(
            f"curl -sS --cacert edge.pem https://{ALLOWED}:{tls_edge.port}/; "
            f"curl -sS --cacert edge.pem --connect-to {UNLISTED}:443:{ALLOWED}:{tls_edge.port} "
            f"https://{UNLISTED}/ 2>&1; echo; "
            f"curl -sS -p -H 'Host: {UNLISTED}' http://{ALLOWED}:{plain_edge.port}/"
        )
    finally:
        summary = await proxy.stop()
    out = result.output
    assert out.startswith("hello from cdn-a.example over TLS\n"), out
    assert "alert access denied" in out  # curl's words for the proxy's TLS alert
    assert "A CONNECT tunnel carries TLS (https://) to the host it names" in out
    assert "hello from cdn-b" not in out and plain_edge.served == []
    assert [(r.allowed, r.sni, r.host_header) for r in summary.records] == [
        (True, ALLOWED, f"{ALLOWED}:{tls_edge.port}"),
        (False, UNLISTED, f"{ALLOWED}:{tls_edge.port}"),
        (False, "", UNLISTED),
    ]


PLAIN_ATTEMPTS = {
    # A lenient server reads the bare LFs as the end of the head and a second request.
    "bare-lf": "X-A: 1\n\nGET / HTTP/1.1\nHost: {unlisted}\nX-B: 2",
    "bare-cr": "X-A: 1\rHost: {unlisted}",
    "control-character": "X-A: 1\x00Host: {unlisted}",
    "obs-fold": "X-A: 1\r\n Host: {unlisted}",
    "second-host": "Host: {unlisted}",
    "space-before-colon": "Host : {unlisted}",
}


@pytest.mark.parametrize("extra", PLAIN_ATTEMPTS.values(), ids=PLAIN_ATTEMPTS.keys())
async def test_a_plain_request_head_is_read_strictly(plain_edge: LenientEdge, extra: str) -> None:
    target = f"{ALLOWED}:{plain_edge.port}"
    head = f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n\r\n"
    proxy = await edge_proxy(plain_edge.port)
    try:
        answer = await exchange(proxy, head.format(unlisted=UNLISTED).encode())
    finally:
        summary = await proxy.stop()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request"), answer
    assert plain_edge.served == []
    record = only(summary.records)
    assert not record.allowed and record.reason


async def test_the_host_header_must_be_the_target(plain_edge: LenientEdge) -> None:
    target = f"{ALLOWED}:{plain_edge.port}"
    proxy = await edge_proxy(plain_edge.port)
    try:
        answer = await exchange(
            proxy, f"GET http://{target}/ HTTP/1.1\r\nHost: {UNLISTED}\r\n\r\n".encode()
        )
    finally:
        summary = await proxy.stop()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert f"the Host header names {UNLISTED}, not {target}".encode() in answer
    record = only(summary.records)
    assert (record.host, record.host_header, record.allowed) == (ALLOWED, UNLISTED, False)
    assert plain_edge.served == []


async def test_one_request_per_connection(plain_edge: LenientEdge) -> None:
    """A second request after the first one's body (pipelined, or smuggled past a
    Content-Length) never reaches the server; an honest body, sized or chunked, does."""
    target = f"{ALLOWED}:{plain_edge.port}"
    smuggled = (
        f"GET http://{target}/first HTTP/1.1\r\nHost: {target}\r\nContent-Length: 0\r\n\r\n"
        f"GET /second HTTP/1.1\r\nHost: {UNLISTED}\r\n\r\n"
    )
    sized = f"POST http://{target}/sized HTTP/1.1\r\nHost: {target}\r\nContent-Length: 5\r\n\r\n"
    chunked = (
        f"POST http://{target}/chunked HTTP/1.1\r\nHost: {target}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    proxy = await edge_proxy(plain_edge.port)
    try:
        first = await exchange(proxy, smuggled.encode())
        second = await exchange(proxy, sized.encode(), b"hello", b"GET / HTTP/1.1\r\n\r\n")
        third = await exchange(proxy, chunked.encode(), b"3\r\nabc\r\n", b"2\r\nde\r\n0\r\n\r\n")
    finally:
        summary = await proxy.stop()
    assert first.count(b"hello from") == 1 and first.endswith(b"hello from cdn-a.example\n")
    assert second.endswith(b"hello from cdn-a.example\n") and third.endswith(b"example\n")
    assert [(s.host, s.path, s.body) for s in plain_edge.served] == [
        (ALLOWED, "/first", b""),
        (ALLOWED, "/sized", b"hello"),
        (ALLOWED, "/chunked", b"abcde"),
    ]
    assert all(b"Connection: close\r\n" in data for data in plain_edge.received), (
        plain_edge.received
    )
    assert UNLISTED.encode() not in b"".join(plain_edge.received)
    smuggling = summary.records[0]
    assert smuggling.allowed and smuggling.host_header == target
    assert smuggling.reason.startswith("one request per connection: ")


async def test_a_body_framing_a_server_could_read_otherwise_is_refused(
    plain_edge: LenientEdge,
) -> None:
    target = f"{ALLOWED}:{plain_edge.port}"
    proxy = await edge_proxy(plain_edge.port)
    heads = [
        "Transfer-Encoding: chunked\r\nContent-Length: 3",
        "Transfer-Encoding: gzip, chunked",
        "Content-Length: 3\r\nContent-Length: 4",
        "Content-Length: +3",
    ]
    try:
        answers = [
            await exchange(proxy, f"POST http://{target}/ HTTP/1.1\r\n{h}\r\n\r\nabcd".encode())
            for h in heads
        ]
    finally:
        summary = await proxy.stop()
    assert all(a.startswith(b"HTTP/1.1 400 Bad Request") for a in answers), answers
    assert plain_edge.served == [] and len(summary.refused) == len(heads)
