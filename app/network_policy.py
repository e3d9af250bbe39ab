"""What a sandbox may reach: host entries, presets, the operator's cap, and address vetting.

Plain data and the standard library only: the settings validate with it, `.github/honk.yml`
is parsed with it, and the egress proxy's own process (which must know nothing of Honk's
settings or secrets) decides every connection with it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

OFF = "off"
ANY = "*"  # in HONK_NETWORK_ALLOW: repositories may name any host (never a private address)
# An operator's exact entry with this prefix (`tcp://git.example:22`) lets a CONNECT tunnel to
# it carry any protocol; every other tunnel carries TLS only, its SNI the name it connects to.
PLAIN_PREFIX = "tcp://"
_OPERATOR_SETTINGS = ("HONK_NETWORK_ALLOW", "HONK_NETWORK_PRESETS")
SETUP_DEFAULT = "registries"
# Entries without a port allow these: plain HTTP and HTTPS.
WEB_PORTS = (80, 443)
# A preset's items are host entries or other presets' names.
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {
    "pypi": ("pypi.org", "files.pythonhosted.org"),
    # Yarn (1 and berry) defaults to its own mirror of the npm registry.
    "npm": ("registry.npmjs.org", "registry.yarnpkg.com"),
    # Sparse index (cargo 1.70+), downloads, and crates.io's API (older download URLs).
    "crates": ("index.crates.io", "static.crates.io", "crates.io"),
    # The module proxy and the checksum database (GOPROXY, GOSUMDB defaults).
    "go": ("proxy.golang.org", "sum.golang.org"),
    "debian": ("deb.debian.org", "security.debian.org"),
    "ubuntu": ("archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com"),
    SETUP_DEFAULT: ("pypi", "npm", "crates", "go", "debian", "ubuntu"),
}
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_PRESET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_NUMERIC = re.compile(r"[0-9a-fx.]+")
_ENTRY = re.compile(r"(?P<wild>\*\.)?(?P<host>[^:\[\]]+|\[[0-9a-f:.]+\])(:(?P<port>\d{1,5}))?")


class NetworkSettingError(ValueError):
    """An entry, a preset or a request the policy cannot take; the message says which."""


class NotAllowed(NetworkSettingError):
    """A repository asked for hosts or presets the operator's HONK_NETWORK_ALLOW does not allow."""

    def __init__(self, setting: str, refused: Sequence[str]) -> None:
        self.setting, self.refused = setting, tuple(refused)
        super().__init__(
            f"{setting}: {', '.join(refused)} "
            f"{'is' if len(refused) == 1 else 'are'} not allowed by this Honk's operator "
            "(HONK_NETWORK_ALLOW names what repositories may ask for)"
        )


@dataclass(frozen=True)
class Entry:
    """`pypi.org`, `*.pythonhosted.org` (any name below it, not itself), `host:port`."""

    host: str  # lower case; for a wildcard, the part after "*."
    port: int | None = None  # None: ports 80 and 443
    wildcard: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return ("*." if self.wildcard else "") + host + (f":{self.port}" if self.port else "")

    @property
    def exact(self) -> bool:
        """Names one host and one port: the only kind that may reach a private address."""
        return not self.wildcard and self.port is not None

    def matches(self, host: str, port: int) -> bool:
        if port not in ((self.port,) if self.port else WEB_PORTS):
            return False
        return host.endswith("." + self.host) if self.wildcard else host == self.host

    def within(self, other: Entry) -> bool:
        """Every host and port this entry matches, `other` matches too."""
        if other.port is not None and self.port != other.port:
            return False
        if other.port is None and self.port not in (None, *WEB_PORTS):
            return False
        if not other.wildcard:
            return not self.wildcard and self.host == other.host
        return self.host.endswith("." + other.host) or (self.wildcard and self.host == other.host)


@dataclass(frozen=True)
class Rule:
    """An allowed entry; `private_ok` (an exact entry the operator wrote) skips address vetting;
    `plain_ok` (an exact entry the operator wrote as `tcp://host:port`) lets a CONNECT tunnel
    carry something other than TLS."""

    entry: Entry
    private_ok: bool = False
    plain_ok: bool = False


def split_plain(text: str) -> tuple[str, bool]:
    """An item without its `tcp://` prefix, and whether it had one."""
    item = text.strip().lower()
    if item.startswith(PLAIN_PREFIX):
        return item[len(PLAIN_PREFIX) :], True
    return item, False


def parse_rule(item: str, *, operator: bool) -> Rule:
    """An entry as a rule: an operator's exact entry may be private, a `tcp://` one plain."""
    text, plain = split_plain(item)
    entry = parse_entry(text)
    if plain and not entry.exact:
        raise NetworkSettingError(
            f"{item!r}: a {PLAIN_PREFIX} entry names one host and its port ({PLAIN_PREFIX}"
            "git.example:22)"
        )
    return Rule(entry, operator and entry.exact, operator and plain)


def parse_entry(text: str) -> Entry:
    """One host entry as written; NetworkSettingError says what is wrong with it."""
    found = _ENTRY.fullmatch(text.strip().lower())
    if not found:
        raise NetworkSettingError(_entry_help(text))
    host, wild = found["host"].rstrip("."), bool(found["wild"])
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        raise NetworkSettingError(f"{text!r}: the port must be 1 to 65535")
    literal = ip_literal(host)
    if literal is not None:
        if wild or port is None:
            raise NetworkSettingError(
                f"{text!r}: an IP address is allowed only with its port (10.0.0.5:3141)"
            )
        return Entry(literal, port)
    if not _NAME.fullmatch(host) or len(host) > 253 or host.rsplit(".", 1)[-1].isdigit():
        raise NetworkSettingError(_entry_help(text))
    if "." not in host and not wild and port is None:
        raise NetworkSettingError(
            f"{text!r} is not a preset ({', '.join(sorted(BUILTIN_PRESETS))}); a host name "
            "without a dot needs its port (localhost:8080)"
        )
    return Entry(host, port, wild)


def _entry_help(text: str) -> str:
    return f"{text!r} is not a host entry like pypi.org, *.pythonhosted.org or localhost:8080"


def is_preset_name(text: str) -> bool:
    """A word without dot, colon or star names a preset (a bare host needs a dot or a port)."""
    return bool(_PRESET_NAME.fullmatch(text.strip().lower()))


def parse_items(values: Iterable[str], setting: str) -> tuple[str, ...]:
    """A list as written (`off`, presets and entries), normalised; errors name `setting`."""
    items: list[str] = []
    operator = setting.startswith(_OPERATOR_SETTINGS)
    for value in values:
        item = value.strip().lower()
        if item == OFF or (item == ANY and setting == "HONK_NETWORK_ALLOW"):
            items.append(item)
            continue
        if split_plain(item)[1] and not operator:
            raise NetworkSettingError(
                f"{setting}: {item!r}: only the operator names {PLAIN_PREFIX} entries "
                "(HONK_NETWORK_ALLOW, HONK_NETWORK_PRESETS); name the host and port alone"
            )
        if not is_preset_name(item):
            try:
                rule = parse_rule(item, operator=operator)
            except NetworkSettingError as exc:
                raise NetworkSettingError(f"{setting}: {exc}") from None
            item = (PLAIN_PREFIX if rule.plain_ok else "") + str(rule.entry)
        items.append(item)
    if OFF in items and len(items) > 1:
        raise NetworkSettingError(f"{setting}: `off` cannot be mixed with hosts or presets")
    return tuple(dict.fromkeys(i for i in items if i != OFF))


def request_host(text: str) -> tuple[str, bool] | None:
    """A host as a client named it, normalised, and whether it is an IP address; None when
    it is neither a host name nor an address."""
    host = text.strip().lower()
    literal = ip_literal(host)
    if literal is not None:
        return literal, True
    host = host.removesuffix(".")
    if _NAME.fullmatch(host) and len(host) <= 253 and not host.rsplit(".", 1)[-1].isdigit():
        return host, False
    return None


def ip_literal(host: str) -> str | None:
    """The address `host` spells, however oddly (`127.1`, `0x7f.1`, `[::1]`), else None."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not _NUMERIC.fullmatch(bare):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(bare))  # the forms getaddrinfo would accept
    except OSError:
        return None


# -- presets and the operator's cap -------------------------------------------------------


@dataclass(frozen=True)
class Presets:
    """The built-in presets with the operator's (HONK_NETWORK_PRESETS) over them."""

    items: Mapping[str, tuple[str, ...]]
    operator: frozenset[str] = frozenset()  # names the operator defined or replaced

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Sequence[str]]) -> Presets:
        items = dict(BUILTIN_PRESETS)
        for name, values in overrides.items():
            if not is_preset_name(name) or name == OFF:
                raise NetworkSettingError(f"HONK_NETWORK_PRESETS: {name!r} is not a preset name")
            items[name] = parse_items(values, f"HONK_NETWORK_PRESETS ({name})")
        presets = cls(items, frozenset(overrides))
        for name in presets.items:
            try:
                presets.rules(name)  # unknown names and cycles are refused now, not in a run
            except NetworkSettingError as exc:
                raise NetworkSettingError(f"HONK_NETWORK_PRESETS ({name}): {exc}") from None
        return presets

    def rules(self, name: str, _seen: tuple[str, ...] = ()) -> list[Rule]:
        """The preset's entries; exact ones in the operator's own presets may be private."""
        if name not in self.items:
            raise NetworkSettingError(_not_a_preset(name, self.items))
        if name in _seen:
            raise NetworkSettingError(f"network preset {name!r} includes itself")
        rules: list[Rule] = []
        for item in self.items[name]:
            if is_preset_name(item):
                rules += self.rules(item, (*_seen, name))
            else:
                rules.append(parse_rule(item, operator=name in self.operator))
        return rules


@dataclass(frozen=True)
class Cap:
    """What repositories may ask for (HONK_NETWORK_ALLOW); the default: any preset."""

    items: tuple[str, ...] | None  # None: every preset, no other host
    presets: Presets

    def allows(self, item: str) -> bool:
        if self.items is None:
            return is_preset_name(item)
        if ANY in self.items or item in self.items:
            return True
        allowed = [rule.entry for rule in self.rules()]
        # A preset is allowed when the cap covers all of it (`npm` when it names `registries`).
        wanted = [r.entry for r in self.presets.rules(item)] if is_preset_name(item) else []
        return all(
            any(entry.within(cap) for cap in allowed) for entry in wanted or [parse_entry(item)]
        )

    def covers(self, host: str, port: int) -> bool:
        """Whether a repository could allow `host:port` (for the proxy's refusal text)."""
        if self.items is not None and ANY in self.items:
            return True
        return any(rule.entry.matches(host, port) for rule in self.rules())

    def rules(self) -> list[Rule]:
        """Everything the cap allows as entries; its exact ones are the operator's own."""
        names = self.presets.items if self.items is None else self.items
        rules: list[Rule] = []
        for item in names:
            if is_preset_name(item):
                rules += self.presets.rules(item)
            elif item != ANY:
                rules.append(parse_rule(item, operator=True))
        return rules


def compile_rules(items: Sequence[str], *, setting: str, cap: Cap) -> tuple[Rule, ...]:
    """A repository's `network:` or `setup_network:` as the proxy's rules.

    Anything the cap does not allow is refused (NotAllowed names it). An exact entry may
    reach a private address only if the operator wrote that same entry (in the cap or in
    one of its presets): a repository alone can never aim the proxy at the host's services.
    Likewise a tunnel carries other than TLS only to an entry the operator wrote as
    `tcp://host:port`.
    """
    known = cap.presets.items
    unknown = [item for item in items if is_preset_name(item) and item not in known]
    if unknown:
        raise NetworkSettingError(f"{setting}: {_not_a_preset(unknown[0], known)}")
    refused = [item for item in items if not cap.allows(item)]
    if refused:
        raise NotAllowed(setting, refused)
    operators = cap.rules()
    vouched = {rule.entry for rule in operators if rule.private_ok}
    plain = {rule.entry for rule in operators if rule.plain_ok}
    rules: list[Rule] = []
    for item in items:
        if is_preset_name(item):
            rules += cap.presets.rules(item)
        else:
            entry = parse_entry(item)
            rules.append(Rule(entry, entry in vouched, entry in plain))
    return tuple(dict.fromkeys(rules))


def _not_a_preset(name: str, known: Iterable[str]) -> str:
    return (
        f"{name!r} is not a preset ({', '.join(sorted(known))}); a host name without a dot "
        "needs its port (localhost:8080)"
    )


def setup_default(cap: Cap) -> tuple[str, ...]:
    """`setup_network:` when a repository names none: the registries preset, as far as the
    operator's cap allows it (whole, else those of its parts it allows)."""
    if cap.allows(SETUP_DEFAULT):
        return (SETUP_DEFAULT,)
    return tuple(i for i in cap.presets.items.get(SETUP_DEFAULT, ()) if cap.allows(i))


def match(rules: Sequence[Rule], host: str, port: int) -> Rule | None:
    """The rule that lets `host:port` through, an operator-vouched exact one first."""
    found = [rule for rule in rules if rule.entry.matches(host, port)]
    return max(found, key=lambda r: (r.private_ok, r.plain_ok), default=None)


# -- addresses ----------------------------------------------------------------------------


def address_problem(address: str) -> str | None:
    """Why the proxy must not connect to `address` (loopback, private, ...); None if public."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo or (None, None))[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(str(embedded))
            return f"{problem} ({embedded} inside it)" if problem else None
    for test, kind in _KINDS:
        if getattr(ip, test):
            return kind
    return None if ip.is_global else "an address that is not publicly routable"


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_KINDS = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address (cloud metadata lives there)"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)
