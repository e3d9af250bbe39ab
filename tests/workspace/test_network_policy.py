"""The network policy as data: entries, presets, the operator's cap, and address vetting."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.network_policy import (
    BUILTIN_PRESETS,
    Cap,
    Entry,
    NetworkSettingError,
    NotAllowed,
    Presets,
    Rule,
    address_problem,
    compile_rules,
    ip_literal,
    match,
    parse_entry,
    parse_items,
    request_host,
    setup_default,
)
from app.repo_config import RepoConfigError, network_plan, parse_config

DEFAULT_CAP = Cap(None, Presets.with_overrides({}))


def test_entries_and_what_they_match() -> None:
    wild = parse_entry("*.PythonHosted.org")
    assert (str(wild), wild.exact) == ("*.pythonhosted.org", False)
    assert wild.matches("files.pythonhosted.org", 443) and wild.matches("a.b.pythonhosted.org", 80)
    assert not wild.matches("pythonhosted.org", 443)  # below it, not itself
    assert not wild.matches("evilpythonhosted.org", 443)
    assert not wild.matches("files.pythonhosted.org", 8080)  # no port: 80 and 443 only
    mirror = parse_entry("localhost:8080")
    assert (
        mirror.exact and mirror.matches("localhost", 8080) and not mirror.matches("localhost", 80)
    )
    assert str(parse_entry("[::1]:3141")) == "[::1]:3141"
    assert parse_entry("pypi.org.") == Entry("pypi.org")
    for bad in ("https://pypi.org", "pypi.org/simple", "*.*.org", "a_b.org", "x.123", "10.0.0.1"):
        with pytest.raises(NetworkSettingError):
            parse_entry(bad)
    with pytest.raises(NetworkSettingError, match="needs its port"):
        parse_entry("localhost")


def test_within_is_coverage() -> None:
    assert parse_entry("a.example.org").within(parse_entry("*.example.org"))
    assert parse_entry("*.a.example.org").within(parse_entry("*.example.org"))
    assert parse_entry("a.example.org:443").within(parse_entry("a.example.org"))
    assert not parse_entry("a.example.org:8443").within(parse_entry("a.example.org"))
    assert not parse_entry("example.org").within(parse_entry("*.example.org"))
    assert not parse_entry("*.example.org").within(parse_entry("a.example.org"))


def test_hosts_as_clients_name_them() -> None:
    assert request_host("PyPI.org.") == ("pypi.org", False)
    for odd in ("127.1", "0x7f.0.0.1", "2130706433", "[::ffff:127.0.0.1]", "0177.0.0.1"):
        found = request_host(odd)
        assert found is not None and found[1], odd
    assert ip_literal("2130706433") == "127.0.0.1"
    assert request_host("evil host") is None and request_host("a..b") is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("100.64.0.1", "not publicly routable"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_addresses_the_proxy_never_connects_to(address: str, kind: str | None) -> None:
    problem = address_problem(address)
    assert (problem is None) if kind is None else (kind in (problem or ""))


def test_the_default_cap_allows_presets_only() -> None:
    assert DEFAULT_CAP.allows("pypi") and DEFAULT_CAP.allows("registries")
    assert not DEFAULT_CAP.allows("pypi.org") and not DEFAULT_CAP.allows("localhost:8080")
    rules = compile_rules(["pypi"], setting="network", cap=DEFAULT_CAP)
    assert [str(r.entry) for r in rules] == list(BUILTIN_PRESETS["pypi"])
    assert not any(r.private_ok for r in rules)
    with pytest.raises(
        NotAllowed, match=r"network: evil.example is not allowed.*HONK_NETWORK_ALLOW"
    ):
        compile_rules(["pypi", "evil.example"], setting="network", cap=DEFAULT_CAP)
    with pytest.raises(NetworkSettingError, match="'pypy' is not a preset"):
        compile_rules(["pypy"], setting="network", cap=DEFAULT_CAP)
    assert setup_default(DEFAULT_CAP) == ("registries",)
    registries = compile_rules(setup_default(DEFAULT_CAP), setting="setup_network", cap=DEFAULT_CAP)
    hosts = {str(r.entry) for r in registries}
    assert {"files.pythonhosted.org", "registry.npmjs.org", "static.crates.io"} <= hosts
    assert {"proxy.golang.org", "deb.debian.org", "security.ubuntu.com"} <= hosts


def test_only_the_operators_exact_entries_may_be_private() -> None:
    presets = Presets.with_overrides({"pypi": ("devpi.internal:3141",)})
    anything = Cap(("*", "localhost:8080"), presets)
    rules = compile_rules(
        ["localhost:8080", "localhost:9000", "*.example", "pypi", "registries"],
        setting="network",
        cap=anything,
    )
    private = {str(r.entry) for r in rules if r.private_ok}
    assert private == {"localhost:8080", "devpi.internal:3141"}  # the operator wrote those
    assert match(rules, "localhost", 9000) == Rule(Entry("localhost", 9000))
    assert match(rules, "a.example", 443) == Rule(Entry("example", None, True))
    assert match(rules, "a.example", 22) is None
    # The operator's pypi mirror replaces pypi.org inside the registries preset too.
    assert "pypi.org" not in {str(r.entry) for r in rules}
    only_some = Cap(("pypi", "npm"), Presets.with_overrides({}))
    assert setup_default(only_some) == ("pypi", "npm")
    assert setup_default(Cap((), Presets.with_overrides({}))) == ()


def test_only_the_operators_tcp_entries_tunnel_other_than_tls() -> None:
    """`tcp://host:port` is the operator's word alone, for one host and port."""
    assert parse_items(["tcp://Git.Example:22"], "HONK_NETWORK_ALLOW") == ("tcp://git.example:22",)
    presets = Presets.with_overrides({"git": ("tcp://git.example:22", "git.example:9418")})
    cap = Cap(("tcp://db.example:5432", "git", "*.example"), presets)
    rules = compile_rules(["db.example:5432", "git", "web.example"], setting="network", cap=cap)
    plain = {str(r.entry) for r in rules if r.plain_ok}
    assert plain == {"db.example:5432", "git.example:22"}
    assert {str(r.entry) for r in rules if r.private_ok} >= plain  # exact operator entries
    assert match(rules, "web.example", 443) == Rule(Entry("web.example"))  # TLS only
    for wrong in ("tcp://*.example:22", "tcp://git.example"):
        with pytest.raises(NetworkSettingError, match="names one host and its port"):
            parse_items([wrong], "HONK_NETWORK_ALLOW")
    with pytest.raises(NetworkSettingError, match="only the operator names tcp:// entries"):
        parse_items(["tcp://git.example:22"], ".github/honk.yml: network")
    with pytest.raises(RepoConfigError, match="only the operator"):
        parse_config("network: ['tcp://git.example:22']\n")


def test_items_as_written() -> None:
    assert parse_items(["off"], "network") == ()
    assert parse_items(["PyPI", "Files.PythonHosted.org"], "network") == (
        "pypi",
        "files.pythonhosted.org",
    )
    with pytest.raises(NetworkSettingError, match="cannot be mixed"):
        parse_items(["off", "pypi"], "network")
    with pytest.raises(NetworkSettingError):
        parse_items(["*"], "network")  # only the operator may say "anything"
    with pytest.raises(NetworkSettingError, match="includes itself"):
        Presets.with_overrides({"a": ("b",), "b": ("a",)})


def test_settings_read_the_operators_cap_and_presets() -> None:
    settings = Settings.from_env(
        {
            "HONK_NETWORK_ALLOW": "pypi, npm *.internal.example mirror.internal:3141",
            "HONK_NETWORK_PRESETS": "pypi=mirror.internal:3141; tools=a.example,b.example",
        },
        env_file=None,
    )
    assert settings.network.allow == ("pypi", "npm", "*.internal.example", "mirror.internal:3141")
    cap = settings.network.cap()
    assert cap.allows("git.internal.example") and not cap.allows("tools")
    assert Settings.from_env({}, env_file=None).network.allow is None
    assert Settings.from_env({"HONK_NETWORK_ALLOW": "off"}, env_file=None).network.allow == ()
    for env, named in (
        ({"HONK_NETWORK_ALLOW": "pypi.org/simple"}, "HONK_NETWORK_ALLOW"),
        ({"HONK_NETWORK_ALLOW": "pypy"}, "HONK_NETWORK_ALLOW: 'pypy' is not a preset"),
        ({"HONK_NETWORK_PRESETS": "mirror"}, "HONK_NETWORK_PRESETS"),
        ({"HONK_NETWORK_PRESETS": "x=localhost"}, "HONK_NETWORK_PRESETS"),
    ):
        with pytest.raises(ConfigError, match=named):
            Settings.from_env(env, env_file=None)


def test_a_repository_plan_within_the_cap() -> None:
    settings = Settings().with_overrides(network_allow=("registries", "localhost:4873"))
    config = parse_config("setup: npm ci\nnetwork: [localhost:4873, npm]\n")
    plan = network_plan(settings.network, config)
    assert "pypi.org" in {str(r.entry) for r in plan.setup}  # setup's default: registries
    assert Rule(Entry("localhost", 4873), private_ok=True) in plan.agent
    assert network_plan(settings.network, parse_config("setup_network: off\n")).setup == ()
    assert network_plan(settings.network, parse_config("network: off\n")).agent == ()
    with pytest.raises(RepoConfigError, match=r"honk.yml: setup_network: localhost:9 is not"):
        network_plan(settings.network, parse_config("setup_network: [localhost:9]\n"))
