"""One run's clone on the host: what the agent changed, exactly as it will be committed; the
base branch's files (trusted) for setup and instructions; the commit and the push. What a
change is made of is `changes.py`'s; looking at a work tree from outside, `work_tree.py`'s."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import HonkError, RunFailure
from app.workspace.changes import (
    BUILD_OUTPUT,
    GITLINK,
    MADE_BY_SETUP,
    REGULAR,
    SYMLINK,
    Change,
    ChangedText,
    LeftOut,
    SetupProducts,
    build_output,
    parse_raw,
    parse_raw_renames,
)
from app.workspace.git import GitError, git, git_error
from app.workspace.work_tree import nested_repositories, products_beyond_commit

BRANCH_PREFIX = "honk/"


class PushRejected(GitError):
    """The remote refused the push (not a fast-forward, or a protected branch)."""


class PushRefused(HonkError, RuntimeError):
    """Honk itself will not push this branch (the base, or outside honk/)."""


class ChangeRefused(RunFailure):
    """The change holds what Honk never commits (a nested repository, a path outside `paths:`)."""


@dataclass
class Checkout:
    """One run's private clone; `start_sha` is where the run began on `branch`."""

    path: Path
    repo: str
    branch: str
    base: str
    clone_url: str
    start_sha: str = field(default="", repr=False)
    # The run's HOME on the host (run_home.py), beside the clone; None where there is none.
    home: Path | None = field(default=None, repr=False)
    # A copy of the home as setup left it (run_home.snapshot), for the review's test runs.
    setup_home: Path | None = field(default=None, repr=False)
    # Recorded once setup is done (`record_setup_products`): never part of the change.
    setup_products: SetupProducts | None = field(default=None, repr=False)
    # What the last `stage` left out of the index, beyond what git ignores.
    left_out: list[LeftOut] = field(default_factory=list, repr=False)
    _tracked_dirs: frozenset[str] | None = field(default=None, repr=False)

    async def has_changes(self) -> bool:
        """True when the run changed anything: uncommitted edits or new commits (what is
        never committed, setup's products and build output, does not count)."""
        return bool(await self.changes()) or await self.head_sha() != self.start_sha

    async def record_setup_products(self) -> SetupProducts:
        """Remember what the work tree holds beyond the run's commit now (after setup, before
        the agent): untracked and ignored paths, and tracked files changed. None of it is
        ever staged (see `stage`)."""
        self.setup_products = await products_beyond_commit(self.path)
        return self.setup_products

    async def base_paths(self, *pathspecs: str) -> list[str]:
        """The files at the base commit under `pathspecs` (paths or directories), read with git."""
        base = await self.base_sha()
        listing = await git(
            "ls-tree", "-r", "-z", "--name-only", "--full-tree", base, "--", *pathspecs,
            cwd=self.path,
        )  # fmt: skip
        return [path for path in listing.stdout.split("\0") if path]

    async def changes(self) -> list[Change]:
        """Everything `git add -A` would stage, against where the run began (the real index
        is left as it is)."""
        return parse_raw(await self._against_start("--raw", "--no-abbrev", "-z"))

    async def changed_files(self) -> list[str]:
        """Paths changed since the run began, committed or not (untracked included)."""
        return sorted({change.path for change in await self.changes()})

    async def changed_texts(
        self, wanted: Callable[[str], bool], *, max_bytes: int
    ) -> list[ChangedText]:
        """The text on both sides of each changed file `wanted` picks (by either path), read
        from git's objects, never from the work tree: the start's blob, and the blob staging
        everything made (what the diff and the commit show). Renames are paired."""
        raw = await self._against_start("--raw", "--no-abbrev", "-z", "--find-renames")
        found = []
        for change in parse_raw_renames(raw):
            old_mode, new_mode, old_sha, new_sha, status, old_path, path = change
            if not (wanted(path) or wanted(old_path)):
                continue
            before = None
            if old_mode in REGULAR:
                before, _why = await self._blob_text(old_sha, max_bytes)
            after, unread = None, ""
            if status != "D":
                if new_mode == SYMLINK:
                    unread = "a symbolic link"
                elif new_mode == GITLINK:
                    unread = "a submodule"
                else:
                    after, unread = await self._blob_text(new_sha, max_bytes)
            found.append(ChangedText(path, old_path, before, after, unread))
        return found

    async def _blob_text(self, sha: str, max_bytes: int) -> tuple[str | None, str]:
        size = int((await git("cat-file", "-s", sha, cwd=self.path)).stdout.strip())
        if size > max_bytes:
            return None, f"larger than {max_bytes:,} bytes"
        return (await git("cat-file", "blob", sha, cwd=self.path)).stdout, ""

    async def start_paths(self) -> list[str]:
        """Every file path of the commit the run began at (read from git, not the work tree)."""
        listing = await git(
            "ls-tree", "-r", "-z", "--name-only", "--full-tree", self.start_sha, cwd=self.path
        )
        return sorted(path for path in listing.stdout.split("\0") if path)

    async def diff_stat(self) -> str:
        """`git diff --stat` of everything changed since the run began."""
        return await self._against_start("--stat")

    async def unified_diff(self, context: int = 3) -> str:
        """The unified diff of everything changed since the run began, renames found.

        Hunk headers carry the new files' line numbers; the prefixes are git's defaults
        whatever the clone's config says, and non-ASCII names are left unquoted.
        """
        return await self._against_start(
            f"--unified={context}", "--find-renames", "--no-color", "--src-prefix=a/",
            "--dst-prefix=b/", git_options=("-c", "core.quotePath=false"),
        )  # fmt: skip

    async def drop_changes(self, paths: Sequence[str]) -> None:
        """Put `paths` back as they were when the run began; files the run added go."""
        for path in paths:
            known = f"{self.start_sha}:{path}"
            if (await git("cat-file", "-e", known, cwd=self.path, check=False)).returncode == 0:
                await git("checkout", "--quiet", self.start_sha, "--", path, cwd=self.path)
            else:
                await asyncio.to_thread((self.path / path).unlink, missing_ok=True)

    async def stage(self) -> list[Change]:
        """Stage everything not ignored into the index the commit is made from, less what is
        never committed (setup's products, build output: `left_out` names them); what it holds.

        Nested repositories are refused before `git add` looks at them: git would record one
        as a gitlink to whatever its `.git` (a file may point anywhere on the host) names.
        """
        await self.refuse_nested_repositories()
        changes, self.left_out = await self._add_all()
        return changes

    async def _add_all(
        self, env: Mapping[str, str] | None = None
    ) -> tuple[list[Change], list[LeftOut]]:
        """`git add -A` into the index (`env` may name another), then what is never committed
        taken back out of it: setup's products and build output. (What stays staged, what
        was left out.)"""
        await git("add", "-A", cwd=self.path, env=env)
        changes = await self._staged(env)
        out: dict[tuple[str, str], int] = {}
        dropped: list[str] = []
        tracked_dirs: frozenset[str] | None = None
        for change in changes:
            label = self.setup_products.made(change) if self.setup_products else None
            why = MADE_BY_SETUP
            if label is None and change.status == "A":
                if tracked_dirs is None:
                    tracked_dirs = await self._start_dirs()
                label, why = build_output(change.path, tracked_dirs), BUILD_OUTPUT
            if label is not None:
                out[(label, why)] = out.get((label, why), 0) + 1
                dropped.append(change.path)
        if not dropped:
            return changes, []
        # Back to where the run began in the index: an added file leaves it, a changed one is
        # as it was; the work tree keeps them.
        await git(
            "reset", "-q", self.start_sha, "--pathspec-from-file=-", "--pathspec-file-nul",
            cwd=self.path, env={**(env or {}), "GIT_LITERAL_PATHSPECS": "1"},
            input="\0".join(dropped) + "\0",
        )  # fmt: skip
        left = [LeftOut(label, why, files) for (label, why), files in out.items()]
        return await self._staged(env), left

    async def _staged(self, env: Mapping[str, str] | None = None) -> list[Change]:
        result = await git(
            "diff", "--cached", "--raw", "--no-abbrev", "-z", "--no-renames",
            "--ignore-submodules=none", self.start_sha, cwd=self.path, env=env,
        )  # fmt: skip
        return parse_raw(result.stdout)

    async def _start_dirs(self) -> frozenset[str]:
        """Every directory tracked where the run began (read once)."""
        if self._tracked_dirs is None:
            listing = await git(
                "ls-tree", "-r", "-d", "-z", "--name-only", self.start_sha, cwd=self.path
            )
            self._tracked_dirs = frozenset(p for p in listing.stdout.split("\0") if p)
        return self._tracked_dirs

    async def commit_staged(
        self, message: str, *, author_name: str, author_email: str
    ) -> str | None:
        """Commit the index exactly as `stage` left it; None when it holds nothing new."""
        staged = await git(
            "diff", "--cached", "--quiet", "--ignore-submodules=none", "HEAD",
            cwd=self.path, check=False,
        )  # fmt: skip
        if staged.returncode == 0:
            return None
        identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        await git(
            "commit", "--quiet", "--no-verify", "--file=-", cwd=self.path, env=identity,
            input=message,
        )  # fmt: skip
        return await self.head_sha()

    async def commit_all(
        self,
        message: str,
        *,
        author_name: str,
        author_email: str,
        allowed: Callable[[str], bool] | None = None,
    ) -> str | None:
        """Stage everything, refuse paths `allowed` refuses, commit; None when nothing changed."""
        changes = await self.stage()
        if allowed is not None:
            refuse_outside(changes, allowed)
        return await self.commit_staged(message, author_name=author_name, author_email=author_email)

    async def push(self, token: str | None) -> str:
        """Push refs/heads/<branch> to the clone URL, never forced; returns its sha."""
        if self.branch == self.base or not self.branch.startswith(BRANCH_PREFIX):
            raise PushRefused(
                f"refusing to push {self.branch!r}: Honk pushes only its own "
                f"{BRANCH_PREFIX}* branches, never the base branch"
            )
        ref = f"refs/heads/{self.branch}"
        sha = (await git("rev-parse", "--verify", ref, cwd=self.path)).stdout.strip()
        # The URL is Honk's, not whatever the checkout's config says now.
        result = await git(
            "push", "--porcelain", "--no-verify", self.clone_url, f"{ref}:{ref}",
            cwd=self.path, token=token, check=False,
        )  # fmt: skip
        rejected = [line for line in result.stdout.splitlines() if line.startswith("!")]
        if rejected:
            reason = rejected[0].split("\t")[-1]
            raise PushRejected(
                f"push of {self.branch} rejected: {reason}",
                returncode=result.returncode,
                stderr=result.stderr,
            )
        if result.returncode != 0:
            raise git_error(("push", self.clone_url), result)
        return sha

    def ignore_locally(self, patterns: Sequence[str]) -> None:
        """Ignore `patterns` in this clone only (.git/info/exclude is never committed)."""
        exclude = self.path / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a") as handle:
            handle.write("\n# Honk: test and build caches\n" + "\n".join(patterns) + "\n")

    async def head_sha(self) -> str:
        return (await git("rev-parse", "HEAD", cwd=self.path)).stdout.strip()

    async def commits_ahead_of_base(self) -> int:
        """Commits on HEAD that the base branch lacks: work an earlier attempt already pushed."""
        result = await git(
            "rev-list", "--count", f"refs/remotes/origin/{self.base}..HEAD", cwd=self.path
        )
        return int(result.stdout.strip() or 0)

    # -- the base branch: trusted files ------------------------------------------------

    async def base_sha(self) -> str:
        """The base branch's commit as fetched for this run (a base given as a commit: it)."""
        for rev in (f"refs/remotes/origin/{self.base}^{{commit}}", f"{self.base}^{{commit}}"):
            found = await git("rev-parse", "--verify", "--quiet", rev, cwd=self.path, check=False)
            if found.returncode == 0:
                return found.stdout.strip()
        raise GitError(f"base {self.base!r} is neither a branch nor a commit of the repository")

    @contextlib.asynccontextmanager
    async def on_base_tree(self) -> AsyncIterator[bool]:
        """The work tree holds the base commit's files while the block runs, then the run's
        branch again; what the block made (untracked and ignored files: `.venv`,
        `node_modules`) stays. Yields whether the tree had to be switched (a follow-up's
        branch differs from the base): code the agent wrote is then not there at all."""
        base = await self.base_sha()
        if await _tree(self.path, base) == await _tree(self.path, "HEAD"):
            yield False
            return
        await git("checkout", "--quiet", "--force", "--detach", base, cwd=self.path)
        try:
            yield True
        finally:
            await asyncio.shield(git("checkout", "--quiet", "--force", self.branch, cwd=self.path))

    async def base_files(self, names: Sequence[str], *, max_bytes: int) -> dict[str, str]:
        """The text of the regular files `names` at the base commit, read with git, never from
        the work tree (on a follow-up that is the agent's); larger ones are left out."""
        base = await self.base_sha()
        listing = await git("ls-tree", "-z", "--full-tree", base, "--", *names, cwd=self.path)
        found: dict[str, str] = {}
        for entry in filter(None, listing.stdout.split("\0")):
            meta, _, name = entry.partition("\t")
            mode, kind, sha = meta.split()
            if kind != "blob" or mode not in REGULAR or name not in names:
                continue  # a symlink's target is not the repository's text
            size = await git("cat-file", "-s", sha, cwd=self.path)
            if int(size.stdout.strip()) > max_bytes:
                continue
            found[name] = (await git("cat-file", "blob", sha, cwd=self.path)).stdout
        return {name: found[name] for name in names if name in found}

    # -- what host-side git must never look into ----------------------------------------

    async def refuse_nested_repositories(self) -> None:
        """Refuse a work tree holding `.git` below its top (a directory, or a `gitdir:` file
        that may point at any repository on the host), unless it is in an ignored directory
        (a dependency's checkout that setup made): such a path is never staged."""
        refused = await nested_repositories(self.path)
        if refused:
            raise ChangeRefused(
                "the change contains a nested git repository, which Honk never commits: "
                + ", ".join(refused[:10])
            )

    async def _against_start(self, *diff_args: str, git_options: Sequence[str] = ()) -> str:
        # Stage into a throwaway copy of the index so untracked files count too and
        # the real index is left as the agent left it. copy2 keeps the index mtime,
        # which git needs to re-check files changed in the second it was written.
        await self.refuse_nested_repositories()
        index = self.path.parent / f".{self.path.name}.index-{secrets.token_hex(6)}"
        real_index = self.path / ".git" / "index"
        try:
            if real_index.exists():
                await asyncio.to_thread(shutil.copy2, real_index, index)
            env = {"GIT_INDEX_FILE": str(index)}
            await self._add_all(env)
            result = await git(
                *git_options, "diff", "--cached", "--no-ext-diff", "--no-textconv",
                "--no-renames", "--ignore-submodules=none", *diff_args, self.start_sha,
                cwd=self.path, env=env,
            )  # fmt: skip
            return result.stdout
        finally:
            index.unlink(missing_ok=True)


def refuse_outside(changes: Sequence[Change], allowed: Callable[[str], bool]) -> None:
    """Raise ChangeRefused naming the changes whose path `allowed` refuses."""
    refused = [change.describe() for change in changes if not allowed(change.path)]
    if refused:
        more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
        raise ChangeRefused(
            "the change touches paths this repository does not let Honk change: "
            + ", ".join(refused[:10])
            + more
        )


async def _tree(path: Path, rev: str) -> str:
    return (await git("rev-parse", f"{rev}^{{tree}}", cwd=path)).stdout.strip()
