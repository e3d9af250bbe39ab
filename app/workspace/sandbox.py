"""Agent commands in bubblewrap: only the checkout writable, no secrets, time and output capped."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VISIBLE_ROOT = "/workspace"
MODES = ("bwrap", "off")

# Top-level directories toolchains need, bound read-only (or re-created as the
# symlinks they are on merged-/usr systems). Never / or /etc as a whole.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
# The parts of /etc that programs read to resolve names, users, certificates, libraries.
_ETC_PATHS = (
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/crypto-policies",
    "/etc/gai.conf",
    "/etc/gitconfig",
    "/etc/group",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/pki",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl",
)
_READ_CHUNK = 64 * 1024
# After the command exits, how long to wait for the last of its output.
_DRAIN_SECONDS = 5.0


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this host."""


class PathOutsideWorkspace(ValueError):
    """A path given by the agent leads outside the checkout."""


@dataclass
class CommandResult:
    exit_code: int | None
    output: str
    timed_out: bool = False
    truncated: bool = False


def resolve_inside(root: Path, path: str, *, visible_root: str | None = None) -> Path:
    """The real path for `path` as the agent wrote it, refused if it leaves `root`.

    `path` is relative to the checkout, or absolute as the agent sees it (under
    `visible_root`, e.g. /workspace). Symlinks are followed on the host, so one
    pointing out of the checkout (even to /workspace/...) is refused too.
    """
    if "\0" in path:
        raise PathOutsideWorkspace(f"{path!r} is not a valid path")
    real_root = Path(os.path.realpath(root))
    visible = (visible_root or "").rstrip("/")
    if visible and (path == visible or path.startswith(visible + "/")):
        candidate = real_root / path[len(visible) :].lstrip("/")
    else:
        candidate = real_root / path  # an absolute `path` replaces real_root here
    resolved = Path(os.path.realpath(candidate))
    if resolved != real_root and real_root not in resolved.parents:
        shown = visible_root or str(real_root)
        raise PathOutsideWorkspace(f"{path} is outside the workspace ({shown})")
    return resolved


class Sandbox:
    """Runs shell commands in one checkout; mode "off" runs them unsandboxed (unsafe)."""

    def __init__(
        self,
        root: Path,
        *,
        mode: str = "bwrap",
        ro_paths: Sequence[str] = (),
        network: bool = False,
        timeout: float = 600,
        output_limit: int = 30000,
        hide_paths: Sequence[str | Path] = (),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}")
        self.root = Path(os.path.realpath(root))
        self.mode = mode
        self.ro_paths = tuple(ro_paths)
        # Paths that must stay invisible even when under a bound directory (the data
        # dir or key file of an install under /opt, say).
        self.hide_paths = tuple(str(p) for p in hide_paths)
        self.network = network
        self.timeout = timeout
        self.output_limit = output_limit
        self.visible_root = VISIBLE_ROOT if mode == "bwrap" else str(self.root)

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
        network: bool | None = None,
        input: str | None = None,
    ) -> CommandResult:
        """Run `command` with bash; output is stdout and stderr merged, capped."""
        argv = self.command_line(command, network=self.network if network is None else network)
        limit = self.timeout if timeout is None else timeout
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.root,
            env=sandbox_env(),
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        cap = OutputCap(self.output_limit)
        assert proc.stdout is not None
        reader = asyncio.create_task(_read_into(proc.stdout, cap))
        writer = asyncio.create_task(_write_input(proc.stdin, input))
        timed_out = False
        try:
            async with asyncio.timeout(limit):
                await proc.wait()
        except TimeoutError:
            timed_out = True
        finally:
            # Kill what is left of the group (the timed-out or cancelled command, or
            # background jobs in mode "off"; under bwrap they die with the pid
            # namespace), reap it, and collect the remaining output.
            if proc.returncode is None or self.mode == "off":
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            writer.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), _DRAIN_SECONDS)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        output = cap.text()
        if self.mode == "bwrap" and proc.returncode == 1 and output.startswith("bwrap: "):
            raise SandboxUnavailable(f"bwrap could not set up the sandbox: {output.strip()[:500]}")
        return CommandResult(
            exit_code=None if timed_out else proc.returncode,
            output=output,
            timed_out=timed_out,
            truncated=cap.cut > 0,
        )

    def command_line(self, command: str, *, network: bool) -> list[str]:
        """The argv that runs `command` (bwrap and its mounts, or plain bash)."""
        if self.mode == "off":
            return ["bash", "-c", command]
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: install it (Debian/Ubuntu: "
                "apt-get install bubblewrap) or set HONK_SANDBOX=off to run agent "
                "commands without a sandbox (unsafe)"
            )
        return [bwrap, *self._bwrap_args(network), "--", "bash", "-c", command]

    def _bwrap_args(self, network: bool) -> list[str]:
        args = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--cap-drop", "ALL",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]  # fmt: skip
        if network:
            args.append("--share-net")
        for key, value in sandbox_env().items():
            args += ["--setenv", key, value]
        bound: list[str] = []
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
                bound.append(path)
        # Fresh /proc, /dev and /tmp first, so an ro_path under /tmp stays visible.
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for path in (*_ETC_PATHS, *python_dirs(), *self.ro_paths):
            if os.path.lexists(path) and not _under(path, bound):
                args += ["--ro-bind-try", path, path]
                bound.append(path)
        for path in self.hide_paths:
            real = os.path.realpath(path)
            if _under(real, bound):
                args += (
                    ["--tmpfs", real] if os.path.isdir(real) else ["--ro-bind", "/dev/null", real]
                )
        args += ["--bind", str(self.root), VISIBLE_ROOT]
        git_dir = self.root / ".git"
        if git_dir.exists():
            # Read-only so that nothing in the sandbox can plant hooks or config that
            # Honk's own git commands (commit, push) would run on the host.
            args += ["--ro-bind", str(git_dir), f"{VISIBLE_ROOT}/.git"]
        # bwrap's own root is a writable tmpfs; nothing outside /workspace and /tmp
        # should take writes, even ones lost when the command ends.
        args += ["--remount-ro", "/", "--chdir", VISIBLE_ROOT]
        return args


class OutputCap:
    """Keeps the head and tail of a stream within `limit` characters, counting the cut."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = ""
        self.tail = ""
        self.cut = 0

    def feed(self, text: str) -> None:
        if len(self.head) < self.head_limit:
            room = self.head_limit - len(self.head)
            self.head, text = self.head + text[:room], text[room:]
        self.tail += text
        if len(self.tail) > self.tail_limit:
            self.cut += len(self.tail) - self.tail_limit
            self.tail = self.tail[-self.tail_limit :] if self.tail_limit else ""

    def text(self) -> str:
        if not self.cut:
            return self.head + self.tail
        return f"{self.head}\n[... {self.cut} characters cut ...]\n{self.tail}"


def sandbox_env() -> dict[str, str]:
    """The entire environment of a sandboxed command, and of bwrap itself.

    bwrap's own environment is readable inside (/proc/1/environ), so it gets this
    same minimal dict: nothing of Honk's (keys, tokens) ever reaches a command.
    """
    bin_dirs = [str(Path(p) / "bin") for p in python_dirs()]
    path = ":".join(dict.fromkeys([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"]))
    # No .pyc files: the agent edits and re-runs within a second, and a same-size edit in
    # the same second would otherwise run stale bytecode (and caches are not the change).
    return {"PATH": path, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def python_dirs() -> list[str]:
    """The Python installation Honk runs on: the venv first (if any), then its base."""
    dirs = [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)]
    return list(dict.fromkeys(dirs))


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


async def _read_into(stream: asyncio.StreamReader, cap: OutputCap) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := await stream.read(_READ_CHUNK):
        cap.feed(decoder.decode(chunk))
    cap.feed(decoder.decode(b"", final=True))


async def _write_input(stdin: asyncio.StreamWriter | None, text: str | None) -> None:
    if stdin is None:
        return
    try:
        if text:
            stdin.write(text.encode())
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()
