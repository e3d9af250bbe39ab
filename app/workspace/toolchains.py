"""The toolchains installed on Honk's host, found once per process, and what a sandbox is given
of the ones a run chose (app/workspace/toolchain_versions.py chooses).

Found where package managers and version managers put them: the system's (node, python3 in
/usr/bin, Go in /usr/lib/go-*, JDKs in /usr/lib/jvm), rustup's toolchains (each one's own
bin, never rustup's proxies, which may download), nvm, fnm, volta, /usr/local/go and ~/sdk/go*,
pyenv, SDKMAN, mise and asdf; and HONK_TOOLCHAIN_PATHS. A version is read from the toolchain's
files where it says it (Go's VERSION, a JDK's release, rustup's channel manifest, a manager's
directory name), else from its `--version`, with a short timeout.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from app.config import SandboxSettings
from app.workspace.mounts import under

# The program that says a toolchain is there (in its bin directory), per language.
EXECUTABLES = {
    "rust": "rustc",
    "node": "node",
    "go": "go",
    "java": "java",
    "python": "python3",
    "maven": "mvn",
    "gradle": "gradle",
}
VERSION_TIMEOUT = 5.0  # seconds for one `--version`
MAX_VERSION_FILE = 4 << 20  # rustup's channel manifest is about 1 MB
# Directories already on a sandbox's PATH, or bound whole: nothing to add for these.
_ON_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
_BOUND = ("/usr", "/bin", "/lib", "/lib64")
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.]+)?)")
_RUST_CHANNEL = re.compile(r"(stable|beta|nightly|\d+\.\d+(?:\.\d+)?)(-\d{4}-\d{2}-\d{2})?")
_RUSTC_IN_MANIFEST = re.compile(r'^\[pkg\.rustc\]\s*\nversion\s*=\s*"([^"]+)"', re.MULTILINE)
# Tool names of mise and asdf, as Honk's languages (rust from rustup only: theirs is rustup).
_MANAGED = {
    "node": "node",
    "nodejs": "node",
    "go": "go",
    "golang": "go",
    "python": "python",
    "java": "java",
    "maven": "maven",
    "gradle": "gradle",
}


@dataclass(frozen=True)
class Toolchain:
    """One installed toolchain: where it is and what a command needs to use it."""

    language: str  # one of config.TOOLCHAIN_LANGUAGES
    version: str  # "1.95.0", "20.11.1", "1.97.0-nightly"; "" when it could not be told
    source: str  # "rustup", "nvm", "fnm", "volta", "system", "go-sdk", "pyenv", ...
    root: str
    bin_dir: str
    env: tuple[tuple[str, str], ...] = ()
    names: tuple[str, ...] = ()  # what else it answers to: rustup's channel ("nightly")
    # The host's own default: what /usr/bin or /usr/local/bin runs, rustup's default.
    default: bool = False
    # Its configuration where a distribution keeps it: Debian's JDK and Maven link their
    # `conf` into /etc (/etc/java-17-openjdk, /etc/maven), which the sandbox binds only in part.
    etc: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.language} {self.version or '(version unknown)'} ({self.source}, {self.root})"


@dataclass(frozen=True)
class Toolchains:
    """What one sandbox is given of its run's toolchains: bin directories on PATH (after the
    repository's .venv/bin, before the sandbox's Python), roots bound read-only, variables."""

    bin_dirs: tuple[str, ...] = ()
    ro_paths: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, chosen: Iterable[Toolchain]) -> Toolchains:
        bins: list[str] = []
        roots: list[str] = []
        env: dict[str, str] = {}
        for toolchain in chosen:
            if toolchain.bin_dir not in _ON_PATH:
                bins.append(toolchain.bin_dir)
            if not under(toolchain.root, _BOUND):
                roots.append(toolchain.root)
            roots += toolchain.etc
            env.update(toolchain.env)
        return cls(tuple(dict.fromkeys(bins)), tuple(dict.fromkeys(roots)), tuple(env.items()))


def discover(
    home: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    extra: Sequence[tuple[str, str]] = (),
    system: Path = Path("/"),
) -> tuple[Toolchain, ...]:
    """Every toolchain found under `home` (the user's, by default), the system's (`system` is
    the root the system's directories are under: "/" but in tests), and `extra` roots
    ((language, path): HONK_TOOLCHAIN_PATHS). `env`: the managers' variables (RUSTUP_HOME...).

    Blocking (it lists directories and may run `--version`): call in a thread.
    """
    home = home if home is not None else Path.home()
    env = env or {}

    def place(name: str, *default: str) -> Path:
        return Path(env[name]) if env.get(name) else home.joinpath(*default)

    found: list[Toolchain] = []
    found += _rustup(place("RUSTUP_HOME", ".rustup"))
    found += _versions(place("NVM_DIR", ".nvm") / "versions" / "node", "node", "nvm")
    fnm = [Path(env["FNM_DIR"])] if env.get("FNM_DIR") else [
        home / ".local" / "share" / "fnm", home / ".fnm"
    ]  # fmt: skip
    for folder in fnm:
        found += _versions(folder / "node-versions", "node", "fnm", inner="installation")
    found += _versions(place("VOLTA_HOME", ".volta") / "tools" / "image" / "node", "node", "volta")
    found += _system(system)
    found += _versions(home / "sdk", "go", "go-sdk", prefix="go")
    found += _versions(place("PYENV_ROOT", ".pyenv") / "versions", "python", "pyenv")
    sdkman = place("SDKMAN_DIR", ".sdkman") / "candidates"
    for language in ("java", "maven", "gradle"):
        found += _versions(sdkman / language, language, "sdkman")
    found += _managed(place("MISE_DATA_DIR", ".local", "share", "mise") / "installs", "mise")
    found += _managed(place("ASDF_DATA_DIR", ".asdf") / "installs", "asdf")
    for language, path in extra:
        found += _one(Path(path), language, "setting")
    unique: dict[tuple[str, str], Toolchain] = {}
    for toolchain in found:  # the same directory through a link: the first name wins
        unique.setdefault((toolchain.language, os.path.realpath(toolchain.bin_dir)), toolchain)
    defaults = _host_defaults(system, place("RUSTUP_HOME", ".rustup"))
    return tuple(
        replace(t, default=True) if _program(t) in defaults else t for t in unique.values()
    )


def _program(toolchain: Toolchain) -> str:
    return os.path.realpath(Path(toolchain.bin_dir, EXECUTABLES[toolchain.language]))


def _host_defaults(system: Path, rustup_home: Path) -> set[str]:
    """The programs the host runs by default: what /usr/local/bin and /usr/bin lead to (Debian's
    alternatives), and rustup's default toolchain's rustc."""
    found = {
        os.path.realpath(system / where / program)
        for where in ("usr/local/bin", "usr/bin")
        for program in EXECUTABLES.values()
    }
    settings = _read(rustup_home / "settings.toml") or ""
    match = re.search(r'^default_toolchain\s*=\s*"([^"/]+)"', settings, re.MULTILINE)
    if match:
        found.add(os.path.realpath(rustup_home / "toolchains" / match.group(1) / "bin" / "rustc"))
    return found


_CACHE: dict[tuple[object, ...], tuple[Toolchain, ...]] = {}
_LOCK = threading.Lock()


def installed(sandbox: SandboxSettings, home: Path | None = None) -> tuple[Toolchain, ...]:
    """The host's toolchains for these settings, found once per process (blocking)."""
    key = (home, sandbox.toolchain_paths, sandbox.toolchain_env)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = discover(
                home,
                env=dict(sandbox.toolchain_env),
                extra=sandbox.toolchain_paths,
            )
        return _CACHE[key]


async def find_installed(sandbox: SandboxSettings) -> tuple[Toolchain, ...]:
    """`installed`, in a thread."""
    return await asyncio.to_thread(installed, sandbox)


def start_finding(sandbox: SandboxSettings) -> None:
    """Find the host's toolchains in the background now (at start-up), so the first run
    does not wait for it; a run that comes sooner waits for the same search."""
    threading.Thread(target=installed, args=(sandbox,), daemon=True).start()


# -- where each kind keeps them ----------------------------------------------------------


def _rustup(rustup_home: Path) -> list[Toolchain]:
    """rustup's toolchains, each by its own bin directory (its cargo and rustc, no proxy)."""
    found = []
    for folder in _children(rustup_home / "toolchains"):
        bin_dir = folder / "bin"
        if not _executable(bin_dir / "rustc"):
            continue
        match = _RUST_CHANNEL.match(folder.name)
        channel = match.group(0) if match else folder.name
        kind = match.group(1) if match else ""
        version = _rust_version(folder)
        names = tuple(dict.fromkeys(n for n in (channel, kind) if n and n != version))
        found.append(Toolchain("rust", version, "rustup", str(folder), str(bin_dir), names=names))
    return found


def _system(system: Path) -> list[Toolchain]:
    """The system's packages: Debian's Go under /usr/lib/go-*, JDKs under /usr/lib/jvm, Go in
    /usr/local/go, and node and python3 in /usr/bin."""
    found: list[Toolchain] = []
    usr = system / "usr"
    for folder in _children(usr / "lib", prefix="go-"):
        found += _one(folder, "go", "system")
    found += _one(usr / "local" / "go", "go", "system")
    for folder in _children(usr / "lib" / "jvm"):
        if not folder.is_symlink():  # java-1.17.0-openjdk-amd64 -> java-17-openjdk-amd64
            found += _one(folder, "java", "system")
    found += _one(usr / "share" / "maven", "maven", "system")
    for language in ("node", "python"):
        found += _one(usr, language, "system")
    return found


def _versions(
    folder: Path, language: str, source: str, *, prefix: str = "", inner: str = ""
) -> list[Toolchain]:
    """One toolchain per version directory (`v20.1.0`, `go1.22.0`, `17.0.9-tem`), links such
    as SDKMAN's `current` left out: they are another name of one listed already."""
    found: list[Toolchain] = []
    for child in _children(folder, prefix=prefix):
        if child.is_symlink():
            continue
        named = _version_in(child.name.removeprefix(prefix))
        found += _one(child / inner if inner else child, language, source, named)
    return found


def _managed(installs: Path, source: str) -> list[Toolchain]:
    """mise's and asdf's `installs/<tool>/<version>`."""
    found: list[Toolchain] = []
    for tool in _children(installs):
        language = _MANAGED.get(tool.name)
        if language is not None:
            found += _versions(tool, language, source)
    return found


def _one(root: Path, language: str, source: str, named: str = "") -> list[Toolchain]:
    """The toolchain at `root` (its program in root/bin, root/go/bin or root), if any."""
    program = EXECUTABLES[language]
    for bin_dir in (root / "bin", root / "go" / "bin", root):
        if _executable(bin_dir / program):
            break
    else:
        return []
    home = bin_dir.parent
    version = _file_version(language, home) or named or _run_version(bin_dir, language)
    env: tuple[tuple[str, str], ...] = ()
    if language == "go":  # never a download of another Go (go.mod's `toolchain`)
        env = (("GOROOT", str(home)), ("GOTOOLCHAIN", "local"))
    elif language == "java":
        env = (("JAVA_HOME", str(home)),)
    etc = _etc_links(home)
    return [Toolchain(language, version, source, str(home), str(bin_dir), env, etc=etc)]


def _etc_links(home: Path, depth: int = 2) -> tuple[str, ...]:
    """The /etc directories `home`'s links lead into, within `depth` levels (`conf` ->
    /etc/maven; conf/security/java.security -> /etc/java-17-openjdk/security/...)."""
    found: dict[str, None] = {}
    folders = [home]
    for _level in range(depth):
        inner: list[Path] = []
        for folder in folders:
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.is_symlink():
                    parts = Path(os.path.realpath(entry)).parts
                    if len(parts) > 2 and parts[1] == "etc":
                        found[f"/etc/{parts[2]}"] = None
                elif entry.is_dir():
                    inner.append(entry)
        folders = inner
    return tuple(found)


def _file_version(language: str, home: Path) -> str:
    """The version a toolchain's own files state: Go's VERSION, a JDK's release."""
    if language == "go":
        first = (_read(home / "VERSION") or "").partition("\n")[0]
        return _version_in(first.removeprefix("go")) if first.startswith("go") else ""
    if language == "java":
        for line in (_read(home / "release") or "").splitlines():
            if line.startswith("JAVA_VERSION="):
                return _version_in(line.partition("=")[2].strip('"'))
    return ""


def _rust_version(folder: Path) -> str:
    manifest = _read(folder / "lib" / "rustlib" / "multirust-channel-manifest.toml")
    match = _RUSTC_IN_MANIFEST.search(manifest or "")
    if match:
        return _version_in(match.group(1))
    return _run_version(folder / "bin", "rust")


def _run_version(bin_dir: Path, language: str) -> str:
    """What the toolchain's program says of its version (`go version`, `java -version`)."""
    program = str(bin_dir / EXECUTABLES[language])
    argv = {
        "go": [program, "version"],
        "java": [program, "-version"],
    }.get(language, [program, "--version"])
    path = os.pathsep.join([str(bin_dir), *_ON_PATH])
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            env={"PATH": path, "LANG": "C.UTF-8", "HOME": "/nonexistent"},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    text = (done.stdout or "") + (done.stderr or "")
    return _version_in(text.removeprefix("go version go"))


def _version_in(text: str) -> str:
    match = _VERSION.search(text)
    return match.group(1) if match else ""


def _children(folder: Path, *, prefix: str = "") -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [e for e in entries if e.name.startswith(prefix) and e.is_dir()]


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_VERSION_FILE).decode(errors="replace")
    except OSError:
        return None
