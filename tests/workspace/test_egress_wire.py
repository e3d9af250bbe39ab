"""What the egress proxy reads from a client, read strictly (pure functions; the attempts
through the real proxy are in test_egress_fronting.py and test_egress.py)."""

from __future__ import annotations

import time

import pytest

from app.workspace.egress_wire import (
    RECORDS_LIMIT,
    ClientHello,
    NotTls,
    WireError,
    client_hello,
    parse_head,
    split_absolute,
    split_authority,
)
from tests.fakes.edge import built_client_hello, in_records, python_client_hello


def test_a_client_hello_byte_by_byte_is_read_once_whole() -> None:
    hello = python_client_hello("pypi.org")
    buffer = bytearray()
    answers = []
    started = time.monotonic()
    for byte in hello:
        buffer.append(byte)
        answers.append(client_hello(buffer))
    assert answers[:-1] == [None] * (len(hello) - 1)
    assert answers[-1] == ClientHello("pypi.org", encrypted=False)
    # A 64 KiB handshake declared, sent a byte at a time: no copying while records are open.
    declared = b"\x16\x03\x01\x40\x00\x01\x00\xff\xff" + bytes(16_000)
    buffer = bytearray()
    for byte in declared:
        buffer.append(byte)
        assert client_hello(buffer) is None
    assert time.monotonic() - started < 2.0


def test_what_is_no_client_hello() -> None:
    with pytest.raises(NotTls):
        client_hello(b"GET / HTTP/1.1\r\n")
    hello = python_client_hello("pypi.org")
    with pytest.raises(WireError, match="over more than 64 records"):
        client_hello(in_records(hello, len(hello) - 5))  # a byte per record
    assert client_hello(in_records(hello, RECORDS_LIMIT)) is not None
    with pytest.raises(WireError, match="does not start with a ClientHello"):
        client_hello(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    with pytest.raises(WireError, match="not a TLS handshake record"):
        client_hello(b"\x16\x03\x03\x00\x00")
    assert client_hello(built_client_hello([])) == ClientHello(None, encrypted=False)


def test_request_heads_and_authorities() -> None:
    head = parse_head(b"GET http://a.example/x HTTP/1.1\r\nHost:  a.example \r\nX-Y: 1\t2\r\n\r\n")
    assert (head.method, head.target, head.version) == ("GET", "http://a.example/x", "HTTP/1.1")
    assert head.values("host") == ["a.example"] and head.values("x-y") == ["1\t2"]
    for bad in (
        b"GET  http://a/ HTTP/1.1\r\n\r\n",  # two spaces
        b"GET http://a/ HTTP/2.0\r\n\r\n",
        b"G(T http://a/ HTTP/1.1\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nNo colon\r\n\r\n",
    ):
        with pytest.raises(WireError):
            parse_head(bad)
    assert split_authority("[::1]:8080", None) == ("[::1]", 8080)
    assert split_authority("a.example", 80) == ("a.example", 80)
    for bad in ("a.example", "a.example:", "a.example:99999", "::1:80", "[::1]x"):
        with pytest.raises(WireError):
            split_authority(bad, None)
    assert split_absolute("http://a.example?q=1") == ("a.example", "/?q=1")
    for bad in ("https://a.example/", "http://u@a.example/", "http://a.example/#f", "http:///"):
        with pytest.raises(WireError):
            split_absolute(bad)
