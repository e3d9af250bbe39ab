"""`honk doctor`'s checks of this host: the sandbox (bwrap, socat, what caps processes and
memory), the toolchains found, the store (migrated, answering)."""

from __future__ import annotations

import asyncio
import shutil

from sqlalchemy.engine import make_url

from app.cli.doctor_check import FAIL, PASS, SKIP, WARN, Check, unreachable
from app.config import SandboxSettings, StoreSettings
from app.log import redact
from app.store import Store
from app.workspace.cgroups import memory_cap, process_cap
from app.workspace.limits import SandboxLimits
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose
from app.workspace.toolchains import find_installed


async def check_sandbox(sandbox: SandboxSettings) -> Check:
    if sandbox.mode == "off":
        return Check("sandbox", SKIP, "HONK_SANDBOX=off: agent commands run unsandboxed (unsafe)")
    problem = await Sandbox.check(sandbox.mode)
    if problem:
        return Check("sandbox", FAIL, problem)
    if shutil.which("socat") is None:
        return Check("sandbox", FAIL, "socat is missing: sandboxes reach Honk's network proxy "
                     "through it (apt-get install socat)")  # fmt: skip
    cap = await asyncio.to_thread(process_cap)
    memory = await asyncio.to_thread(memory_cap, SandboxLimits.from_settings(sandbox))
    return Check(
        "sandbox",
        PASS,
        f"bwrap starts a sandbox; processes capped by {cap}; memory capped by {memory}; "
        "network via proxy",
    )


async def check_toolchains(sandbox: SandboxSettings) -> Check:
    """The toolchains Honk found on this host (language, version, source, path); a
    HONK_TOOLCHAIN_PATHS root that holds none, or a default that matches none, warns."""
    found = await find_installed(sandbox)
    listed = "; ".join(t.describe() + (", the host's default" if t.default else "") for t in found)
    problems = [
        f"HONK_TOOLCHAIN_PATHS: {language}={path} holds no {language} toolchain"
        for language, path in sandbox.toolchain_paths
        if not any(t.source == "setting" and f"{t.bin_dir}/".startswith(f"{path}/") for t in found)
    ]
    problems += choose(found, defaults=dict(sandbox.toolchain_defaults)).notes
    if problems:
        return Check(
            "toolchains", WARN, " ".join(problems) + (f" Found: {listed}" if found else "")
        )
    if not found:
        return Check("toolchains", PASS, "none found besides the system's PATH")
    return Check("toolchains", PASS, f"{len(found)} found: {listed}")


async def check_store(settings: StoreSettings) -> Check:
    url = make_url(settings.database_url)
    redact.add(url.password if isinstance(url.password, str) else None)
    where = url.render_as_string(hide_password=True)
    if settings.database_url.startswith("sqlite"):
        await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
    try:
        store = await Store.open(settings.database_url)
    except Exception as exc:
        if url.host and (why := unreachable(exc)):
            server = f"{url.host}:{url.port}" if url.port else url.host
            return Check("store", FAIL, f"cannot reach {server} (DATABASE_URL): {why}")
        return Check("store", FAIL, f"{where}: {type(exc).__name__}: {exc}"[:500])
    try:
        ok = await store.ping()
    finally:
        await store.close()
    if not ok:
        return Check("store", FAIL, f"{where}: migrated but does not answer")
    return Check("store", PASS, f"{where}: schema up to date")
