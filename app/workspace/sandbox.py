"""Agent commands in bubblewrap: only the checkout writable, no secrets, resources capped.

`Sandbox` runs one command at a time in one checkout: its bwrap argv and mounts here, its
environment from command_env, its caps from command_caps, its output through command_output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from app import metrics
from app.config import Settings
from app.errors import HonkError
from app.workspace.cgroups import enter
from app.workspace.command_caps import CommandCaps
from app.workspace.command_env import REPO_VENV, sandbox_env, with_repository_env
from app.workspace.command_output import CommandResult, OutputCap, read_into, write_input
from app.workspace.disk_watch import DiskWatch
from app.workspace.egress_reach import SandboxProxy
from app.workspace.inside import PathOutsideWorkspace, resolve_inside
from app.workspace.limits import MIB, SandboxLimits
from app.workspace.mounts import (
    Hidden,
    HonkInstall,
    SandboxPython,
    hidden_in,
    honk_hidden,
    host_mounts,
    under,
)
from app.workspace.run_home import SandboxHome, home_env
from app.workspace.toolchains import Toolchains

# The checkout shows at /workspace/<its directory's name>: nothing of the host path.
WORKSPACE_DIR = "/workspace"
MODES = ("bwrap", "off")
# After the command exits, how long to wait for the last of its output.
_DRAIN_SECONDS = 5.0


class SandboxUnavailable(HonkError, RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this host."""


class Sandbox:
    """Runs shell commands in one checkout; mode "off" runs them unsandboxed (unsafe)."""

    def __init__(
        self,
        root: Path,
        *,
        mode: str = "bwrap",
        ro_paths: Sequence[str] = (),
        timeout: float = 600,
        output_limit: int = 30000,
        hidden: Hidden | None = None,
        limits: SandboxLimits | None = None,
        python: SandboxPython | None = None,
        home: SandboxHome | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}")
        self.root = Path(os.path.realpath(root))
        self.mode = mode
        self.ro_paths = tuple(ro_paths)
        self.hidden = hidden or Hidden()
        self.limits = limits or SandboxLimits()
        self.python = python or SandboxPython(sys.base_prefix)
        # The phase's way out (setup's, then the agent's), set while that phase runs; with
        # none a command has loopback only. Never the host's network.
        self.proxy: SandboxProxy | None = None
        # The repository's plain variables (`env:`, a devcontainer's), vetted by repo_config.
        self.repository_env: dict[str, str] = {}
        # The run's toolchains (app/workspace/toolchain_versions.py chose them): their bin
        # directories on PATH, their roots bound read-only, their variables (GOROOT...).
        self.toolchains = Toolchains()
        self.timeout = timeout
        self.output_limit = output_limit
        name = self.root.name or "repo"
        self.visible_root = f"{WORKSPACE_DIR}/{name}" if mode == "bwrap" else str(self.root)
        self.disk = DiskWatch(
            self.root, self.limits.disk_mb * MIB, min_interval=self.limits.check_interval
        )
        self.home = home

    @property
    def home(self) -> SandboxHome | None:
        """The run's home (run_home.py), HOME in every command; None: HOME=/tmp, a fresh
        tmpfs per command. Its size counts against the checkout's disk limit."""
        return self._home

    @home.setter
    def home(self, home: SandboxHome | None) -> None:
        self._home = home
        self.disk.also = (home.host,) if home is not None else ()

    @property
    def home_visible(self) -> str | None:
        """Where commands see the run's home: its fixed path, or the host's in mode "off"."""
        if self._home is None:
            return None
        return self._home.visible if self.mode == "bwrap" else str(self._home.host)

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        root: Path,
        *,
        install: HonkInstall | None = None,
        home: SandboxHome | None = None,
    ) -> Sandbox:
        """The sandbox the server's runs and `honk run` both use: one place, no drift."""
        return cls(
            root,
            mode=settings.sandbox.mode,
            ro_paths=settings.sandbox.ro_paths,
            timeout=settings.agent.command_timeout,
            output_limit=settings.agent.output_limit,
            hidden=honk_hidden(settings, install),
            limits=SandboxLimits.from_settings(settings.sandbox),
            python=SandboxPython.for_settings(settings.sandbox),
            home=home,
        )

    def is_hidden(self, path: Path) -> bool:
        """True for a path inside the checkout that is one of Honk's secrets (`honk run`)."""
        secret = [str(p) for p in hidden_in(self.root, self.hidden)]
        return bool(secret) and under(os.path.realpath(path), secret)

    @staticmethod
    async def check(mode: str = "bwrap") -> str | None:
        """None when commands can run in `mode`, else why not (for doctor and start-up)."""
        if mode == "off":
            return None
        if mode not in MODES:
            return f"unknown sandbox mode {mode!r}"
        scratch = await asyncio.to_thread(tempfile.mkdtemp, prefix="honk-sandbox-check-")
        try:
            result = await Sandbox(Path(scratch), mode=mode, timeout=30).run("true")
        except SandboxUnavailable as exc:
            return str(exc)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        if result.exit_code != 0:
            return f"bwrap cannot start a sandbox here: {result.output.strip()[:500]}"
        return None

    async def run(
        self,
        command: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the whole process group is killed
        offline: bool = False,
        input: str | None = None,
    ) -> CommandResult:
        """Run `command` with bash; output is stdout and stderr merged, capped.

        It reaches the phase's proxy, if any, unless `offline` (loopback only).
        """
        proxy = None if offline else self.proxy
        confined = self.mode == "bwrap"
        caps = (
            await asyncio.to_thread(CommandCaps.create, self.limits)
            if confined
            else CommandCaps(self.limits)
        )
        try:
            argv, env = await asyncio.to_thread(self._launch, command, proxy, caps.limits)
            argv = enter(argv, caps.cgroups())
        except BaseException:
            await caps.remove()
            raise
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            disk_before = await asyncio.to_thread(self._disk_before) if confined else 0
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.root,
                env=env,
                stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            await caps.remove()
            raise
        cap = OutputCap(self.output_limit)
        assert proc.stdout is not None
        reader = asyncio.create_task(read_into(proc.stdout, cap))
        writer = asyncio.create_task(write_input(proc.stdin, input))
        timed_out = False
        stopped: str | None = None
        try:
            async with asyncio.timeout(limit):
                stopped = await self._until_done(proc, caps, disk_before)
        except TimeoutError:
            timed_out = True
        finally:
            # Kill what is left of the group (the timed-out, stopped or cancelled command,
            # or background jobs in mode "off"; under bwrap they die with the pid
            # namespace), reap it, and collect the remaining output.
            if proc.returncode is None or self.mode == "off":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            if caps.memory is not None:  # read before the cgroup goes
                killed = await asyncio.shield(asyncio.to_thread(caps.memory.oom_kills))
                caps.memory_hit = caps.memory_hit or killed > 0
            await asyncio.shield(caps.remove())
            writer.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), _DRAIN_SECONDS)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        output = cap.text()
        if confined and proc.returncode == 1 and output.startswith("bwrap: "):
            raise SandboxUnavailable(f"bwrap could not set up the sandbox: {output.strip()[:500]}")
        ended = timed_out or stopped is not None
        if confined and stopped is None:
            stopped = await caps.after(proc.returncode, output, self.disk, self.limits)
        result = (
            "timeout" if timed_out else "killed" if stopped else
            "ok" if proc.returncode == 0 else "failed"
        )  # fmt: skip
        metrics.sandbox_seconds.labels(result).observe(time.monotonic() - started)
        return CommandResult(
            exit_code=None if ended else proc.returncode,
            output=output,
            timed_out=timed_out,
            truncated=cap.cut > 0,
            limit=stopped,
        )

    def _disk_before(self) -> int:
        """The checkout's size as a command starts: what it must grow past to be ended.

        Over the limit, `measure` answers the limit itself until it walks again; the last
        walk's count is the size then, so a command that only shrinks it (rm) goes on."""
        return max(self.disk.measure(), self.disk.known or 0)

    async def _until_done(
        self, proc: asyncio.subprocess.Process, caps: CommandCaps, disk_before: int
    ) -> str | None:
        """Wait for the command; a limit it reaches first ends it (the reason is returned)."""
        if self.mode == "off":
            await proc.wait()
            return None
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=caps.limits.check_interval)
                if done:
                    return None
                reason = await asyncio.to_thread(
                    caps.limit_reached, proc.pid, self.disk, disk_before
                )
                if reason is not None and proc.returncode is None:
                    return reason
        finally:
            waiter.cancel()

    def _launch(
        self, command: str, proxy: SandboxProxy | None, limits: SandboxLimits
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and the environment, which bwrap also passes on: looked at once."""
        env = self.environment()
        return self._argv(command, proxy, limits, env), env

    def environment(self) -> dict[str, str]:
        """The command's whole environment (and bwrap's): the repository's `.venv` first
        when setup made one, then the sandbox's Python. Blocking (a stat): in a thread."""
        venv = None
        try:
            bin_dir = resolve_inside(self.root, f"{REPO_VENV}/bin")
        except PathOutsideWorkspace:
            bin_dir = None  # a .venv linking out of the checkout is not the repository's
        if bin_dir is not None and os.path.lexists(bin_dir / "python"):
            venv = f"{self.visible_root}/{REPO_VENV}"
        env = sandbox_env(self.python, venv=venv, toolchains=self.toolchains)
        if self.home_visible is not None:
            env.update(home_env(self.home_visible))  # HOME and the package caches in it
        return with_repository_env(env, self.repository_env)

    def command_line(
        self,
        command: str,
        *,
        proxy: SandboxProxy | None = None,
        limits: SandboxLimits | None = None,
    ) -> list[str]:
        """The argv that runs `command` (bwrap and its mounts, or plain bash) under `limits`
        (the sandbox's own by default).

        Blocking (it looks at the host's directories): call in a thread.
        """
        return self._argv(command, proxy, limits or self.limits, self.environment())

    def _argv(
        self,
        command: str,
        proxy: SandboxProxy | None,
        limits: SandboxLimits,
        env: dict[str, str],
    ) -> list[str]:
        if self.mode == "off":
            return ["bash", "-c", command]
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: "
                "apt-get install bubblewrap) or set HONK_SANDBOX=off to run agent "
                "commands without a sandbox (unsafe)"
            )
        preamble = limits.preamble(proxy.forwarder() if proxy else "")
        inner = ["bash", "-c", preamble, "honk-limits", command]
        return [bwrap, *self._bwrap_args(proxy, env), "--", *inner]

    def _bwrap_args(self, proxy: SandboxProxy | None, env: dict[str, str]) -> list[str]:
        # --unshare-all includes the network: a namespace of the sandbox's own, loopback only.
        args = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--cap-drop", "ALL",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]  # fmt: skip
        for key, value in env.items():
            args += ["--setenv", key, value]
        ro_paths = (*self.ro_paths, *self.toolchains.ro_paths)
        system, rest = host_mounts(ro_paths, self.hidden, self.python)
        tmp_size = str(self.limits.tmp_mb * MIB)
        # Fresh /proc, /dev and size-capped /tmp and /dev/shm (RAM) before the rest, so an
        # ro_path under /tmp stays visible; /dev itself takes no files.
        args += [
            *system,
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", tmp_size, "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",
            "--size", tmp_size, "--tmpfs", "/tmp",
            *rest,
        ]  # fmt: skip
        if proxy is not None:
            args += proxy.bwrap_args()
        if self.home is not None:
            args += ["--bind", str(self.home.host), self.home.visible]
        args += ["--bind", str(self.root), self.visible_root]
        for secret in hidden_in(self.root, self.hidden):
            shown = f"{self.visible_root}/{secret.relative_to(self.root)}"
            if secret.is_dir() and not secret.is_symlink():
                args += ["--tmpfs", shown, "--remount-ro", shown]
            elif not secret.is_symlink():
                args += ["--ro-bind", "/dev/null", shown]
        git_dir = self.root / ".git"
        if git_dir.exists():
            # Read-only so that nothing in the sandbox can plant hooks or config that
            # Honk's own git commands (commit, push) would run on the host.
            args += ["--ro-bind", str(git_dir), f"{self.visible_root}/.git"]
        # bwrap's own root is a writable tmpfs; nothing outside the checkout and the
        # tmpfs mounts should take writes, even ones lost when the command ends.
        args += ["--remount-ro", "/", "--chdir", self.visible_root]
        return args
