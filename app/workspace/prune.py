"""A mirror holds only what the repository's branches and tags reach now.

Objects force-pushed away or left by a deleted branch stay in a mirror until it is
garbage-collected, and a per-run clone hard-links every object of the mirror: the agent
could read what the repository no longer has. So the mirror fetches branches and tags only
(GitHub's refs/pull/* move on every push to a pull request's base), and when a fetch drops
a ref or moves one to a commit that does not contain the old one, the mirror is repacked
without the objects nothing reaches any more.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.workspace.git import GitError, git

log = logging.getLogger(__name__)

# A fetch can fail once while the remote changes under it (pushes between the refs it was
# shown and the pack it asks for: "expected 'acknowledgments'") or when a connection drops;
# it is tried once more after this pause before the failure is the run's.
FETCH_RETRY_PAUSE = 1.0

REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_KEPT = ("refs/heads/", "refs/tags/")


async def fetch_and_prune(mirror: Path, *, token: str | None, git_timeout: float) -> bool:
    """Fetch into `mirror`, pruning what became unreachable; True when it pruned."""
    dropped = await _keep_branches_and_tags(mirror)
    before = await refs(mirror)
    await _fetch(mirror, token, git_timeout)
    after = await refs(mirror)
    # Left when a repack did not finish (a timeout, a crash): the next fetch repacks.
    pending = mirror / "honk-prune-pending"
    if dropped or pending.exists() or await _lost_objects(mirror, before, after):
        pending.touch()
        await git("gc", "--prune=now", "--quiet", cwd=mirror, timeout=git_timeout)
        pending.unlink()
        return True
    return False


async def _fetch(mirror: Path, token: str | None, git_timeout: float) -> None:
    fetch = ("fetch", "--prune", "--quiet", "origin")
    try:
        await git(*fetch, cwd=mirror, token=token, timeout=git_timeout)
    except GitError as exc:
        log.warning("fetch into the mirror failed; trying once more: %s", exc)
        await asyncio.sleep(FETCH_RETRY_PAUSE)
        await git(*fetch, cwd=mirror, token=token, timeout=git_timeout)


async def configure(mirror: Path) -> None:
    """A new mirror (a bare clone) fetches exactly branches and tags."""
    await _keep_branches_and_tags(mirror)


async def refs(repo: Path) -> dict[str, str]:
    listing = await git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)
    found = {}
    for line in listing.stdout.splitlines():
        sha, _, name = line.partition(" ")
        if name:
            found[name] = sha
    return found


async def _keep_branches_and_tags(mirror: Path) -> bool:
    """Set the fetch refspecs; delete refs outside them (older mirrors had refs/*)."""
    current = await git("config", "--get-all", "remote.origin.fetch", cwd=mirror, check=False)
    if tuple(current.stdout.split()) != REFSPECS:
        await git("config", "--unset-all", "remote.origin.fetch", cwd=mirror, check=False)
        await git("config", "--unset", "remote.origin.mirror", cwd=mirror, check=False)
        for spec in REFSPECS:
            await git("config", "--add", "remote.origin.fetch", spec, cwd=mirror)
    others = [name for name in await refs(mirror) if not name.startswith(_KEPT)]
    if others:
        commands = "".join(f"delete {name}\n" for name in others)
        await git("update-ref", "--stdin", cwd=mirror, input=commands)
    return bool(others)


async def _lost_objects(mirror: Path, before: dict[str, str], after: dict[str, str]) -> bool:
    """Whether the fetch left objects no ref reaches: a ref deleted or not fast-forwarded."""
    if any(name not in after for name in before):
        return True
    moved = [sha for name, sha in before.items() if after[name] != sha]
    if not moved:
        return False
    if any(before[name] != after[name] for name in before if name.startswith("refs/tags/")):
        return True  # an annotated tag moved leaves its old tag object behind
    # Any commit the old tips reach that no current ref reaches?
    # The old tips come on stdin (as wanted: --stdin is read where it stands), then --not.
    lost = await git(
        "rev-list", "-n", "1", "--stdin", "--not", "--all", cwd=mirror, input="\n".join(moved)
    )
    return bool(lost.stdout.strip())
