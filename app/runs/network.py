"""A run's way out of the sandbox, phase by phase: the proxy while the phase runs (none when
its list is empty), and a summary of its connections on the run once it ends."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from app.network_policy import Cap, NetworkSettingError, Rule, ip_literal, parse_entry
from app.runs.context import RunContext
from app.untrusted import code
from app.workspace.egress import phase_proxy, proxy_config
from app.workspace.egress_config import ProxyConfig, Record
from app.workspace.egress_summary import NetworkSummary
from app.workspace.sandbox import Sandbox

log = logging.getLogger(__name__)

PHASE_SETTINGS = {"setup": "setup_network", "agent": "network"}
EXPLAINED_REFUSALS = 5  # refusals explained one by one; the rest are counted


@contextlib.asynccontextmanager
async def phase_network(
    ctx: RunContext, sandbox: Sandbox, cap: Cap, phase: str
) -> AsyncIterator[None]:
    """The run's `sandbox` reaches `phase`'s list (setup's or the agent's) inside this block only.

    The summary lands on the RunContext (`ctx.network[phase]`), as a run step ("network")
    and on the tracking comment, however the phase ends.
    """
    plan = ctx.network_plan
    rules = plan.setup if phase == "setup" else plan.agent
    config = proxy_config(rules, setting=PHASE_SETTINGS[phase], cap=cap)
    summaries: list[NetworkSummary] = []
    try:
        async with phase_proxy(config, phase=phase, summaries=summaries) as proxy:
            sandbox.proxy = proxy
            yield
    finally:
        sandbox.proxy = None
        for summary in summaries:
            ctx.network[phase] = summary
            log.info("run %s, %s network: %s", ctx.run.id, phase, summary.describe())
            # Every name as the sandbox sent it stays in Honk's own log: the tracking
            # comment, the run's steps and Slack get the public line only.
            for line in summary.details():
                log.debug("run %s, %s network: %s", ctx.run.id, phase, line)
            await ctx.tracker.network(phase, summary.describe())


def explain_refusals(
    summary: NetworkSummary | None, rules: Sequence[Rule], cap: Cap, phase: str
) -> tuple[str, ...]:
    """Each distinct refusal of the phase with its reason and what would allow it (Markdown,
    names as inline code): for the tracking comment and Slack when the phase failed."""
    if summary is None:
        return ()
    setting = PHASE_SETTINGS[phase]
    config = proxy_config(rules, setting=setting, cap=cap)
    distinct = list(dict.fromkeys((r.host, r.port, r.reason) for r in summary.refused))
    lines = [
        _explain(Record(host, port, reason=reason), config, cap, setting, rules)
        for host, port, reason in distinct[:EXPLAINED_REFUSALS]
    ]
    more = len(distinct) - EXPLAINED_REFUSALS
    if more > 0:
        lines.append(f"and {more} more refused connection{'s' if more != 1 else ''}")
    return tuple(lines)


def _explain(
    record: Record, config: ProxyConfig, cap: Cap, setting: str, rules: Sequence[Rule]
) -> str:
    host, port, reason = record.host, record.port, record.reason
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    named = host if port in (0, 80, 443) else target
    where = f"`{setting}:` in `.github/honk.yml`"
    if reason == "not allowed":
        if ip_literal(host) is not None:
            return (
                f"{code(target)} was refused: it is an IP address, and Honk's proxy connects to "
                "host names only (an address is reachable only as an exact entry the operator "
                "allows in `HONK_NETWORK_ALLOW`)"
            )
        advice = config.advice(target, host, port)
        if advice is not None:
            shown = advice if advice.startswith("the preset") else code(advice)
            return (
                f"{code(named)} was refused: it is not in {where}. To allow it, add {shown} there"
            )
        return (
            f"{code(named)} was refused: it is not in {where}, and this Honk's operator does "
            "not let repositories name it: ask the operator to allow it in "
            f"`HONK_NETWORK_ALLOW`, then add it to {where}"
        )
    address, _, problem = reason.partition(": ")
    if problem and ip_literal(address) is not None:
        named_already = any(r.entry.exact and r.entry.matches(host, port) for r in rules)
        return _private(host, port, address, problem, cap, setting, named_already)
    return f"{code(named)} was refused: {reason or 'no reason given'}"


def _private(
    host: str, port: int, address: str, problem: str, cap: Cap, setting: str, named: bool
) -> str:
    """A name that resolves to an address the proxy never reaches unless the operator vouches
    for that exact host and port; say how (a split-horizon corporate DNS answers so)."""
    exact = f"{host}:{port}"
    said = (
        f"{code(host)} resolves to {address}, {problem}: Honk's proxy reaches such an address "
        "only through an exact `host:port` entry the operator vouches for (a DNS that answers "
        "with an internal address, as a split-horizon one can, looks just like this). Ask the "
        "operator to allow it"
    )
    preset = _preset_naming(cap, host, port)
    if preset is not None:
        name, items = preset
        definition = code(f"{name}={items}")
        return f"{said} in the preset it comes from: {definition} in `HONK_NETWORK_PRESETS`"
    current = list(cap.items) if cap.items is not None else sorted(cap.presets.items)
    allow = " ".join([*current, exact])
    then = f"(`{setting}:` names it already)" if named else f"and add {code(exact)} to `{setting}:`"
    return f"{said} with {code(f'HONK_NETWORK_ALLOW={allow}')} {then}"


def _preset_naming(cap: Cap, host: str, port: int) -> tuple[str, str] | None:
    """The smallest preset that names `host` itself (not through another preset), and its
    items with that entry made exact."""
    found: list[tuple[int, str, str]] = []
    for name, items in cap.presets.items.items():
        rewritten: list[str] = []
        matched = False
        for item in items:
            try:
                entry = None if ":" not in item and "." not in item else parse_entry(item)
            except NetworkSettingError:
                entry = None
            if entry is not None and not entry.wildcard and entry.matches(host, port):
                rewritten.append(f"{host}:{port}")
                matched = True
            else:
                rewritten.append(item)
        if matched:
            found.append((len(items), name, " ".join(rewritten)))
    if not found:
        return None
    _size, name, definition = min(found)
    return name, definition
