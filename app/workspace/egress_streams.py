"""The egress proxy's bytes: a request head and a tunnel's TLS ClientHello read within their
bounds, a refusal written, one plain request's body and its response relayed (no byte of a
second request), a tunnel's bytes both ways; each counted on the connection's `Record`.

Standard library and Honk's proxy modules only: the proxy's own process loads this module by
path (app.workspace.egress), beside `egress_wire`, `egress_config` and `egress_proxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from app.network_policy import request_host
from app.workspace.egress_config import Record, Request
from app.workspace.egress_wire import (
    CLIENT_HELLO_LIMIT,
    HEAD_LIMIT,
    NotTls,
    WireError,
    chunk_size,
    client_hello,
    shown,
    too_large,
)

HEAD_SECONDS = 30.0  # for a request head, and for a tunnel's TLS ClientHello


CHUNK = 256 * 1024

# After the server has finished, how long the client may still send before the tunnel closes.
LINGER_SECONDS = 5.0


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request head, CRLF CRLF included; WireError past HEAD_LIMIT."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
    except asyncio.LimitOverrunError:
        raise too_large() from None
    if len(head) > HEAD_LIMIT:
        raise too_large()
    return head


async def read_client_hello(reader: asyncio.StreamReader, record: Record) -> bytes | None:
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


async def reply(writer: asyncio.StreamWriter, status: int, title: str, body: str) -> None:
    data = body.encode()
    title = "".join(c for c in title if c.isprintable())
    writer.write(
        f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def relay_one(
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


async def relay(
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
