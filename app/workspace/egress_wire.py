"""What Honk's egress proxy reads from a sandbox, read strictly: an HTTP/1 request head, an
authority, a chunked body's framing, a TLS ClientHello.

Whatever a lenient server could read differently from the proxy (a bare line feed, a folded
header, a second Host) is refused rather than repaired, and every field a client chooses has
a limit, so no record the proxy writes can grow with what a client sent. Standard library
only: the proxy's own process loads this module by path, beside `egress_config`, `egress_streams`
and `egress_proxy`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD_LIMIT = 64 * 1024  # the request line and headers
METHOD_LIMIT = 32
TARGET_LIMIT = 8 * 1024
HEADER_NAME_LIMIT = 256
HEADER_VALUE_LIMIT = 8 * 1024
HEADER_COUNT_LIMIT = 100
CHUNK_LINE_LIMIT = 1024  # a chunk's size line, extensions included
CLIENT_HELLO_LIMIT = 64 * 1024  # the handshake message; real ones are a few kB
RECORDS_LIMIT = 64  # TLS records a ClientHello may span (one, in practice)
SHOWN_LIMIT = 255  # characters of a client's text kept in a record or a refusal
_RECORD_LIMIT = 2**14  # a TLS record's plaintext (RFC 8446 5.1)
_HANDSHAKE, _CLIENT_HELLO = 22, 1
_SERVER_NAME, _HOST_NAME = 0, 0
# Encrypted ClientHello (RFC 9849) and its draft predecessor: the name inside is hidden.
_ENCRYPTED_HELLO = {0xFE0D, 0xFFCE}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_PORT = re.compile(r"[0-9]{1,5}")


class WireError(Exception):
    """What a client sent cannot be read safely; the message says why, for the client."""

    def __init__(self, reason: str, status: int = 400, title: str = "Bad Request") -> None:
        super().__init__(reason)
        self.reason, self.status, self.title = reason, status, title


class NotTls(WireError):
    """A CONNECT tunnel's first bytes are not a TLS handshake."""


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]  # (name as sent, value without surrounding space)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name]


@dataclass(frozen=True)
class ClientHello:
    sni: str | None  # the server_name's host_name as sent (lower case), None without one
    encrypted: bool  # it carries an encrypted ClientHello (the real name hidden inside)


def shown(text: str | bytes, limit: int = SHOWN_LIMIT) -> str:
    """A client's text for a record or a refusal: printable ASCII, at most `limit` characters."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    clean = "".join(c if " " <= c <= "~" else "?" for c in text[: limit + 1])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def parse_head(head: bytes) -> RequestHead:
    """A request head ending in CRLF CRLF, read as RFC 9112 says and nothing looser."""
    if len(head) > HEAD_LIMIT:
        raise too_large()
    lines = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        raise WireError("a line ends in a bare CR or LF: lines end in CRLF only")
    parts = lines[0].split(b" ")
    if len(parts[0]) > METHOD_LIMIT:
        raise WireError(f"the request method is longer than {METHOD_LIMIT} characters")
    if len(parts) > 1 and len(parts[1]) > TARGET_LIMIT:
        raise WireError(
            f"the request target is longer than {TARGET_LIMIT} characters", 414, "URI Too Long"
        )
    if (
        len(parts) != 3
        or not _TOKEN.fullmatch(parts[0])
        or not _TARGET.fullmatch(parts[1])
        or not _VERSION.fullmatch(parts[2])
    ):
        raise WireError("not an HTTP/1 request line (METHOD target HTTP/1.1, single spaces)")
    if len(lines) - 1 > HEADER_COUNT_LIMIT:
        raise WireError(
            f"more than {HEADER_COUNT_LIMIT} header fields", 431, "Request Header Fields Too Large"
        )
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise WireError("a folded header line (obs-fold): each field on a line of its own")
        name, colon, value = line.partition(b":")
        if len(name) > HEADER_NAME_LIMIT or len(value) > HEADER_VALUE_LIMIT:
            raise WireError(
                f"a header field longer than {HEADER_NAME_LIMIT} (name) or "
                f"{HEADER_VALUE_LIMIT} (value) characters", 431,
                "Request Header Fields Too Large",
            )  # fmt: skip
        if not colon or not _TOKEN.fullmatch(name):
            raise WireError(f"not a header field: {shown(line, 60)!r}")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise WireError(f"a control character in the {shown(name)} header")
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    method, target, version = (part.decode("ascii") for part in parts)
    return RequestHead(method, target, version, tuple(headers))


def too_large() -> WireError:
    return WireError(
        f"the request head is larger than {HEAD_LIMIT // 1024} KiB", 431,
        "Request Header Fields Too Large",
    )  # fmt: skip


def split_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or (with a default) `host`: the host as written and the port."""
    if text.startswith("["):
        host, bracket, rest = text.partition("]")
        host += bracket
        if not bracket or (rest and not rest.startswith(":")):
            raise WireError(f"{shown(text, 80)} is not a host and port")
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise WireError(f"{shown(text, 80)}: an IPv6 address is written in brackets")
    else:
        host, _, port_text = text.partition(":")
    if not port_text and default_port is not None and not text.endswith(":"):
        return host, default_port
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise WireError(f"{shown(text, 80)} is not a host and port")
    return host, int(port_text)


def split_absolute(target: str) -> tuple[str, str]:
    """An absolute-form `http://authority/path?query`: (authority, path and query)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise WireError("plain HTTP requests name an absolute http:// URL; HTTPS uses CONNECT")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not authority or "@" in authority or "\\" in authority or "#" in target:
        raise WireError("the URL names no plain host (no user info, no fragment)")
    return authority, ("/" + path if path.startswith("?") else path or "/")


def chunk_size(line: bytes) -> int:
    """The size on a chunked body's size line (CRLF included); WireError if it is not one."""
    if len(line) > CHUNK_LINE_LIMIT or not line.endswith(b"\r\n"):
        raise WireError("a chunk size line that is too long or not ended by CRLF")
    size, _, extension = line[:-2].partition(b";")
    if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size) or not _VALUE.fullmatch(extension):
        raise WireError("not a chunk size line")
    if b"\r" in line[:-2] or b"\n" in line[:-2]:
        raise WireError("a bare CR or LF in a chunked body")
    return int(size, 16)


def client_hello(data: bytes | bytearray) -> ClientHello | None:
    """The ClientHello at the start of `data` (it may span TLS records); None while more
    bytes are needed; WireError when `data` cannot start with one.

    Called again as bytes arrive: the records' frames are checked first, so nothing is
    copied while the last record is still incomplete (a client sending a byte at a time
    costs no more than one sending it whole), and a ClientHello over more than
    RECORDS_LIMIT records is refused."""
    if data and data[0] != _HANDSHAKE:
        raise NotTls("the tunnel's first bytes are not a TLS handshake")
    frames: list[tuple[int, int]] = []
    position = 0
    while len(data) - position >= 5:
        kind, major, length = data[position], data[position + 1], _int(data, position + 3, 2)
        if kind != _HANDSHAKE or major != 3 or not 0 < length <= _RECORD_LIMIT:
            raise WireError("not a TLS handshake record")
        if len(data) - position - 5 < length:
            return None
        frames.append((position + 5, length))
        position += 5 + length
        if len(frames) > RECORDS_LIMIT:
            raise WireError(f"a TLS ClientHello over more than {RECORDS_LIMIT} records")
    message = bytearray()
    for start, length in frames:
        message += data[start : start + length]
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise WireError("the TLS handshake does not start with a ClientHello")
            size = _int(message, 1, 3)
            if size > CLIENT_HELLO_LIMIT:
                raise WireError(f"a TLS ClientHello larger than {CLIENT_HELLO_LIMIT // 1024} KiB")
            if len(message) >= 4 + size:
                return _hello_body(bytes(message[4 : 4 + size]))
    return None


def _hello_body(body: bytes) -> ClientHello:
    """legacy_version, random, session id, cipher suites, compression, then extensions."""
    reader = _Reader(body)
    reader.take(2 + 32)
    reader.vector(1)
    reader.vector(2)
    reader.vector(1)
    sni: str | None = None
    encrypted = False
    if reader.left():
        extensions = _Reader(reader.vector(2))
        if reader.left():
            raise WireError("bytes after a TLS ClientHello's extensions")
        seen: set[int] = set()
        while extensions.left():
            kind = _int(extensions.take(2), 0, 2)
            data = extensions.vector(2)
            if kind in seen:
                raise WireError("a TLS ClientHello repeats an extension")
            seen.add(kind)
            encrypted = encrypted or kind in _ENCRYPTED_HELLO
            if kind == _SERVER_NAME:
                sni = _server_name(data)
    return ClientHello(sni, encrypted)


def _server_name(data: bytes) -> str:
    outer = _Reader(data)
    names = _Reader(outer.vector(2))
    if outer.left():
        raise WireError("bytes after a TLS server_name list")
    found: list[bytes] = []
    while names.left():
        kind = names.take(1)[0]
        name = names.vector(2)
        if kind == _HOST_NAME:
            found.append(name)
    if len(found) != 1:
        raise WireError("a TLS server_name extension names not exactly one host")
    try:
        return found[0].decode("ascii").lower()
    except UnicodeDecodeError:
        raise WireError("a TLS server name that is not ASCII") from None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def left(self) -> int:
        return len(self.data) - self.position

    def take(self, count: int) -> bytes:
        if count > self.left():
            raise WireError("a truncated TLS ClientHello")
        self.position += count
        return self.data[self.position - count : self.position]

    def vector(self, length_bytes: int) -> bytes:
        return self.take(_int(self.take(length_bytes), 0, length_bytes))


def _int(data: bytes | bytearray, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "big")
