"""What of the host a sandbox shows: a minimal allowlist, read-only, minus Honk's own files."""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.config import SandboxSettings, Settings

# Standard system directories bash, git, coreutils, python and compilers need, bound
# read-only (or re-created as the symlinks they are on merged-/usr systems). Never / or
# /etc as a whole, and not /opt, /srv, /home or /var: toolchains there are named in
# HONK_SANDBOX_RO_PATHS.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The parts of /etc that programs read to resolve names, users, certificates, libraries.
ETC_PATHS = (
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/crypto-policies",
    "/etc/gai.conf",
    "/etc/gitconfig",
    "/etc/group",
    "/etc/host.conf",
    "/etc/hosts",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/pki",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl",
)
# A directory that holds a hidden path is rebuilt from its other entries, so the hidden
# name is not even in the mount table; past this many entries (a big site-packages) an
# empty mount covers the hidden path instead, which is faster but shows its name there.
REBUILD_MAX_ENTRIES = 64
APP_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Hidden:
    """Host paths a sandbox never shows, even under a bound directory.

    `secrets` (env file, key file, data directory, other runs' checkouts) are hidden
    inside the checkout too. Nothing bound inside `secrets` or `code` (Honk's package)
    shows. `around` (Honk's working and source directories, the venv Honk runs in and its
    site-packages) are carved out of bound directories, but a path bound at or inside one
    of them explicitly (a toolchain in Honk's directory) shows.
    """

    secrets: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    around: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("secrets", "code", "around"):
            object.__setattr__(self, name, _spellings(getattr(self, name)))

    @property
    def closed(self) -> tuple[str, ...]:
        return self.secrets + self.code

    @property
    def every(self) -> tuple[str, ...]:
        return self.secrets + self.code + self.around


@dataclass(frozen=True)
class HonkInstall:
    """Where Honk's code is: its package, its source tree, the venv it runs in (if any).

    Installed in a venv, Honk's dependencies are its own, not the repository's toolchain:
    the sandbox never shows that venv (its site-packages named as well, should they live
    elsewhere); its Python is `SandboxPython`'s.
    """

    package: Path = APP_DIR
    source_root: Path | None = None
    site_packages: tuple[Path, ...] = field(default_factory=tuple)
    venv: Path | None = None

    @classmethod
    def current(cls) -> HonkInstall:
        parent = APP_DIR.parent
        in_site = parent.name in ("site-packages", "dist-packages")
        venv = honk_venv()
        sites = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")} if venv else set()
        return cls(
            package=APP_DIR,
            source_root=None if in_site else parent,
            site_packages=tuple(sorted(sites)),
            venv=venv,
        )


def honk_venv() -> Path | None:
    """The virtualenv Honk runs in, or None when it runs on an installation's own Python."""
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None


@dataclass(frozen=True)
class SandboxPython:
    """The Python a sandbox offers as `python`: an installation, or a venv made from one.

    By default the installation Honk's venv was made from (`sys.base_prefix`; Honk's own
    interpreter when it runs in none) with that installation's own site-packages, never
    Honk's venv; HONK_SANDBOX_PYTHON names another. `prefix/bin` comes first on PATH.
    """

    prefix: str

    @classmethod
    def for_settings(cls, sandbox: SandboxSettings) -> SandboxPython:
        return cls(str(sandbox.python or sys.base_prefix))

    @property
    def bin_dir(self) -> str:
        return f"{self.prefix.rstrip('/')}/bin"

    def dirs(self) -> list[str]:
        """What the sandbox binds for it: the prefix and, for a venv, the installation it
        was made from (its standard library, the interpreter its bin/python links to).

        Blocking (reads pyvenv.cfg): call in a thread.
        """
        real = os.path.realpath(self.prefix)
        # As named (PATH names it so) and resolved (where its own links lead).
        found = dict.fromkeys([os.path.abspath(self.prefix), real, *_venv_bases(real)])
        # "/" as a prefix would bind the whole host; its system directories are bound anyway.
        return [path for path in found if path != "/"]


def _venv_bases(prefix: str) -> list[str]:
    """For a venv, the installation it was made from: pyvenv.cfg's `home` (the directory of
    the base interpreter) and where its bin/python3 leads, each one level above `bin`."""
    try:
        config = Path(prefix, "pyvenv.cfg").read_text(errors="replace")
    except OSError:
        return []  # an installation, not a venv
    homes = [
        value.strip()
        for key, sep, value in (line.partition("=") for line in config.splitlines())
        if sep and key.strip() == "home"
    ]
    homes.append(os.path.dirname(os.path.realpath(Path(prefix, "bin", "python3"))))
    return [os.path.dirname(os.path.realpath(home)) for home in homes if home]


def honk_hidden(settings: Settings, install: HonkInstall | None = None) -> Hidden:
    """Everything of Honk's a sandbox must not show, wherever Honk is deployed."""
    install = install or HonkInstall.current()
    secrets = [settings.store.data_dir, settings.sandbox.checkout_dir, settings.package_cache_dir]
    secrets += [p for p in (settings.env_file, settings.github.private_key_path) if p is not None]
    around = [Path.cwd(), *install.site_packages]
    if install.venv is not None:
        around.append(install.venv)
    if install.source_root is not None:
        around.append(install.source_root)
    return Hidden(
        secrets=tuple(str(p) for p in secrets),
        code=(str(install.package),),
        around=tuple(str(p) for p in around),
    )


def host_mounts(
    ro_paths: Sequence[str], hidden: Hidden, python: SandboxPython
) -> tuple[list[str], list[str]]:
    """bwrap arguments for the host's read-only view: (system dirs, the rest).

    Blocking (it lists directories that hold hidden paths): call in a thread. The
    caller mounts /proc, /dev and /tmp between the two, so an ro_path under /tmp shows.
    """
    plan = _Plan(hidden)
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            plan.args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            plan.bind(path)
    system, plan.args = plan.args, []
    later = [*ETC_PATHS, *python.dirs(), *ro_paths]
    for path in sorted(dict.fromkeys(later), key=lambda p: p.count("/")):
        plan.bind(path)
    # Rebuilt directories are tmpfs mounts, made read-only once everything inside is bound.
    for path in plan.rebuilt:
        plan.args += ["--remount-ro", path]
    return system, plan.args


def hidden_in(root: Path, hidden: Hidden) -> list[Path]:
    """The secret paths that are inside `root` (a local checkout of Honk's own directory)."""
    real_root = os.path.realpath(root)
    found = {
        Path(path)
        for path in hidden.secrets
        if path != real_root and under(path, [real_root]) and os.path.lexists(path)
    }
    return sorted(found)


def under(path: str, parents: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


class _Plan:
    """Mounts in the order bwrap makes them; what is already covered is not bound again."""

    def __init__(self, hidden: Hidden) -> None:
        self.hidden = hidden
        self.args: list[str] = []
        self.roots: list[str] = []  # bound trees (hidden parts carved out of them)
        self.rebuilt: list[str] = []  # tmpfs mounts to make read-only at the end

    def bind(self, path: str) -> None:
        if not os.path.lexists(path):
            return
        spellings = {os.path.abspath(path), os.path.realpath(path)}
        if any(under(p, self.hidden.closed) for p in spellings):
            return  # a secret, or inside Honk's own install: never shown
        if self._covered(path):
            return
        # A directory of Honk's that holds this path is no reason to hide the path itself.
        around = [a for a in self.hidden.around if not any(under(p, [a]) for p in spellings)]
        self.args += _tree(path, [*self.hidden.closed, *around], self.rebuilt)
        self.roots.append(path)

    def _covered(self, path: str) -> bool:
        """Already shown by a bound tree (and not carved out of it)."""
        for root in self.roots:
            if under(path, [root]):
                carved = [h for h in self.hidden.every if under(h, [root])]
                return not under(path, carved)
        return False


def _tree(path: str, hidden: Sequence[str], rebuilt: list[str]) -> list[str]:
    """Mounts that show `path` read-only except the hidden paths inside it.

    A directory holding a hidden path becomes a tmpfs with its other entries bound into
    it; `rebuilt` collects those tmpfs mounts (and covers) to be made read-only last, once
    later binds inside them (a venv in Honk's directory) have their mount points.
    """
    inside = [h for h in hidden if under(h, [path])]
    if not inside:
        return ["--ro-bind", path, path]
    if path in inside or not os.path.isdir(path) or os.path.islink(path):
        return []
    try:
        with os.scandir(path) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return []
    if len(entries) > REBUILD_MAX_ENTRIES:
        return ["--ro-bind", path, path, *_covers(inside, rebuilt)]
    args = ["--tmpfs", path]
    rebuilt.append(path)
    for entry in entries:
        if entry.path in inside:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry.path), entry.path]
        elif entry.is_dir(follow_symlinks=False) and any(under(h, [entry.path]) for h in inside):
            args += _tree(entry.path, inside, rebuilt)
        else:
            args += ["--ro-bind", entry.path, entry.path]
    return args


def _covers(paths: Sequence[str], rebuilt: list[str]) -> list[str]:
    """Empty mounts over hidden paths: a tmpfs on a directory, /dev/null on anything else."""
    args: list[str] = []
    for path in sorted(paths, key=lambda p: p.count("/")):
        if not os.path.lexists(path) or os.path.islink(path):
            continue  # a link shows its target's name only; the target is hidden by path
        if os.path.isdir(path):
            args += ["--tmpfs", path]
            rebuilt.append(path)
        else:
            args += ["--ro-bind", "/dev/null", path]
    return args


def _spellings(paths: Iterable[str]) -> tuple[str, ...]:
    """Each path as given (made absolute) and with its symlinks resolved."""
    found: list[str] = []
    for path in paths:
        found += [os.path.abspath(path), os.path.realpath(path)]
    return tuple(dict.fromkeys(p for p in found if p != "/"))
