"""The versions a repository declares (.nvmrc, rust-toolchain.toml, go.mod, .python-version,
.tool-versions, .java-version) and the choice among the toolchains Honk has: a declared
version it does not have is said plainly, and the run goes on with the default."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.config import TOOLCHAIN_LANGUAGES
from app.untrusted import code
from app.workspace.inside import PathOutsideWorkspace, resolve_inside
from app.workspace.toolchains import Toolchain, Toolchains

MAX_DECLARATION_BYTES = 64 * 1024
TOOL_VERSIONS = ".tool-versions"
# Each language's own files, in the order they are read; .tool-versions after them.
DECLARATION_FILES = {
    "node": (".nvmrc", ".node-version"),
    "rust": ("rust-toolchain.toml", "rust-toolchain"),
    "go": ("go.mod",),
    "python": (".python-version",),
    "java": (".java-version",),
}
# asdf's (and mise's) tool names in .tool-versions.
_TOOLS = {"nodejs": "node", "node": "node", "rust": "rust", "golang": "go", "go": "go",
          "python": "python", "java": "java"}  # fmt: skip
# Node's LTS lines by codename (`lts/iron` in .nvmrc): the major version.
NODE_LTS = {"argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12, "fermium": 14,
            "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24}  # fmt: skip
_NEWEST = frozenset({"latest", "node", "current", "stable"})
_PRERELEASE = frozenset({"nightly", "beta"})
_NUMBERS = re.compile(r"\d+(?:\.\d+)*")
_LANGUAGE_NAMES = {"rust": "Rust", "node": "Node.js", "go": "Go", "java": "Java",
                   "python": "Python", "maven": "Maven", "gradle": "Gradle"}  # fmt: skip


@dataclass(frozen=True)
class Declared:
    """One version a repository asks for: as written (`asked`), what it matches (`spec`)."""

    language: str
    asked: str
    file: str
    spec: str = ""
    minimum: bool = False  # go.mod's `go` line: this version or a later one

    def __post_init__(self) -> None:
        if not self.spec:
            object.__setattr__(self, "spec", self.asked)


@dataclass(frozen=True)
class Choice:
    """The run's toolchains, one per language Honk has, and what was said of the choice."""

    chosen: tuple[Toolchain, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def toolchains(self) -> Toolchains:
        return Toolchains.of(self.chosen)


# -- reading the declarations ------------------------------------------------------------


def read_declared(root: Path) -> tuple[Declared, ...]:
    """The versions the checkout at `root` declares, in its top directory: per language the
    first of its own files that names one, else .tool-versions. A file that links out of the
    checkout, is no regular file or is larger than MAX_DECLARATION_BYTES is not read.

    Blocking (it reads files): call in a thread."""
    tool_versions = _tool_versions(_read(root, TOOL_VERSIONS))
    found: list[Declared] = []
    for language, files in DECLARATION_FILES.items():
        own: list[Declared] = []
        for name in files:
            text = _read(root, name)
            if text is not None and (own := _parse(language, name, text)):
                break
        found += own or [d for d in tool_versions if d.language == language]
    return tuple(found)


def _read(root: Path, name: str) -> str | None:
    try:
        path = resolve_inside(root, name)
    except PathOutsideWorkspace:
        return None
    try:
        if not path.is_file() or path.stat().st_size > MAX_DECLARATION_BYTES:
            return None
        with path.open("rb") as handle:
            return handle.read(MAX_DECLARATION_BYTES).decode(errors="replace")
    except OSError:
        return None


def _parse(language: str, name: str, text: str) -> list[Declared]:
    if language == "rust":
        channel = _rust_channel(text)
        return [Declared("rust", channel, name)] if channel else []
    if language == "go":
        return _go_mod(text)
    line = _first_line(text)
    if not line:
        return []
    if language == "node":
        return [Declared("node", line, name, spec=line.removeprefix("v"))]
    if language == "java":
        return [Declared("java", line, name, spec=_numbers_from(line))]
    return [Declared(language, line, name)]


def _rust_channel(text: str) -> str:
    """rust-toolchain.toml's `[toolchain] channel`, or the legacy file's one line."""
    if "[toolchain]" in text:
        try:
            table = tomllib.loads(text).get("toolchain")
        except tomllib.TOMLDecodeError:
            return ""
        channel = table.get("channel") if isinstance(table, dict) else None
        return channel.strip() if isinstance(channel, str) else ""
    return _first_line(text)


def _go_mod(text: str) -> list[Declared]:
    """go.mod's `go` line (a minimum) and `toolchain` line (the Go it would rather have)."""
    found: list[Declared] = []
    for raw in text.splitlines():
        words = raw.partition("//")[0].split()
        if len(words) == 2 and words[0] == "toolchain" and words[1].startswith("go"):
            found.insert(0, Declared("go", words[1], "go.mod", spec=words[1].removeprefix("go")))
        elif len(words) == 2 and words[0] == "go":
            found.append(Declared("go", words[1], "go.mod", minimum=True))
    return found


def _tool_versions(text: str | None) -> list[Declared]:
    """asdf's .tool-versions: `tool version [fallback...]` per line; the first version."""
    found: list[Declared] = []
    for raw in (text or "").splitlines():
        words = raw.partition("#")[0].split()
        language = _TOOLS.get(words[0]) if len(words) >= 2 else None
        if language is None or words[1] == "system":
            continue
        spec = _numbers_from(words[1]) if language == "java" else words[1]
        found.append(Declared(language, words[1], TOOL_VERSIONS, spec=spec))
    return found


def _first_line(text: str) -> str:
    for raw in text.removeprefix("\ufeff").splitlines():
        line = raw.partition("#")[0].strip()
        if line:
            return line[:64]
    return ""


def _numbers_from(text: str) -> str:
    """`temurin-17.0.9+9` -> `17.0.9`: a vendor's name is not a version Honk can match."""
    match = _NUMBERS.search(text)
    return match.group(0) if match else text


# -- choosing ----------------------------------------------------------------------------


def choose(
    found: Sequence[Toolchain],
    declared: Iterable[Declared] = (),
    defaults: Mapping[str, str] | None = None,
) -> Choice:
    """Per language Honk has: what the repository declares, if Honk has it; else the
    default (`defaults`, HONK_TOOLCHAIN_DEFAULTS; else the host's own default, else the newest
    release; for Python none: the sandbox's own Python stays), with a note saying what was
    asked and what Honk has."""
    defaults = defaults or {}
    asked: dict[str, list[Declared]] = {}
    for item in declared:
        asked.setdefault(item.language, []).append(item)
    chosen: list[Toolchain] = []
    notes: list[str] = []
    for language in TOOLCHAIN_LANGUAGES:
        have = [t for t in found if t.language == language]
        if not have:
            if asked.get(language):
                first = asked[language][0]
                notes.append(f"{code(first.file)} asks for {_name(language)} {code(first.asked)}; "
                             f"this Honk has no {_name(language)} toolchain.")  # fmt: skip
            continue
        default = _default(language, have, defaults.get(language), notes)
        pick = _declared_pick(have, asked.get(language, []), default)
        if pick is None and asked.get(language):
            first = asked[language][0]
            goes_on = f" The run goes on with {default.version}." if default else ""
            notes.append(
                f"{code(first.file)} asks for {_name(language)} {code(first.asked)}; "
                f"this Honk has {_listed(have)}.{goes_on}"
            )
        if (use := pick or default) is not None:
            chosen.append(use)
    return Choice(tuple(chosen), tuple(notes))


def _default(
    language: str, have: list[Toolchain], pinned: str | None, notes: list[str]
) -> Toolchain | None:
    if pinned is not None:
        match = best(have, pinned)
        if match is not None:
            return match
        notes.append(f"HONK_TOOLCHAIN_DEFAULTS asks for {_name(language)} {code(pinned)}; "
                     f"this Honk has {_listed(have)}.")  # fmt: skip
    if language == "python":
        return None  # the sandbox's Python (HONK_SANDBOX_PYTHON) is the default
    return newest([t for t in have if t.default]) or newest(have)


def _declared_pick(
    have: list[Toolchain], asked: list[Declared], default: Toolchain | None
) -> Toolchain | None:
    """The first declaration Honk can honour (go.mod's toolchain, then its `go` minimum)."""
    for item in asked:
        if item.minimum:
            floor = _key(item.spec)[0]
            if default is not None and _key(default.version)[0] >= floor:
                return default
            enough = [t for t in have if _key(t.version)[0] >= floor]
            if enough:
                return newest(enough)
            continue
        match = best(have, item.spec)
        if match is not None:
            return match
    return None


def best(have: Sequence[Toolchain], spec: str) -> Toolchain | None:
    """The toolchain `spec` names: a channel or alias (`stable`, `nightly`, `lts/*`), a
    version or its prefix (`1.78` matches 1.78.2); the newest of several, releases first."""
    spec = spec.strip().removeprefix("v")
    lowered = spec.lower()
    if lowered in _NEWEST and not any(lowered in t.names for t in have):
        return newest(have)
    if lowered.startswith("lts/"):
        line = lowered.removeprefix("lts/")
        lts = [t for t in have if _lts(t, line)]
        return newest(lts) if lts else None
    named = [t for t in have if lowered in t.names]
    if named:
        return newest(named, releases_first=lowered not in _PRERELEASE)
    matching = [t for t in have if t.version == spec or _prefix(spec, t.version)]
    return newest(matching) if matching else None


def newest(have: Sequence[Toolchain], *, releases_first: bool = True) -> Toolchain | None:
    """The highest version, a release before a nightly or beta of a higher one."""
    if not have:
        return None
    return max(have, key=lambda t: (not _key(t.version)[1], _key(t.version)) if releases_first
               else _key(t.version))  # fmt: skip


def _lts(toolchain: Toolchain, line: str) -> bool:
    major = _key(toolchain.version)[0][:1]
    if not major:
        return False
    if line == "*":
        return major[0] % 2 == 0 and major[0] >= 4
    return NODE_LTS.get(line) == major[0]


def _prefix(spec: str, version: str) -> bool:
    if not re.fullmatch(r"\d+(\.\d+)*", spec):
        return False
    wanted = tuple(int(n) for n in spec.split("."))
    numbers, _pre = _key(version)
    return numbers[: len(wanted)] == wanted


def _key(version: str) -> tuple[tuple[int, ...], bool]:
    """(its numbers, whether it is a prerelease): `1.97.0-nightly` -> ((1, 97, 0), True)."""
    text = version.removeprefix("v").removeprefix("go")
    match = _NUMBERS.match(text)
    numbers = tuple(int(n) for n in match.group(0).split(".")) if match else ()
    rest = text[match.end() :] if match else text
    return numbers, bool(rest.strip())


def _listed(have: Sequence[Toolchain]) -> str:
    versions = sorted({t.version or "a version it cannot tell" for t in have},
                      key=lambda v: _key(v), reverse=True)  # fmt: skip
    if len(versions) == 1:
        return versions[0]
    return ", ".join(versions[:-1]) + " and " + versions[-1]


def _name(language: str) -> str:
    return _LANGUAGE_NAMES.get(language, language)
