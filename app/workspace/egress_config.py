"""What the egress proxy is told and what it tells: its configuration (on stdin, nothing
secret), one `Record` per connection (on stdout), a request it will act on, and its refusals
in words.

Standard library and `app.network_policy` only: the proxy's own process loads this module by
path (app.workspace.egress), beside `egress_wire`, `egress_streams` and `egress_proxy`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from app.network_policy import Entry, Rule
from app.workspace.egress_wire import WireError


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


def refusal(error: WireError) -> Refused:
    return Refused(error.status, error.title, f"Honk's proxy: {error.reason}.\n", error.reason)


def private_refusal(target: str, host: str, address: str, problem: str) -> Refused:
    body = (
        f"Honk's network policy refused {target}: {host} resolves to {address}, {problem}. "
        f"Only an exact entry ({target}) the operator allows (HONK_NETWORK_ALLOW or "
        "HONK_NETWORK_PRESETS) may reach such an address.\n"
    )
    return Refused(
        403, f"Forbidden by Honk: {target} resolves to {problem}", body, f"{address}: {problem}"
    )


def bad_request(reason: str) -> Refused:
    return Refused(400, "Bad Request", f"Honk's proxy: {reason}.\n", reason)


def shown_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
