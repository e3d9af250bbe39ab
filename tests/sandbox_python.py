"""A Python for the tests' sandboxes: the base interpreter with pytest and pip, nothing else.

Honk's sandbox never shows the environment the tests run in (Honk's venv, or Honk's own
packages), and a sandboxed `python -m pytest` must still find pytest, with no network. So
once per test session (per xdist worker: each makes its own, in its own temporary
directory) a venv is made from the base interpreter without pip, and the files of pytest,
pip and the distributions they need are copied into its site-packages from the test
environment's own installs, as their RECORD lists them (what an installer put there).
The tests point HONK_SANDBOX_PYTHON (`Settings.sandbox_python`) at it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What sandboxed commands in the tests run: `python -m pytest`, `python -m pip download`.
WANTED = ("pytest", "pip")


def build_sandbox_python(prefix: Path) -> Path:
    """A venv at `prefix` from the base interpreter holding only WANTED and their needs."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(prefix)],
        check=True,
        capture_output=True,
    )
    site = site_packages(prefix)
    for dist in needed(WANTED):
        copy_distribution(dist, site)
    return prefix


def site_packages(prefix: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return prefix / relative


def needed(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """`names` and every distribution they require on this interpreter (extras aside)."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        dist = metadata.distribution(name)
        found[name] = dist
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def copy_distribution(dist: metadata.Distribution, site: Path) -> None:
    """The distribution's files that live in site-packages (its scripts in bin/ aside)."""
    for file in dist.files or ():
        relative = Path(str(file))
        if relative.is_absolute() or ".." in relative.parts or "__pycache__" in relative.parts:
            continue
        source = Path(str(dist.locate_file(file)))
        if not source.is_file():
            continue
        target = site / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
