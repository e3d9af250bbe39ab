"""`honk serve`'s ports, bound before anything starts: a port in use is one line, not a
traceback after the workers have started. Standard library only, so that the refusal comes
before the web side is even imported."""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """A port Honk cannot listen on, in one line that says what to change."""


def listen(host: str, port: int, *, fix: str) -> list[socket.socket]:
    """Sockets bound to `port` on every address of `host`, before anything else starts.

    Bound first so that a port in use is one line at start-up, not a traceback after the
    workers have started. Port 0 takes a free port (the same one on every address); the
    sockets' `getsockname()` says which. `fix` says which setting changes the port.
    Blocking (name resolution): call it before the event loop runs.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"HOST {host} cannot be resolved: {exc.strerror} (set HOST)") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    chosen = port
    try:
        for family, kind, proto, _name, address in addresses:
            if (family, str(address[0])) in seen:
                continue
            seen.add((family, str(address[0])))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # As asyncio's create_server does: restart at once after a stop (TIME_WAIT),
            # and an IPv6 socket for IPv6 only (0.0.0.0 and :: are two sockets).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], chosen, *address[2:]))
            sock.listen(128)
            chosen = sock.getsockname()[1]
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(_listen_problem(exc, host, chosen, fix)) from None
    return sockets


def _listen_problem(exc: OSError, host: str, port: int, fix: str) -> str:
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where} is in use ({fix})"
    if exc.errno == errno.EACCES:
        return f"{where} is not allowed: {exc.strerror} (ports below 1024 need privileges; {fix})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: {exc.strerror} (set HOST)"
    return f"cannot listen on {where}: {exc.strerror or type(exc).__name__}"
