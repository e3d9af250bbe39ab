"""One HOME per run: a private host directory beside the checkout, shown in the sandbox at
HOME_DIR, with every package manager's cache pointed inside it.

Setup, the agent, `verify:` and the review's test runs of one run share it, so what setup
downloaded (Go modules, Cargo's registry, pip's and npm's caches) is there for the agent.
Which of its directories are caches (CACHE_DIRS) is what `caches.PackageCaches` keeps
across runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Where the run's home shows inside the sandbox: nothing of the host path.
HOME_DIR = "/home/honk"
# Its name beside the checkout (HONK_CHECKOUT_DIR/<opaque>/): "@" is never in a repository's
# name, so no checkout can be called this.
RUN_HOME = "@home"
# Beside it, the home as setup left it: what the review's test runs get (see `snapshot`).
SETUP_HOME = "@home-setup"

# Each package manager's cache as a variable naming a place in the home (relative to it);
# HOME alone would do for some, but Java ignores HOME and the rest are said once here.
_CACHE_VARIABLES: tuple[tuple[str, str], ...] = (
    ("npm_config_cache", ".npm"),
    ("YARN_CACHE_FOLDER", ".cache/yarn"),
    ("npm_config_store_dir", ".local/share/pnpm/store"),
    ("CARGO_HOME", ".cargo"),
    ("GOPATH", "go"),
    ("GOMODCACHE", "go/pkg/mod"),
    ("GOCACHE", ".cache/go-build"),
    ("PIP_CACHE_DIR", ".cache/pip"),
    ("UV_CACHE_DIR", ".cache/uv"),
    ("GRADLE_USER_HOME", ".gradle"),
)
# The directories of the home kept across runs (downloads, never what a build installs).
CACHE_DIRS: tuple[str, ...] = (
    ".npm",
    ".cache/yarn",
    ".local/share/pnpm/store",
    ".cargo/registry",
    ".cargo/git",
    "go/pkg/mod",
    ".cache/go-build",
    ".cache/pip",
    ".cache/uv",
    ".gradle/caches",
    ".gradle/wrapper",
    ".m2/repository",
)
# Every name home_env sets: a repository's `env:` may not set them (repo_config.HONK_SET_ENV).
HOME_ENV_NAMES = frozenset(
    {"HOME", "GOFLAGS", "MAVEN_OPTS", *(name for name, _ in _CACHE_VARIABLES)}
)


@dataclass(frozen=True)
class SandboxHome:
    """A run's home: `host`, its directory on the host; `visible`, where commands see it."""

    host: Path
    visible: str = HOME_DIR


def home_env(home: str) -> dict[str, str]:
    """HOME and the package managers' cache variables for a home seen at `home`."""
    env = {"HOME": home}
    env.update({name: f"{home}/{place}" for name, place in _CACHE_VARIABLES})
    # Go's module cache is read-only unless asked: then nothing could remove a run's home.
    env["GOFLAGS"] = "-modcacherw"
    # Java takes user.home from the password database, not HOME: Maven's ~/.m2 with it.
    env["MAVEN_OPTS"] = f"-Duser.home={home} -Dmaven.repo.local={home}/.m2/repository"
    return env


def make_home(path: Path) -> Path:
    """`path` as a new, empty directory of this user's only (0700). Blocking."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not a directory of this user's")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def inside(home: Path, relative: str) -> Path | None:
    """`home/relative` when it is a real directory reached without a symbolic link (setup
    could have made `.cache` a link to anywhere on the host), else None. Blocking."""
    current = home
    for part in relative.split("/"):
        current = current / part
        try:
            info = current.lstat()
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return None
    return current


async def snapshot(home: Path) -> Path:
    """A copy of `home` as it is now (after setup, before the agent), beside it, for the
    review's test runs: nothing the agent leaves in the home (a `usercustomize.py`, a Gradle
    init script) can sway the outcome checks, whose base results later runs reuse."""
    copy = home.with_name(SETUP_HOME)
    await asyncio.to_thread(make_home, copy)
    await copy_tree(home, copy, contents=True)
    return copy


async def copy_tree(source: Path, target: Path, *, contents: bool = False) -> None:
    """`cp -a --reflink=auto`: shared blocks where the filesystem can, never following a
    symbolic link; `contents`: what `source` holds, into the existing `target`."""
    src = f"{source}/." if contents else str(source)
    proc = await asyncio.create_subprocess_exec(
        "cp", "-a", "--reflink=auto", "--", src, str(target),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"cp failed: {err.decode(errors='replace').strip()[:300]}")
