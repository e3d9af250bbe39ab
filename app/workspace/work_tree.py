"""A git work tree looked at from outside, writing nothing to it: an id of its state as
`git add -A` would see it (`honk run`'s watch on a local checkout), and the `.git` entries
nested below its top (repositories the agent may have made inside the checkout), and those of
them `git add` would look into."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from app.workspace.changes import SetupProducts, under
from app.workspace.git import git

# `git status` judges whether anything changed; submodules the agent might have made are
# never entered (their config could run commands on the host).
NO_SUBMODULES = "--ignore-submodules=all"


class NotACheckout(Exception):
    """A directory git does not take for a work tree; the message is git's reason."""


async def work_tree_state(path: Path) -> str:
    """An id of the work tree holding `path` as `git add -A` would see it (untracked files
    included, ignored ones not) and of HEAD: equal ids, nothing changed in between.

    Nothing is written to the repository: a copy of its index and a scratch object
    directory (the real one as an alternate) take what `git add` and `write-tree` make.
    Raises NotACheckout when `path` is not in a git work tree.
    """
    where = await git(
        "rev-parse", "--show-toplevel", "--git-path", "index", "--git-path", "objects",
        cwd=path, check=False,
    )  # fmt: skip
    lines = where.stdout.splitlines()
    if where.returncode != 0 or len(lines) != 3:
        reason = next((line for line in where.stderr.splitlines() if line.strip()), "")
        raise NotACheckout(reason.removeprefix("fatal: ").strip() or "git rev-parse failed")
    top = Path(lines[0])
    real_index, objects = (path / lines[1]).absolute(), (path / lines[2]).absolute()
    scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="honk-tree-state-"))
    try:
        index = scratch / "index"
        if real_index.exists():
            # copy2 keeps the mtime: git re-hashes only files changed since the index was.
            await asyncio.to_thread(shutil.copy2, real_index, index)
        await asyncio.to_thread((scratch / "objects").mkdir)
        env = {
            "GIT_INDEX_FILE": str(index),
            "GIT_OBJECT_DIRECTORY": str(scratch / "objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
        }
        await git("add", "-A", cwd=top, env=env)
        tree = await git("write-tree", cwd=top, env=env)
        head = await git("rev-parse", "--verify", "--quiet", "HEAD", cwd=top, check=False)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    return f"{head.stdout.strip() or '-'} {tree.stdout.strip()}"


def nested_git_entries(root: Path) -> list[str]:
    """Relative paths of every `.git` below the top of `root`, symlinks not followed
    (blocking: call in a thread). Iterative: the agent may nest directories deeply."""
    found: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(os.path.join(root, relative)) as entries:
                children = list(entries)
        except OSError:
            continue
        for entry in children:
            path = os.path.join(relative, entry.name)
            if entry.name == ".git":
                if relative:  # the checkout's own is at the top
                    found.append(path)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
    return sorted(found)


async def nested_repositories(path: Path) -> list[str]:
    """The `.git` entries below the top of the work tree at `path` that `git add` would look
    into: those in an ignored directory (a dependency's checkout that setup made) are left
    out, unless that directory holds tracked files."""
    nested = await asyncio.to_thread(nested_git_entries, path)
    if not nested:
        return []
    parents = [os.path.dirname(entry) for entry in nested]
    ignored = await git(
        "check-ignore", "-z", "--stdin", cwd=path, input="\0".join(parents) + "\0",
        check=False,
    )  # fmt: skip
    skipped = set(filter(None, ignored.stdout.split("\0"))) if ignored.returncode == 0 else set()
    if skipped:
        # An ignored directory that holds tracked files is still looked into by `git add`.
        tracked = await git("ls-files", "-z", "--", *sorted(skipped), cwd=path)
        paths = [p for p in tracked.stdout.split("\0") if p]
        skipped = {d for d in skipped if not any(under(p, d) for p in paths)}
    return [entry for entry in nested if os.path.dirname(entry) not in skipped]


async def products_beyond_commit(path: Path) -> SetupProducts:
    """What the work tree at `path` holds beyond its commit now: untracked and ignored paths,
    and tracked files changed (with their blob as they are now; None: deleted)."""
    listing = await git(
        "ls-files", "-z", "--others", "--directory", "--no-empty-directory", cwd=path
    )
    untracked = frozenset(p for p in listing.stdout.split("\0") if p)
    status = await git(
        "status", "--porcelain=v1", "-z", "--untracked-files=no", NO_SUBMODULES,
        cwd=path,
    )  # fmt: skip
    changed: dict[str, str | None] = {}
    for entry in filter(None, status.stdout.split("\0")):
        code, name = entry[:2], entry[3:]
        if "R" in code or "C" in code or not name:
            continue  # staged renames: setup cannot stage (the checkout's .git is read-only)
        changed[name] = None if "D" in code else ""
    present = [name for name, blob in changed.items() if blob is not None]
    if present:
        hashed = await git(
            "hash-object", "--stdin-paths", cwd=path, input="\n".join(present) + "\n",
            check=False,
        )  # fmt: skip
        if hashed.returncode == 0:  # else (a file become a directory): kept as changed
            changed.update(zip(present, hashed.stdout.split(), strict=False))
    return SetupProducts(untracked, changed)
