"""What every `honk doctor` check shares: `Check` (one line: pass, warn, fail or skip), its
marks, the thresholds, and why a host could not be reached, in the OS's words."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from app.log import redact

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# A warning: Honk runs, with less (no run pages, a guessable secret); it does not fail.
MARKS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "-"}
ASCII_MARKS = {PASS: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
CHECK_TIMEOUT = 60.0  # seconds for any one check
# A webhook secret shorter than this, or of fewer distinct characters, is guessable.
MIN_SECRET_LENGTH = 20
MIN_SECRET_CHARACTERS = 8
NEW_SECRET = "python -c 'import secrets; print(secrets.token_hex(20))'"
ANTHROPIC_API_URL = "https://api.anthropic.com"
SHOWN_REPOS = 10  # repositories named per installation; the rest are counted
SLACK_TEST_MESSAGE = ":stethoscope: `honk doctor`: Honk can post in this channel."


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, WARN, FAIL or SKIP
    detail: str

    def line(self, ascii_only: bool = False) -> str:
        mark = (ASCII_MARKS if ascii_only else MARKS)[self.status]
        return f"{mark} {self.name}: {redact(self.detail)}"


def unreachable(exc: BaseException) -> str | None:
    """Why a connection could not be made, in the OS's words ("Connection refused", "Name or
    service not known"), when that is what `exc` or an exception behind it says; else None."""
    seen: BaseException | None = exc
    for _ in range(10):  # causes chain; a cycle is not followed for ever
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror):
            return seen.strerror or "the name does not resolve"
        if isinstance(seen, aiohttp.ClientConnectorCertificateError):
            return f"the TLS certificate is not trusted ({seen.certificate_error})"
        if isinstance(seen, aiohttp.ClientConnectorError):
            seen = seen.os_error
            continue
        if isinstance(seen, TimeoutError):
            return "no answer (timed out)"
        if isinstance(seen, OSError) and seen.errno:
            # asyncio words a refused connection "Connect call failed (...)": the errno's
            # own name says it for people.
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


def host_and_setting(url: str, setting: str) -> str:
    """The host (and port, when not the scheme's) of `url`, and the setting that names it."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port} ({setting})" if parts.port else f"{host} ({setting})"
