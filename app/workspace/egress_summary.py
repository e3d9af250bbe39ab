"""One phase's connections summed up: the public line for the tracking comment (names the
sandbox chose never shown as they are: the entry that allowed them, a refused one's
registrable domain), and every connection in full for Honk's own log."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from app.network_policy import ip_literal
from app.workspace.egress_config import Record

SHOWN_HOSTS = 6  # hosts named in a summary before "and N more"
# Per phase; past it, connections are only counted (the proxy's reader keeps this many).
KEPT_RECORDS = 10_000


@dataclass(frozen=True)
class NetworkSummary:
    """One phase's connections, for the tracking comment and the run's records."""

    phase: str  # "setup" or "agent"
    records: tuple[Record, ...] = ()
    # Past KEPT_RECORDS: (allowed, refused, bytes down, bytes up) of the connections not kept.
    uncounted: tuple[int, int, int, int] = (0, 0, 0, 0)
    malformed: int = 0  # lines from the proxy that were no record

    @property
    def allowed(self) -> list[Record]:
        return [r for r in self.records if r.allowed]

    @property
    def refused(self) -> list[Record]:
        return [r for r in self.records if not r.allowed]

    def describe(self) -> str:
        """The public line, e.g. "14 requests to pypi.org, files.pythonhosted.org (9.1 MB
        down, 52 kB up); 2 refused: evil.example (2)".

        Names come from the sandbox, so a name the sandbox chose could carry data out (a
        secret as a host name) onto the tracking comment: an allowed connection shows the
        entry that allowed it (`*.example.org`, never the name under it), a refused one only
        its registrable domain (no port, no labels below it; an address as "an IP address").
        `details()` has every name, for Honk's own log.
        """
        allowed, refused = self.allowed, self.refused
        more_allowed, more_refused, more_down, more_up = self.uncounted
        if not self.records and not self.malformed:
            return "no requests"
        parts = []
        if allowed:
            down = sum(r.down for r in allowed) + more_down
            up = sum(r.up for r in allowed) + more_up
            count = _count(len(allowed) + more_allowed, "request")
            hosts = _names(r.rule or _target(r) for r in allowed)
            parts.append(f"{count} to {hosts} ({_size(down)} down, {_size(up)} up)")
        if refused:
            count = str(len(refused) + more_refused)
            parts.append(f"{count} refused: {_counted(public_name(r.host) for r in refused)}")
        if self.malformed:
            parts.append(_count(self.malformed, "unreadable record"))
        return "; ".join(parts)

    def details(self) -> list[str]:
        """Every connection as the proxy saw it, full names included: for Honk's log only."""
        lines = []
        for r in self.records:
            verdict = "allowed" if r.allowed else "refused"
            seen = "".join(
                f" {key}={value!r}"
                for key, value in (("sni", r.sni), ("host", r.host_header), ("why", r.reason))
                if value
            )
            host = f"[{r.host}]" if ":" in r.host else r.host
            lines.append(f"{verdict} {r.method or '-'} {host}:{r.port}{seen}")
        return lines


def _target(record: Record) -> str:
    if record.port in (0, 80, 443):
        return record.host
    host = f"[{record.host}]" if ":" in record.host else record.host
    return f"{host}:{record.port}"


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The public suffix list the package ships (ICANN's part; no network): built once."""
    return PublicSuffixList(only_icann=True)


def public_name(host: str) -> str:
    """What the public line says of a refused host: its registrable domain (`x.example` for
    `<anything>.x.example`, `example.co.uk` for `a.b.example.co.uk`); a name that is itself a
    public suffix or one label as it is; an address as "an IP address"."""
    if ip_literal(host) is not None:
        return "an IP address"
    if host.startswith("("):  # "(malformed)": the proxy's own word, not a name
        return host
    return _suffixes().privatesuffix(host) or host


def _counted(names: Iterable[str]) -> str:
    counts = Counter(names)
    shown = [f"{name} ({n})" if n > 1 else name for name, n in counts.most_common()]
    more = len(shown) - SHOWN_HOSTS
    listed = ", ".join(shown[:SHOWN_HOSTS])
    return f"{listed} and {more} more" if more > 0 else listed


def _names(targets: object) -> str:
    distinct = list(dict.fromkeys(targets))  # type: ignore[call-overload]
    shown = ", ".join(distinct[:SHOWN_HOSTS])
    more = len(distinct) - SHOWN_HOSTS
    return f"{shown} and {more} more" if more > 0 else shown


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _size(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"
