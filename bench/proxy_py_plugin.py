"""The contender: the same policy as a proxy.py plugin (`python -m proxy --plugins ...`).

Decides by Honk's own rules (app.network_policy), connects to the vetted address it
resolved (`resolve_dns`), refuses with a 403 naming the host, and prints one JSON line per
connection, as Honk's own relay does; only for `python -m bench proxy`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

from proxy.common.utils import text_
from proxy.http.exception import HttpRequestRejected
from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

from app.network_policy import Entry, Rule, address_problem, match, request_host

RULES = tuple(
    Rule(Entry(**entry), ok) for entry, ok in json.loads(os.environ["HONK_BENCH_PROXY_RULES"])
)


class Policy(HttpProxyBasePlugin):
    def before_upstream_connection(self, request: HttpParser) -> HttpParser | None:
        named = request_host(text_(request.host or b""))
        port = request.port or 0
        rule = match(RULES, named[0], port) if named else None
        if rule is None or (named is not None and named[1] and not rule.entry.exact):
            target = f"{text_(request.host)}:{port}"
            raise HttpRequestRejected(
                status_code=403,
                reason=b"Forbidden",
                body=f"Honk's network policy refused {target}: not in this run's list.\n".encode(),
            )
        return request

    def resolve_dns(self, host: str, port: int) -> tuple[str | None, Any]:
        named = request_host(host)
        assert named is not None
        rule = match(RULES, named[0], port)
        addresses = [named[0]] if named[1] else [
            str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ]  # fmt: skip
        for address in addresses:
            problem = address_problem(address)
            if problem and not (rule and rule.private_ok):
                raise HttpRequestRejected(status_code=403, reason=b"Forbidden", body=b"private\n")
        return addresses[0], None

    def on_access_log(self, context: dict[str, Any]) -> dict[str, Any] | None:
        keys = ("server_host", "server_port", "request_bytes", "response_bytes")
        sys.stdout.write(json.dumps({k: context.get(k) for k in keys}) + "\n")
        sys.stdout.flush()
        return None
