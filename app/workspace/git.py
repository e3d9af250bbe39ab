"""Run git with a minimal environment; credentials go only through environment config."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.errors import HonkError
from app.log import redact

# Settings that keep code from a checkout (hooks, fsmonitor, pagers, helpers) from
# running on the host when Honk runs git in it after the agent has worked there.
# Passed as environment config, they outrank .git/config and reach child git processes.
SAFE_CONFIG: dict[str, str] = {
    "core.hooksPath": os.devnull,
    "core.fsmonitor": "false",
    "core.pager": "cat",
    "credential.helper": "",
    "protocol.ext.allow": "never",
    "submodule.recurse": "false",
}

# Environment variables passed through when set: proxies are how some hosts reach GitHub.
_PASSTHROUGH = ("PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")


class GitError(HonkError, RuntimeError):
    """A git command failed; the message is redacted and never holds a token."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(redact(message))
        self.returncode = returncode
        self.stderr = redact(stderr)


class GitAuthError(GitError):
    """The remote refused the credentials (or none were given)."""


@dataclass(frozen=True)
class GitResult:
    stdout: str
    stderr: str
    returncode: int


async def git(
    *args: str,
    cwd: Path | None = None,
    token: str | None = None,
    timeout: float = 600,  # noqa: ASYNC109 - killing the process group needs our own timeout
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> GitResult:
    """Run `git *args`; `token` authenticates HTTPS as GitHub expects (x-access-token)."""
    config = dict(SAFE_CONFIG)
    if token:
        redact.add(token)
        header = basic_auth_header(token)
        redact.add(header)
        config["http.extraHeader"] = f"Authorization: {header}"
    full_env = base_env() | config_env(config) | dict(env or {})
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=full_env,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except TimeoutError:
        raise GitError(f"git {_describe(args)} timed out after {timeout:g}s") from None
    finally:
        # Whatever happened (timeout, cancellation), leave no git or helper behind.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
    result = GitResult(
        out.decode(errors="replace"), err.decode(errors="replace"), proc.returncode or 0
    )
    if check and result.returncode != 0:
        raise git_error(args, result)
    return result


def basic_auth_header(token: str) -> str:
    """The Authorization value GitHub accepts for git over HTTPS with an app token."""
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


def base_env() -> dict[str, str]:
    """The whole environment git gets: nothing of Honk's own (secrets stay out)."""
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env | {
        "HOME": _empty_home(),
        "LANG": "C",
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_OPTIONAL_LOCKS": "0",
    }


def config_env(config: Mapping[str, str]) -> dict[str, str]:
    """`config` as GIT_CONFIG_COUNT/KEY_n/VALUE_n: never on the command line or on disk."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _empty_home() -> str:
    # A home that does not exist: git and curl find no dotfiles (.gitconfig, .netrc), and
    # nothing is left behind when the process is killed (as a temp dir would be).
    return "/nonexistent"


def _describe(args: tuple[str, ...]) -> str:
    return " ".join(args[:2])


def git_error(args: tuple[str, ...], result: GitResult) -> GitError:
    """The GitError (or GitAuthError) describing a failed command, redacted."""
    stderr = result.stderr.strip()
    lowered = stderr.lower()
    auth_failed = any(
        marker in lowered
        for marker in (
            "authentication failed",
            "could not read username",
            "could not read password",
            "the requested url returned error: 401",
            "the requested url returned error: 403",
            "invalid username or",
        )
    )
    what = "authentication failed" if auth_failed else f"exit {result.returncode}"
    message = f"git {_describe(args)} failed ({what}): {stderr[-2000:]}"
    cls = GitAuthError if auth_failed else GitError
    return cls(message, returncode=result.returncode, stderr=stderr)
