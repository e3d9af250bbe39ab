"""A CDN edge on loopback: one address that serves several names, as shared CDNs do.

`LenientEdge` speaks plain HTTP the way a lenient server does (a bare LF ends a line, every
request in its buffer is answered, `Connection: close` or not) and answers each request
with the Host it named. `TlsEdge` speaks TLS with a certificate for every name, tells which
server names (SNI) it heard, and answers with the Host inside. Both record what they served,
so a test can tell whether an unlisted name was reached through an allowed one.

Also ClientHellos: a real one made by Python's ssl module (OpenSSL) for any server name,
and one built field by field, for the shapes no library sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

IDLE_SECONDS = 0.5  # a connection with nothing more to read for this long is closed


@dataclass
class Served:
    host: str
    path: str
    body: bytes = b""


@dataclass
class LenientEdge:
    """`async with LenientEdge() as edge: edge.port`; `edge.served` lists each answer."""

    served: list[Served] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)  # each connection's bytes
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> LenientEdge:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data, raw = b"", b""
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), IDLE_SECONDS)
                except TimeoutError:
                    break
                if not chunk:
                    break
                raw += chunk
                data = self._answer(data + chunk, writer)
                await writer.drain()
        finally:
            self.received.append(raw)
            writer.close()

    def _answer(self, data: bytes, writer: asyncio.StreamWriter) -> bytes:
        """Answer every complete request at the start of `data`; the rest, unread."""
        while True:
            parsed = lenient_request(data)
            if parsed is None:
                return data
            served, data = parsed
            self.served.append(served)
            body = f"hello from {served.host}\n".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


def lenient_request(data: bytes) -> tuple[Served, bytes] | None:
    """One request read leniently (LF or CRLF, the first Host wins): it and what follows."""
    lines: list[bytes] = []
    position = 0
    while True:
        end = data.find(b"\n", position)
        if end < 0:
            return None
        line = data[position:end].removesuffix(b"\r")
        position = end + 1
        if not line:
            if lines:
                break
            continue
        lines.append(line)
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
    headers = [line.partition(b":") for line in lines[1:]]
    host = next((v.strip().decode("latin-1") for k, _, v in headers if k.lower() == b"host"), "")
    length = next((int(v) for k, _, v in headers if k.lower() == b"content-length"), 0)
    chunked = any(k.lower() == b"transfer-encoding" for k, _, _ in headers)
    body = b""
    if chunked:
        while True:
            end = data.find(b"\n", position)
            if end < 0:
                return None
            size = int(data[position:end].split(b";")[0].strip(), 16)
            position = end + 1
            if size == 0:
                end = data.find(b"\n", position)  # no trailers from our clients
                if end < 0:
                    return None
                position = end + 1
                break
            if len(data) < position + size + 2:
                return None
            body += data[position : position + size]
            position += size + 2
    else:
        if len(data) < position + length:
            return None
        body, position = data[position : position + length], position + length
    return Served(host.split(":")[0].lower(), path, body), data[position:]


def make_certificate(names: list[str], directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (its own CA): (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "edge.pem", directory / "edge.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class TlsEdge:
    """TLS for every name in `names`; `server_names` lists each SNI a handshake named."""

    names: list[str]
    directory: Path
    server_names: list[str | None] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    port: int = 0
    certificate: Path = Path()
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsEdge:
        self.certificate, key = make_certificate(self.names, self.directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)
        context.sni_callback = lambda _obj, name, _ctx: self.server_names.append(name)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parsed = lenient_request(head)
            host = parsed[0].host if parsed else "?"
            self.served.append(Served(host, parsed[0].path if parsed else "?"))
            body = f"hello from {host} over TLS\n".encode()
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                .encode() + body
            )  # fmt: skip
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()


def python_client_hello(server_name: str | None) -> bytes:
    """The ClientHello Python's ssl module (OpenSSL) sends for `server_name` (None: no SNI)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def in_records(hello: bytes, pieces: int) -> bytes:
    """The same ClientHello with its handshake message split over `pieces` TLS records."""
    assert hello[0] == 22
    message = hello[5:]
    size = -(-len(message) // pieces)
    out = b""
    for start in range(0, len(message), size):
        part = message[start : start + size]
        out += bytes((22, 3, 1)) + len(part).to_bytes(2, "big") + part
    return out


def built_client_hello(extensions: list[tuple[int, bytes]]) -> bytes:
    """A ClientHello with exactly `extensions` ((type, data)), in one TLS record."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    encoded = b"".join(
        kind.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data for kind, data in extensions
    )
    body += len(encoded).to_bytes(2, "big") + encoded
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message


def server_name_extension(*names: str) -> tuple[int, bytes]:
    entries = b"".join(b"\x00" + len(n).to_bytes(2, "big") + n.encode() for n in names)
    return 0, len(entries).to_bytes(2, "big") + entries
