"""How a sandboxed command reaches its phase's proxy: the proxy's socket bound in, socat
inside listening on 127.0.0.1:3128, the standard proxy variables pointing there, the
sandbox's own loopback going direct."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.network_policy import Rule

PROXY_PORT = 3128  # inside the sandbox's own network namespace: clashes with nothing outside
INSIDE_SOCKET = "/run/honk-egress.sock"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SandboxProxy:
    """What a sandboxed command needs to use a running proxy: a bind, socat, variables."""

    socket_path: Path
    no_proxy: tuple[str, ...] = LOOPBACK_NAMES

    def bwrap_args(self) -> list[str]:
        args = ["--ro-bind", str(self.socket_path), INSIDE_SOCKET]
        for key, value in self.env().items():
            args += ["--setenv", key, value]
        return args

    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{PROXY_PORT}"
        env: dict[str, str] = {}
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            env[name] = env[name.upper()] = url
        env["no_proxy"] = env["NO_PROXY"] = ",".join(self.no_proxy)
        return env

    def forwarder(self) -> str:
        """Shell that starts socat in the background and waits (without connecting, which
        the proxy would record) until it listens."""
        port = f"{PROXY_PORT:04X}"
        return (
            f"socat -b 262144 TCP-LISTEN:{PROXY_PORT},bind=127.0.0.1,reuseaddr,fork "
            f"UNIX-CONNECT:{INSIDE_SOCKET} </dev/null >/dev/null 2>&1 & "
            "for _ in $(seq 400); do while read -r _ a _ s _; do "
            f'[ "$a $s" = "0100007F:{port} 0A" ] && break 2; done </proc/net/tcp; '
            "sleep 0.005; done; "
        )


def no_proxy(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The sandbox's own loopback goes direct, unless the rules name that name (the host's
    `localhost:8080` mirror is reached through the proxy then)."""
    named = {rule.entry.host for rule in rules}
    return tuple(name for name in LOOPBACK_NAMES if name not in named)
