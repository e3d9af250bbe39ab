"""The environment of a sandboxed command (and of bwrap itself): nothing of Honk's, the
sandbox's Python, the run's toolchains and the repository's `.venv`, its `env:` beside it."""

from __future__ import annotations

import sys

from app.workspace.mounts import SandboxPython
from app.workspace.toolchains import Toolchains

# A virtualenv the repository's setup made in the checkout (`python -m venv .venv`): its
# bin comes first on PATH, and VIRTUAL_ENV names it, once its bin/python exists.
REPO_VENV = ".venv"


def sandbox_env(
    python: SandboxPython | None = None,
    *,
    venv: str | None = None,
    toolchains: Toolchains | None = None,
) -> dict[str, str]:
    """The entire environment of a sandboxed command, and of bwrap itself.

    bwrap's own environment is readable inside (/proc/1/environ), so it gets this
    same minimal dict: nothing of Honk's (keys, tokens) ever reaches a command. `venv` is
    the repository's own virtualenv as the command sees it, activated as `activate` would.
    `toolchains`: the run's, their bin directories after the venv's, their variables.
    """
    python = python or SandboxPython(sys.base_prefix)
    toolchains = toolchains or Toolchains()
    bin_dirs = [f"{venv}/bin"] if venv else []
    bin_dirs += toolchains.bin_dirs
    bin_dirs += [python.bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]
    # No .pyc files: the agent edits and re-runs within a second, and a same-size edit in
    # the same second would otherwise run stale bytecode (and caches are not the change).
    env = {
        "PATH": ":".join(dict.fromkeys(bin_dirs)),
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if venv:
        env["VIRTUAL_ENV"] = venv
    return {**dict(toolchains.env), **env}


def with_repository_env(env: dict[str, str], repository: dict[str, str]) -> dict[str, str]:
    """The sandbox's environment with the repository's variables (`env:`) beside it.

    They were vetted when the file was read (no secret's name, nothing the sandbox sets or
    depends on); Honk's own values still win here, whatever the repository names. The
    phase's proxy variables are set after these (bwrap's --setenv), so they win too.
    """
    return {**repository, **env}
