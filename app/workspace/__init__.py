"""Workspaces: per-repository mirrors, per-run checkouts, and the sandbox agent commands run in."""

from app.workspace.changes import Change
from app.workspace.checkout import ChangeRefused, Checkout, PushRefused, PushRejected
from app.workspace.command_output import CommandResult
from app.workspace.git import GitAuthError, GitError, GitResult, git
from app.workspace.inside import PathOutsideWorkspace, resolve_inside
from app.workspace.mirror import Workspaces
from app.workspace.sandbox import Sandbox, SandboxUnavailable

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
