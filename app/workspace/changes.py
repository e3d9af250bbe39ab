"""What a run's change is made of, as git reports it: each changed path with its modes, a
changed file's text on both sides, what setup made, and what is never part of a change
(build output, lock files made by setup), with the reason it was left out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

GITLINK = "160000"

SYMLINK = "120000"

REGULAR = ("100644", "100755")

# What the common toolchains build, never part of a change when git would add it, whatever the
# repository's .gitignore says: a directory of one of these names that was not tracked where
# the run began (a repository's own tracked `build/` or `vendor/` is its business), ...
BUILD_DIRS = frozenset(
    {
        "target",  # cargo, maven
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        "dist",
        "build",
        "_build",
        ".build",
        "vendor",  # go mod vendor, composer, bundler
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".eggs",
        ".gradle",
        "coverage",
        "htmlcov",
        ".nyc_output",
        ".next",
        ".nuxt",
        ".turbo",
        ".parcel-cache",
        ".cache",
        ".dart_tool",
        ".zig-cache",
        "zig-out",
    }
)

BUILD_DIR_SUFFIXES = (".egg-info",)

# ... compiled files and coverage data, ...
BUILD_FILE_SUFFIXES = (".pyc", ".pyo", ".class", ".o")

BUILD_FILES = frozenset({".coverage", "coverage.xml", "lcov.info"})

# ... and a lock file the repository does not track at that path (made by an install).
LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lock",
        "bun.lockb",
        "Cargo.lock",
        "poetry.lock",
        "uv.lock",
        "pdm.lock",
        "Pipfile.lock",
        "Gemfile.lock",
        "composer.lock",
        "go.work.sum",
        "gradle.lockfile",
        "mix.lock",
        "pubspec.lock",
    }
)

MADE_BY_SETUP = "made or changed by setup"

BUILD_OUTPUT = "build output"


@dataclass(frozen=True)
class Change:
    """One path as staging everything changes it since the run began (`git diff --raw`)."""

    path: str
    status: str  # A (added), M (modified), D (deleted), T (type changed)
    old_mode: str  # "000000" when added
    new_mode: str  # "000000" when deleted
    new_sha: str = field(default="", compare=False)  # the staged blob ("0" * 40 when deleted)

    def describe(self) -> str:
        """The path, and what kind of change it is when that is not a plain file's."""
        if GITLINK in (self.old_mode, self.new_mode):
            return f"{self.path} (a submodule or nested repository commit)"
        if self.status == "T":
            return f"{self.path} (type {self.old_mode} -> {self.new_mode})"
        if self.status == "M" and self.old_mode != self.new_mode:
            return f"{self.path} (mode {self.old_mode} -> {self.new_mode})"
        return self.path


@dataclass(frozen=True)
class ChangedText:
    """One changed file's text where the run began and as `git add -A` would commit it."""

    path: str  # where it is now (where it was, when deleted)
    old_path: str  # where it was where the run began (another path when renamed)
    before: str | None  # None: not there (or not a regular file) where the run began
    after: str | None  # None: deleted, or there but not read (`unread` says why)
    unread: str = ""  # "a symbolic link", "larger than 2,000,000 bytes"


@dataclass(frozen=True)
class SetupProducts:
    """What the work tree held beyond the run's commit once setup was done, before the agent
    began: never part of the change."""

    # Untracked and ignored files alike; a directory holding nothing tracked as `dir/`.
    untracked: frozenset[str] = frozenset()
    # Tracked files setup changed: their blob as setup left them (None: setup deleted them).
    changed: Mapping[str, str | None] = field(default_factory=dict)

    def made(self, change: Change) -> str | None:
        """What to name `change` by when setup made it as it stands (its path or directory)."""
        if change.path in self.changed:
            left = self.changed[change.path]
            same = change.status == "D" if left is None else change.new_sha == left
            return change.path if same else None
        if change.status != "A":
            return None
        if change.path in self.untracked:
            return change.path
        parts = change.path.split("/")
        for end in range(1, len(parts)):
            directory = "/".join(parts[:end]) + "/"
            if directory in self.untracked:
                return directory
        return None


@dataclass(frozen=True)
class LeftOut:
    """Paths staging left out of the change, named by `label` (a file, or `dir/`)."""

    label: str
    why: str  # MADE_BY_SETUP or BUILD_OUTPUT
    files: int = 1

    def describe(self) -> str:
        count = f", {self.files} files" if self.files > 1 else ""
        return f"{self.label} ({self.why}{count})"


def build_output(path: str, tracked_dirs: frozenset[str]) -> str | None:
    """What to name `path` (a file the run added) by when it is a toolchain's build output:
    its build directory (`target/`) unless that was tracked where the run began, or itself
    (a `.pyc`, coverage data, a lock file the repository does not track); else None."""
    parts = path.split("/")
    for end, part in enumerate(parts[:-1], start=1):
        if part in BUILD_DIRS or part.endswith(BUILD_DIR_SUFFIXES):
            directory = "/".join(parts[:end])
            if directory not in tracked_dirs:
                return directory + "/"
    name = parts[-1]
    if (
        name.endswith(BUILD_FILE_SUFFIXES)
        or name in BUILD_FILES
        or name.startswith(".coverage.")
        or name in LOCK_FILES
    ):
        return path
    return None


def parse_raw(raw: str) -> list[Change]:
    """`git diff --raw -z` output: ":old new old_sha new_sha status\\0path\\0" per change."""
    parts = raw.split("\0")
    changes = []
    for meta, path in zip(parts[::2], parts[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, _old, new, status = meta[1:].split()
        changes.append(Change(path, status[0], old_mode, new_mode, new))
    return changes


def parse_raw_renames(raw: str) -> list[tuple[str, str, str, str, str, str, str]]:
    """`git diff --raw -z --find-renames`: (old mode, new mode, old sha, new sha, status,
    old path, path) per change; a rename (R) or copy (C) names two paths."""
    parts = raw.split("\0")
    changes = []
    index = 0
    while index < len(parts):
        meta = parts[index]
        if not meta.startswith(":"):
            index += 1
            continue
        old_mode, new_mode, old_sha, new_sha, status = meta[1:].split()
        if status[0] in "RC":
            old_path, path = parts[index + 1], parts[index + 2]
            index += 3
        else:
            old_path = path = parts[index + 1]
            index += 2
        changes.append((old_mode, new_mode, old_sha, new_sha, status[0], old_path, path))
    return changes


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
