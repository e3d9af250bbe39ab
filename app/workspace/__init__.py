"""Workspaces: per-repository mirrors, per-run checkouts, and the sandbox agent commands run in."""

from app.workspace.changes import Change
from app.workspace.checkout import ChangeRefused, Checkout, PushRefused, PushRejected
from app.workspace.git import GitAuthError, GitError, GitResult, git
from app.workspace.mirror import Workspaces
from app.workspace.sandbox import (
    CommandResult,
    PathOutsideWorkspace,
    Sandbox,
    SandboxUnavailable,
    resolve_inside,
)

__all__ = [
    "Change",
    "ChangeRefused",
    "Checkout",
    "CommandResult",
    "GitAuthError",
    "GitError",
    "GitResult",
    "PathOutsideWorkspace",
    "PushRefused",
    "PushRejected",
    "Sandbox",
    "SandboxUnavailable",
    "Workspaces",
    "git",
    "resolve_inside",
]
