"""Before the agent: the repository's environment (`env:` and `setup:`, or its
devcontainer.json), the host's toolchains its declared versions choose, and its setup
commands, run over the base branch's files with the package caches restored around them."""

from __future__ import annotations

import asyncio
import logging

from app.config import Settings
from app.errors import RunFailure
from app.log import describe_error, redact
from app.runs.context import RunContext, SetupFailed
from app.runs.devcontainer import DevcontainerError, find_devcontainer, load_devcontainer
from app.runs.environment import plan_environment
from app.runs.network import explain_refusals, phase_network
from app.runs.results import Workspace
from app.runs.stops import Stops
from app.runs.texts import FailureDetails, tail
from app.store import Store
from app.untrusted import code
from app.workspace.caches import CacheScope, PackageCaches, Restored, key_at
from app.workspace.checkout import Checkout
from app.workspace.run_home import snapshot
from app.workspace.toolchain_versions import choose, read_declared
from app.workspace.toolchains import find_installed

log = logging.getLogger(__name__)


class SetupPhase:
    """The pipeline's phases between the checkout and the agent; one serves every run of a
    process (the package caches are the process's)."""

    def __init__(self, settings: Settings, store: Store, stops: Stops) -> None:
        self.settings = settings
        self.store = store
        self._stops = stops
        # Package caches kept across runs, fed by setup only (None: HONK_CACHE_MAX_MB=0).
        self.caches = PackageCaches.for_settings(settings)

    async def environment(self, ctx: RunContext, work: Workspace) -> None:
        """The repository's variables and setup commands: `env:` and `setup:` of its
        `.github/honk.yml`, or, without `setup:`, its devcontainer.json (the base commit's),
        with a note of what Honk did not do of it."""
        checkout, sandbox = work.checkout, work.sandbox
        devcontainer, unused = None, None
        if "setup" in ctx.config.fields_set:
            unused = await find_devcontainer(checkout)
        else:
            try:
                devcontainer = await load_devcontainer(checkout, sandbox.visible_root)
            except DevcontainerError as exc:
                # Its commands are the repository's setup: without them the run would fail
                # in confusing ways, so it stops here and says why, as for honk.yml.
                raise RunFailure(str(exc)) from None
        ctx.environment = plan_environment(ctx.config, devcontainer, unused=unused)
        sandbox.repository_env = dict(ctx.environment.env)
        for note in ctx.environment.notes:
            await ctx.tracker.notice(note, comment=note in ctx.environment.comment)

    async def toolchains(self, ctx: RunContext, work: Workspace) -> None:
        """The host's toolchains the repository's declared versions choose (.nvmrc,
        rust-toolchain.toml, go.mod...), for every sandbox of the run: setup, the agent,
        `verify:`, the review's test runs. A version Honk does not have is said before the
        agent starts, on the run page and the tracking comment; the run uses the default."""
        found = await find_installed(self.settings.sandbox)
        declared = await asyncio.to_thread(read_declared, work.checkout.path)
        choice = choose(found, declared, dict(self.settings.sandbox.toolchain_defaults))
        work.sandbox.toolchains = choice.toolchains
        if choice.chosen:
            used = ", ".join(f"{t.language} {t.version} ({t.source})" for t in choice.chosen)
            await self.store.runs.add_step(ctx.run.id, "toolchains", used)
        for note in choice.notes:
            await ctx.tracker.notice(note)

    async def run_commands(self, ctx: RunContext, work: Workspace) -> None:
        """The repository's setup commands (installing dependencies) reach what
        `setup_network:` allows, so they run over the base branch's files only: on a
        follow-up, whose branch the agent wrote, the work tree is the base commit's while
        they run, and what they made stays. Each command's output is a run event; what the
        work tree holds beyond the commit once setup is done is never committed."""
        checkout = work.checkout
        commands = ctx.environment.commands
        if commands:
            await self._run_setup(ctx, work)
        await checkout.record_setup_products()
        if checkout.home is not None:
            try:
                checkout.setup_home = await snapshot(checkout.home)
            except Exception as exc:  # the review's test runs then get HOME=/tmp, as before
                log.warning("run %s: no copy of the home: %s", ctx.run.id, describe_error(exc))

    async def _run_setup(self, ctx: RunContext, work: Workspace) -> None:
        checkout, sandbox = work.checkout, work.sandbox
        commands, events = ctx.environment.commands, ctx.tracker.events
        await events.phase("setup", f"{len(commands)} command{'s' if len(commands) != 1 else ''}")
        restored = await self._restore_caches(ctx, checkout)
        failed = None
        async with (
            checkout.on_base_tree() as switched,
            phase_network(ctx, sandbox, self.settings.network.cap(), "setup"),
        ):
            if switched:
                await self.store.runs.add_step(ctx.run.id, "setup", "on the base branch's files")
            for index, command in enumerate(commands):
                await events.setup_command(index, command.line, command.origin)
                result = await self._stops.until_stopped(ctx.run, sandbox.run(command.line))
                await events.setup_command(
                    index, command.line, command.origin, exit_code=result.exit_code,
                    output=result.output, limit=result.limit, timed_out=result.timed_out,
                )  # fmt: skip
                if result.exit_code != 0:
                    failed = (command, result)
                    break
        if failed is None:
            await self._save_caches(ctx, checkout, restored)
            return
        # The phase's proxy has stopped: its refusals are summed up in ctx.network now.
        command, result = failed
        how = (
            "timed out" if result.timed_out
            else result.limit or f"exit {result.exit_code}"
        )  # fmt: skip
        shown = command.line if len(command.line) <= 200 else command.line[:199] + "…"
        where = "" if command.origin == "setup" else f" ({command.origin})"
        plan = ctx.network_plan
        details = FailureDetails(
            command=shown,
            tail=redact(tail(result.output)),
            notes=explain_refusals(
                ctx.network.get("setup"), plan.setup, self.settings.network.cap(), "setup"
            ),
        )
        raise SetupFailed(f"setup command {code(shown)}{where} failed ({how})", details)

    async def _restore_caches(self, ctx: RunContext, checkout: Checkout) -> Restored | None:
        """The repository's package caches copied into the run's home before setup: the
        entry for the base commit's lock files, else the repository's latest."""
        if self.caches is None or checkout.home is None:
            return None
        try:
            key = await key_at(checkout.path, await checkout.base_sha())
        except Exception as exc:  # a cache is an optimisation: the run goes on without one
            log.warning("run %s: no cache key: %s", ctx.run.id, describe_error(exc))
            return None
        scope = CacheScope.repository(ctx.run.installation_id, ctx.run.repo)
        restored = await self.caches.restore(scope, key, checkout.home)
        await ctx.tracker.notice(restored.describe(), comment=False)
        return restored

    async def _save_caches(
        self, ctx: RunContext, checkout: Checkout, restored: Restored | None
    ) -> None:
        """After setup succeeded, before the agent: the home's caches kept for the next run."""
        if self.caches is None or restored is None or checkout.home is None:
            return
        scope = CacheScope.repository(ctx.run.installation_id, ctx.run.repo)
        saved = await self.caches.save(scope, checkout.home, restored)
        if saved is not None:
            note = f"Package caches saved for the next run: key {restored.key[:12]}, "
            await ctx.tracker.notice(note + f"{saved / (1 << 20):,.0f} MB.", comment=False)
