"""The sandbox's only way out, for real: bwrap in its own network namespace, Honk's egress
proxy in its own process, socat inside, curl and pip as an agent would run them. Loopback
only: the "internet" here is two loopback servers, and names resolve through the system's
resolver (localhost) or, for names that must not exist, the proxy's test-only table."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from app.network_policy import Cap, Presets, compile_rules
from app.workspace.egress import RECORD_LINE_LIMIT, EgressProxy, proxy_config
from app.workspace.egress_config import Record
from app.workspace.egress_proxy import EgressRelay
from app.workspace.egress_reach import INSIDE_SOCKET, SandboxProxy
from app.workspace.egress_summary import NetworkSummary
from app.workspace.mounts import SandboxPython
from app.workspace.sandbox import Sandbox
from tests.fakes.registry import LoopbackRegistry

pytestmark = pytest.mark.bwrap


@pytest.fixture(scope="module")
def mirror() -> Iterator[LoopbackRegistry]:
    """The listed host: a package index on the host's loopback, as `localhost:<port>`."""
    with LoopbackRegistry("the mirror") as registry:
        yield registry


@pytest.fixture(scope="module")
def unlisted() -> Iterator[LoopbackRegistry]:
    with LoopbackRegistry("an unlisted server") as registry:
        yield registry


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "widgets"
    root.mkdir()
    return root


async def start_proxy(
    items: list[str], cap: tuple[str, ...], static_hosts: dict[str, list[str]] | None = None
) -> EgressProxy:
    """The agent's proxy for `network: items`, under HONK_NETWORK_ALLOW=cap."""
    allowed = Cap(cap, Presets.with_overrides({}))
    rules = compile_rules(items, setting="network", cap=allowed)
    config = proxy_config(rules, setting="network", cap=allowed, static_hosts=static_hosts)
    return await EgressProxy.start(config, phase="agent")


def environment_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def through(root: Path, proxy: EgressProxy, python: SandboxPython | None = None) -> Sandbox:
    sandbox = Sandbox(root, python=python)
    sandbox.proxy = proxy.sandbox
    return sandbox


async def test_a_listed_host_is_reachable_and_nothing_else(
    checkout: Path,
    mirror: LoopbackRegistry,
    unlisted: LoopbackRegistry,
    monkeypatch: pytest.MonkeyPatch,
    sandbox_python: SandboxPython,
) -> None:
    secret = "whsec-" + secrets.token_hex(8)
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    listed = f"localhost:{mirror.port}"
    proxy = await start_proxy([listed], cap=(listed,))
    try:
        # The proxy process holds nothing of Honk's environment.
        environ = environment_of(proxy.process.pid)
        assert {line.split(b"=")[0] for line in environ if line} == {b"PATH", b"LANG"}
        assert all(secret.encode() not in line for line in environ)
        sandbox = through(checkout, proxy, sandbox_python)  # pip, as an agent would run it
        index = f"http://{listed}/simple/"
        allowed = await sandbox.run(
            f"curl -sS http://{listed}/ && "
            "python -m pip download -q --disable-pip-version-check --no-cache-dir "
            f"--index-url {index} --no-deps -d /tmp/x honk-probe && ls /tmp/x"
        )
        assert allowed.exit_code == 0, allowed.output
        assert "hello from the mirror" in allowed.output
        assert mirror.wheel_file in allowed.output
        assert f"/files/{mirror.wheel_file}" in mirror.paths

        refused = await sandbox.run(
            f"curl -sS --noproxy '' http://127.0.0.1:{unlisted.port}/; echo; "
            f"curl -sS http://localhost:{unlisted.port}/; echo; "
            "curl -sS --noproxy '' http://169.254.169.254/latest/meta-data/; echo; "
            f"curl -sS -p --noproxy '' -o /dev/null -w 'tunnel %{{http_connect}}\\n' "
            f"http://[::1]:{mirror.port}/;"
            # A raw connection that ignores the proxy variables: the sandbox's own loopback.
            " python -c \"import socket; socket.create_connection(('127.0.0.1', "
            f'{mirror.port}), timeout=3)" 2>&1 | tail -n 1'
        )
        out = refused.output
        assert f"refused 127.0.0.1:{unlisted.port}: it is an IP address" in out
        assert f"refused localhost:{unlisted.port}: it is not in this run's list" in out
        assert "HONK_NETWORK_ALLOW" in out and "`network:` in .github/honk.yml" in out
        assert "refused 169.254.169.254:80: it is an IP address" in out
        assert "tunnel 403" in out
        assert "ConnectionRefusedError" in out
        assert "hello from" not in out and unlisted.paths == []
    finally:
        summary = await proxy.stop()
    assert proxy.process.returncode is not None and not proxy.directory.exists()
    assert {(r.host, r.port) for r in summary.allowed} == {("localhost", mirror.port)}
    assert {r.host for r in summary.refused} == {"127.0.0.1", "localhost", "169.254.169.254", "::1"}
    pip = [r for r in summary.allowed if r.down >= len(mirror.wheel)]
    assert pip and pip[0].address == "127.0.0.1" and pip[0].up > 0 and pip[0].seconds >= 0
    text = summary.describe()
    assert text.startswith(f"3 requests to {listed} (") and " down, " in text
    # Refused names as registrable domains, addresses as such: nothing the sandbox chose.
    assert text.endswith("; 4 refused: an IP address (3), localhost")


async def test_a_wildcard_never_reaches_a_private_address(
    checkout: Path, mirror: LoopbackRegistry
) -> None:
    exact = f"sneaky.example:{mirror.port}"
    resolved = {
        "sneaky.example": ["127.0.0.1"],
        "inner.example": ["10.0.0.7"],
        "metadata.example": ["169.254.169.254"],
        "mapped.example": ["::ffff:127.0.0.1"],
        "mixed.example": ["93.184.215.14", "192.168.1.1"],
    }
    # Any host for the repository, but only the operator's own exact entry may be private.
    proxy = await start_proxy(["*.example", exact], cap=("*", exact), static_hosts=resolved)
    try:
        names = ("sneaky", "inner", "metadata", "mapped", "mixed")
        result = await through(checkout, proxy).run(
            "".join(f"curl -sS http://{name}.example/; echo; " for name in names)
            + f"curl -sS -p -o /dev/null -w 'tunnel %{{http_connect}}\\n' https://sneaky.example/;"
            f" curl -sS http://{exact}/"
        )
    finally:
        summary = await proxy.stop()
    out = result.output
    assert "sneaky.example resolves to 127.0.0.1, a loopback address" in out
    assert "inner.example resolves to 10.0.0.7, a private address" in out
    assert "metadata.example resolves to 169.254.169.254, a link-local address" in out
    assert "mapped.example resolves to ::ffff:127.0.0.1, a loopback address" in out
    assert "mixed.example resolves to 192.168.1.1, a private address" in out
    assert "tunnel 403" in out
    # The exact entry the operator wrote reaches the address it resolved to, and only it.
    assert out.rstrip().endswith("hello from the mirror")
    assert [(r.host, r.port, r.address) for r in summary.allowed] == [
        ("sneaky.example", mirror.port, "127.0.0.1")
    ]
    assert len(summary.refused) == 6


async def test_the_hosts_abstract_unix_sockets_are_unreachable(
    checkout: Path, mirror: LoopbackRegistry
) -> None:
    name = f"honk-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)
        listener.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect("\0" + name)  # reachable from the host: the attempt below can fail
        listed = f"localhost:{mirror.port}"
        proxy = await start_proxy([listed], cap=(listed,))
        try:
            result = await through(checkout, proxy).run(
                f"socat -u ABSTRACT-CONNECT:{name} - 2>&1; echo socat=$?"
            )
        finally:
            await proxy.stop()
    assert "Connection refused" in result.output and "socat=1" in result.output


def test_never_the_hosts_network(checkout: Path) -> None:
    """Whatever the phase: a network namespace of the sandbox's own, the proxy bound in."""
    sandbox = Sandbox(checkout)
    bare = sandbox.command_line("true")
    assert "--unshare-all" in bare and "--share-net" not in bare
    assert not any("proxy" in arg.lower() or "socat" in arg for arg in bare)
    proxied = sandbox.command_line("true", proxy=SandboxProxy(checkout / "proxy.sock"))
    assert "--unshare-all" in proxied and "--share-net" not in proxied
    bind = proxied.index("--ro-bind", proxied.index(str(checkout / "proxy.sock")) - 1)
    assert proxied[bind + 1 : bind + 3] == [str(checkout / "proxy.sock"), INSIDE_SOCKET]
    assert "HTTPS_PROXY" in proxied and "no_proxy" in proxied


def test_summary_text_for_the_tracking_comment() -> None:
    records = [Record("pypi.org", 443, "CONNECT", True, up=2_000, down=1_500_000)] * 13
    records += [Record("files.pythonhosted.org", 443, "CONNECT", True, down=9_000_000)]
    records += [Record("evil.example", 443, "CONNECT", False, reason="not allowed")]
    text = NetworkSummary("setup", tuple(records)).describe()
    assert text == (
        "14 requests to pypi.org, files.pythonhosted.org (28.5 MB down, 26.0 kB up); "
        "1 refused: evil.example"
    )
    assert NetworkSummary("agent").describe() == "no requests"


def test_the_public_line_carries_no_name_the_sandbox_made_up() -> None:
    """A name the sandbox chose (a secret as its labels, its port, an address) never
    reaches the public line: refused names as registrable domains, allowed ones as the
    entry that allowed them. Every name stays in `details()`, for Honk's log."""
    secret = "s3cr3t" + secrets.token_hex(8)
    records = [
        Record(
            f"{secret}.githubusercontent.com", 443, "CONNECT", True, rule="*.githubusercontent.com"
        ),
        Record(f"{secret}.x.example", 80, "GET", reason="not allowed"),
        Record(f"a.{secret}.x.example", 8080, "GET", reason="not allowed"),
        Record(f"{secret}.b.example.co.uk", 443, "CONNECT", reason="not allowed"),
        Record("2001:db8::5ec:7e7", 443, "CONNECT", reason="not allowed"),
        Record("pypi.org", 443, "CONNECT", reason="not allowed"),
        Record("(malformed)", reason="a bare LF"),
    ]
    summary = NetworkSummary("agent", tuple(records))
    text = summary.describe()
    assert secret not in text and "5ec" not in text and "8080" not in text
    assert text == (
        "1 request to *.githubusercontent.com (0 B down, 0 B up); 6 refused: x.example (2), "
        "example.co.uk, an IP address, pypi.org, (malformed)"
    )
    details = "\n".join(summary.details())
    assert f"refused GET a.{secret}.x.example:8080 why='not allowed'" in details
    assert f"allowed CONNECT {secret}.githubusercontent.com:443" in details


async def test_a_refusal_says_what_would_allow_it(tmp_path: Path, mirror: LoopbackRegistry) -> None:
    """The relay in this process, on a socket of its own, with a resolver that counts."""
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    def relay_for(cap: Cap, items: list[str]) -> EgressRelay:
        rules = compile_rules(items, setting="network", cap=cap)
        config = proxy_config(rules, setting="network", cap=cap)
        return EgressRelay(config, record, resolver)

    def record(entry: Record) -> None:
        records.append(entry)
        recorded.set()

    async def ask(relay: EgressRelay, request: str) -> bytes:
        recorded.clear()
        path = str(tmp_path / f"relay-{len(records)}.sock")
        server = await asyncio.start_unix_server(relay.handle, path=path)
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(request.encode())
            answer = await reader.read()
            writer.close()
            # The relay records the connection as it ends.
            await asyncio.wait_for(recorded.wait(), 5)
        finally:
            server.close()
            await server.wait_closed()
        return answer

    records: list[Record] = []
    recorded = asyncio.Event()
    presets_only = relay_for(Cap(None, Presets.with_overrides({})), ["npm"])
    answer = await ask(presets_only, "CONNECT files.pythonhosted.org:443 HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 Forbidden by Honk: files.pythonhosted.org:443")
    assert b"add the preset `pypi` to `network:` in .github/honk.yml" in answer
    answer = await ask(presets_only, "CONNECT evil.example:443 HTTP/1.1\r\n\r\n")
    assert b"must be allowed in HONK_NETWORK_ALLOW first" in answer
    assert asked == []  # a refused name is not even resolved
    listed = f"localhost:{mirror.port}"
    own = relay_for(Cap((listed,), Presets.with_overrides({})), [listed])
    answer = await ask(
        own, f"GET http://{listed}/ HTTP/1.1\r\nHost: {listed}\r\nConnection: keep-alive\r\n\r\n"
    )
    assert answer.endswith(b"hello from the mirror\n") and asked == ["localhost"]
    assert (records[-1].address, records[-1].method, records[-1].allowed) == (
        "127.0.0.1",
        "GET",
        True,
    )
    for bad in (
        "GET / HTTP/1.1\r\n\r\n",
        "CONNECT a b c\r\n\r\n",
        "CONNECT x..y:443 HTTP/1.1\r\n\r\n",
    ):
        assert (await ask(own, bad)).startswith(b"HTTP/1.1 400 Bad Request")


async def test_the_proxy_ends_with_honk(mirror: LoopbackRegistry) -> None:
    """Honk killed: the kernel closes the proxy's stdin, and the proxy stops on its own."""
    listed = f"localhost:{mirror.port}"
    proxy = await start_proxy([listed], cap=(listed,))
    assert proxy.process.stdin is not None
    proxy.process.stdin.close()  # what Honk's death does to the pipe
    async with asyncio.timeout(10):
        await proxy.process.wait()
    assert not proxy.sandbox.socket_path.exists()
    await proxy.stop()
    assert not proxy.directory.exists()


async def raw_request(proxy: EgressProxy, data: bytes) -> bytes:
    """`data` sent to the proxy's socket as a sandboxed client would; its whole answer."""
    reader, writer = await asyncio.open_unix_connection(str(proxy.sandbox.socket_path))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_a_huge_request_is_one_refusal_and_the_record_goes_on(
    mirror: LoopbackRegistry,
) -> None:
    """A 200 KB request method once ended Honk's reader of the records, so `stop()` raised,
    the run failed and its temporary directory stayed; now every field a client chooses has
    a limit, each over-long one is a refusal that says which, and reading goes on."""
    listed = f"localhost:{mirror.port}"
    proxy = await start_proxy([listed], cap=(listed,))

    def request(method: str = "GET", path: str = "/", headers: str = "") -> bytes:
        return (
            f"{method} http://{listed}{path} HTTP/1.1\r\nHost: {listed}\r\n{headers}\r\n".encode()
        )

    try:
        before = await raw_request(proxy, request(path="/upload-before"))
        attempts = {
            "method of 200 KB": request("A" * 200_000),
            "method of 40": request("A" * 40),
            "target of 9 KB": request(path="/" + "a" * 9000),
            "101 header fields": request(headers="X-A: 1\r\n" * 101),
            "a header value of 9 KB": request(headers=f"X-A: {'a' * 9000}\r\n"),
            "a header name of 300": request(headers=f"X-{'a' * 300}: 1\r\n"),
            "a head of 300 KB": request(headers=f"X-A: {'a' * 8000}\r\n" * 38),
        }
        answers = {name: await raw_request(proxy, data) for name, data in attempts.items()}
        after = await raw_request(proxy, request(path="/after"))
    finally:
        summary = await proxy.stop()  # never raises
    assert before.endswith(b"hello from the mirror\n") and after.endswith(
        b"hello from the mirror\n"
    )
    statuses = {name: answer.split(b"\r\n")[0].decode() for name, answer in answers.items()}
    assert statuses == {
        "method of 200 KB": "HTTP/1.1 431 Request Header Fields Too Large",
        "method of 40": "HTTP/1.1 400 Bad Request",
        "target of 9 KB": "HTTP/1.1 414 URI Too Long",
        "101 header fields": "HTTP/1.1 431 Request Header Fields Too Large",
        "a header value of 9 KB": "HTTP/1.1 431 Request Header Fields Too Large",
        "a header name of 300": "HTTP/1.1 431 Request Header Fields Too Large",
        "a head of 300 KB": "HTTP/1.1 431 Request Header Fields Too Large",
    }
    assert b"the request head is larger than 64 KiB" in answers["method of 200 KB"]
    assert b"the request method is longer than 32 characters" in answers["method of 40"]
    assert not proxy.directory.exists() and proxy.process.returncode is not None
    assert "/upload-before" in mirror.paths and "/after" in mirror.paths
    assert not any(path.startswith("/aaaa") for path in mirror.paths)
    assert [r.allowed for r in summary.records] == [True, *[False] * len(attempts), True]
    assert summary.malformed == 0
    assert all(len(json.dumps(asdict(r))) < 1500 for r in summary.records)
    text = summary.describe()
    assert text.startswith(f"2 requests to {listed} (") and text.endswith(
        "7 refused: (malformed) (7)"
    )


async def test_the_record_reader_reads_past_lines_that_are_no_record(tmp_path: Path) -> None:
    """Whatever the proxy's stdout holds (a line too long for the reader, text, a record of
    the wrong shape), each is one unreadable record: the records around them are kept,
    stopping returns a summary, and the proxy's directory is removed."""
    good = json.dumps(asdict(Record("pypi.org", 443, "CONNECT", True, up=5, down=7)))
    stand_in = (
        "import sys\n"
        "sys.stdin.readline()\n"
        "print('ready', flush=True)\n"
        f"print({good!r})\n"
        "print('A' * 200_000)\n"
        "print('not a record')\n"
        'print(\'{"host": 7, "allowed": "yes"}\')\n'
        f"print({good!r}, flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", stand_in,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, limit=RECORD_LINE_LIMIT,
    )  # fmt: skip
    directory = tmp_path / "honk-egress-stand-in"
    directory.mkdir()
    proxy = EgressProxy("agent", directory, process, SandboxProxy(directory / "proxy.sock"))
    config = proxy_config((), setting="network", cap=Cap((), Presets.with_overrides({})))
    await proxy._handshake(config)
    await asyncio.sleep(0.3)
    summary = await proxy.stop()
    assert [r.host for r in summary.records] == ["pypi.org", "pypi.org"]
    assert summary.malformed == 3 and not directory.exists()
    assert summary.describe() == (
        "2 requests to pypi.org (14 B down, 10 B up); 3 unreadable records"
    )


async def test_a_plain_response_says_connection_close_whatever_the_server_said(
    tmp_path: Path,
) -> None:
    """One request per connection: the client is told so in the response's head (the
    server's own keep-alive left out), so it never sends a second request on the socket."""

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
            b"Keep-Alive: timeout=5, max=100\r\nX-Kept: yes\r\n\r\nok"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(keep_alive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listed = f"localhost:{port}"
    proxy = await start_proxy([listed], cap=(listed,))
    try:
        answer = await raw_request(
            proxy, f"GET http://{listed}/x HTTP/1.1\r\nHost: {listed}\r\n\r\n".encode()
        )
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()
    interim, final = answer.split(b"\r\n\r\n", 1)
    assert interim == b"HTTP/1.1 100 Continue"
    head, body = final.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        b"Content-Length: 2",
        b"X-Kept: yes",
        b"Connection: close",
    ]
    assert body == b"ok"
