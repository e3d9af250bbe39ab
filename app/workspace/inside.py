"""A path as the agent wrote it, resolved on the host and refused if it leaves the checkout."""

from __future__ import annotations

import os
from pathlib import Path


class PathOutsideWorkspace(ValueError):
    """A path given by the agent leads outside the checkout."""


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
