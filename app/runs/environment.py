"""The repository's own environment for a run: `env:` and `setup:` of `.github/honk.yml`, or,
where the file names no `setup:`, its devcontainer.json (variables and creation commands),
with a note of what Honk does not do of it.

devcontainer.json is JSON with comments (JSONC): `read_jsonc` strips `//` and `/* */`
comments and trailing commas, leaving strings alone and every character where it was, so
the standard JSON parser reads the rest and its errors name the file's own line and column.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from app.repo_config import (
    CONFIG_PATH,
    RepoConfig,
    env_name_refusal,
    env_value_refusal,
    merge_env,
)
from app.untrusted import code
from app.workspace.checkout import Checkout

# Where a devcontainer.json may be, in the spec's order; then the first of
# `.devcontainer/<folder>/devcontainer.json` by the folder's name.
DEVCONTAINER_FILES = (".devcontainer/devcontainer.json", ".devcontainer.json")
DEVCONTAINER_FOLDER = ".devcontainer"
MAX_DEVCONTAINER_BYTES = 256 * 1024
# The creation commands Honk runs as setup, in the spec's order.
LIFECYCLE = ("onCreateCommand", "updateContentCommand", "postCreateCommand")
MAX_COMMANDS = 32
# What says nothing about the environment a command runs in: never listed as not done.
_INFORMATIONAL = frozenset(
    {
        "name",
        "$schema",
        "customizations",
        "waitFor",
        "shutdownAction",
        "overrideCommand",
        "userEnvProbe",
        "updateRemoteUserUID",
        "portsAttributes",
        "otherPortsAttributes",
    }
)
_HONOURED = frozenset({"containerEnv", "remoteEnv", *LIFECYCLE})
_SUBSTITUTION = re.compile(r"\$\{([^{}]*)\}")
_WORKSPACE_FOLDERS = ("containerWorkspaceFolder", "localWorkspaceFolder")
_WORKSPACE_BASENAMES = ("containerWorkspaceFolderBasename", "localWorkspaceFolderBasename")
SHOWN_NAMES = 12  # names listed in one note before "and N more"


class DevcontainerError(ValueError):
    """The devcontainer.json Honk would use cannot be read; the message says where and why."""


class JsoncError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column = line, column


@dataclass(frozen=True)
class SetupCommand:
    """One setup command: the shell line the sandbox runs and where it came from."""

    line: str
    origin: str = "setup"  # "setup", "postCreateCommand", "postCreateCommand (install)"


@dataclass(frozen=True)
class Devcontainer:
    """What Honk takes of one devcontainer.json."""

    path: str
    env: tuple[tuple[str, str], ...] = ()
    commands: tuple[SetupCommand, ...] = ()
    not_done: tuple[str, ...] = ()  # its properties Honk does not honour, in the file's order
    dropped: tuple[tuple[str, str], ...] = ()  # variables left out: (name, why)
    substituted: tuple[str, ...] = ()  # `${localEnv:...}` in commands, read as empty/default
    parallel: tuple[str, ...] = ()  # lifecycle properties whose named commands ran in turn


@dataclass(frozen=True)
class RunEnvironment:
    """The run's variables and setup commands, and what was said about where they came from."""

    env: tuple[tuple[str, str], ...] = ()
    commands: tuple[SetupCommand, ...] = ()
    devcontainer: Devcontainer | None = None
    # For the run page (and, `comment`, the tracking comment): what Honk did and did not do.
    notes: tuple[str, ...] = field(default=())
    comment: tuple[str, ...] = field(default=())


# -- JSON with comments ----------------------------------------------------------------------


def read_jsonc(text: str) -> Any:
    """`text` as JSON with comments and trailing commas (devcontainer.json's format).

    JsoncError names the line and column (of `text` itself) of the first problem.
    """
    stripped = _without_trailing_commas(_without_comments(text.removeprefix("\ufeff")))
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise JsoncError(exc.msg, exc.lineno, exc.colno) from None


def _without_comments(text: str) -> str:
    """Comments replaced by spaces (their line breaks kept): positions stay the file's."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                line, column = _position(text, i)
                raise JsoncError("a /* comment is never closed", line, column)
            out.append(re.sub(r"[^\n]", " ", text[i : end + 2]))
            i = end + 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _without_trailing_commas(text: str) -> str:
    """A comma followed (past blanks) by `]` or `}` becomes a space (comments are gone)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
            continue
        if char == ",":
            after = i + 1
            while after < n and text[after] in " \t\r\n":
                after += 1
            if after < n and text[after] in "]}":
                char = " "
        out.append(char)
        i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Just past the string opened at `start` (or the end of the line: JSON reports it)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        elif text[i] == "\n":
            return i
        else:
            i += 1
    return len(text)


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


# -- devcontainer.json -----------------------------------------------------------------------


def pick_devcontainer(paths: list[str]) -> str | None:
    """The devcontainer.json a tool would open first among the repository's `paths`."""
    present = set(paths)
    for path in DEVCONTAINER_FILES:
        if path in present:
            return path
    nested = sorted(
        path
        for path in present
        if path.startswith(DEVCONTAINER_FOLDER + "/")
        and path.endswith("/devcontainer.json")
        and path.count("/") == 2
    )
    return nested[0] if nested else None


async def find_devcontainer(checkout: Checkout) -> str | None:
    """The base commit's devcontainer.json path, if it has one (read with git)."""
    return pick_devcontainer(await checkout.base_paths(DEVCONTAINER_FOLDER, DEVCONTAINER_FILES[1]))


async def load_devcontainer(checkout: Checkout, workspace: str) -> Devcontainer | None:
    """The base commit's devcontainer.json as Honk honours it, or None when there is none.

    `workspace` is the checkout as commands see it (`${containerWorkspaceFolder}`).
    Raises DevcontainerError when the file is too large or not JSON with comments.
    """
    path = await find_devcontainer(checkout)
    if path is None:
        return None
    found = await checkout.base_files([path], max_bytes=MAX_DEVCONTAINER_BYTES)
    if path not in found:
        raise DevcontainerError(
            f"{path} is larger than {MAX_DEVCONTAINER_BYTES // 1024} kB or not a regular file"
        )
    return parse_devcontainer(found[path], path, workspace)


def parse_devcontainer(text: str, path: str, workspace: str) -> Devcontainer:
    """What Honk takes of one devcontainer.json's text (see the module's docstring)."""
    try:
        data = read_jsonc(text)
    except JsoncError as exc:
        raise DevcontainerError(f"{path} is not valid JSON with comments: {exc}") from None
    if not isinstance(data, dict):
        raise DevcontainerError(f"{path} must hold an object, not {type(data).__name__}")
    substitute = _Substitution(workspace)
    env: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    # remoteEnv is applied over containerEnv, as the tools do.
    for key in ("containerEnv", "remoteEnv"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict):
            dropped.append((key, "not an object"))
            continue
        for name, value in section.items():
            if value is None:  # remoteEnv's way to unset: nothing to set here
                env.pop(name, None)
                continue
            why = _variable_refusal(name, value, substitute)
            if why is not None:
                dropped.append((str(name), why))
                env.pop(name, None)
                continue
            env[name] = substitute.in_value(str(value))
    commands: list[SetupCommand] = []
    parallel: list[str] = []
    for key in LIFECYCLE:
        found = _lifecycle(data.get(key), key, path)
        if len(found) > 1 and isinstance(data.get(key), dict):
            parallel.append(key)
        commands += [SetupCommand(substitute.in_command(c.line), c.origin) for c in found]
    if len(commands) > MAX_COMMANDS:
        raise DevcontainerError(f"{path} names {len(commands)} commands; at most {MAX_COMMANDS}")
    not_done = [str(key) for key in data if key not in _HONOURED and key not in _INFORMATIONAL]
    return Devcontainer(
        path=path,
        env=tuple(env.items()),
        commands=tuple(commands),
        not_done=tuple(not_done),
        dropped=tuple(dropped),
        substituted=tuple(substitute.local_env),
        parallel=tuple(parallel),
    )


def _variable_refusal(name: Any, value: Any, substitute: _Substitution) -> str | None:
    if not isinstance(name, str):
        return "not a variable name"
    if (why := env_name_refusal(name)) is not None:
        return f"it {why}"
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return "its value is not a string"
    text = str(value)
    if (why := env_value_refusal(text)) is not None:
        return f"its value {why}"
    if (unknown := substitute.unresolved(text)) is not None:
        return f"its value reads {unknown}, which Honk does not give"
    return None


def _lifecycle(value: Any, key: str, path: str) -> list[SetupCommand]:
    """One lifecycle property's commands: a string (a shell line), an array (one command and
    its arguments, no shell) or an object of named commands (the spec runs those at once;
    Honk runs them in turn, in the file's order)."""
    if value is None or value == "" or value == [] or value == {}:
        return []
    if isinstance(value, str | list):
        return [SetupCommand(_command_line(value, key, path), key)]
    if isinstance(value, dict):
        return [
            SetupCommand(_command_line(item, f"{key}.{name}", path), f"{key} ({name})")
            for name, item in value.items()
            if item not in (None, "", [])
        ]
    raise DevcontainerError(f"{path}: {key} must be a string, an array or an object")


def _command_line(value: Any, key: str, path: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return shlex.join(value)  # the exec form: these arguments exactly, through no shell
    raise DevcontainerError(f"{path}: {key} must be a command (a string or an array of strings)")


class _Substitution:
    """devcontainer.json's `${...}`: the workspace folder is the checkout as commands see it;
    `${containerEnv:X}` in a command is the sandbox's own `$X`; Honk's host environment is
    never given (`${localEnv:X}` in a command reads as its default or empty)."""

    def __init__(self, workspace: str) -> None:
        self.workspace = workspace
        self.basename = workspace.rstrip("/").rsplit("/", 1)[-1]
        self.local_env: list[str] = []

    def _known(self, inner: str) -> str | None:
        if inner in _WORKSPACE_FOLDERS:
            return self.workspace
        if inner in _WORKSPACE_BASENAMES:
            return self.basename
        return None

    def unresolved(self, text: str) -> str | None:
        """The first `${...}` in a variable's value that Honk cannot resolve."""
        for match in _SUBSTITUTION.finditer(text):
            if self._known(match.group(1)) is None:
                return match.group(0)
        return None

    def in_value(self, text: str) -> str:
        return _SUBSTITUTION.sub(lambda m: self._known(m.group(1)) or m.group(0), text)

    def in_command(self, line: str) -> str:
        def one(match: re.Match[str]) -> str:
            inner = match.group(1)
            known = self._known(inner)
            if known is not None:
                return shlex.quote(known)
            kind, _, rest = inner.partition(":")
            name, _, default = rest.partition(":")
            if kind == "containerEnv" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                return "${" + name + "}"
            if kind == "localEnv":
                self.local_env.append(match.group(0))
                return shlex.quote(default) if default else ""
            return match.group(0)  # the shell's own `${...}`

        return _SUBSTITUTION.sub(one, line)


# -- the run's environment -------------------------------------------------------------------


def plan_environment(
    config: RepoConfig, devcontainer: Devcontainer | None, *, unused: str | None = None
) -> RunEnvironment:
    """`env:` and `setup:` of `config`, or `devcontainer`'s variables (under `env:`, which wins
    name by name) and commands when the file names no `setup:`. `unused` is a devcontainer.json
    that was not read because `setup:` is there."""
    own = tuple(SetupCommand(line) for line in config.setup)
    if devcontainer is None:
        notes: tuple[str, ...] = ()
        if unused is not None:
            notes = (
                f"{code(unused)} was not used: {code(CONFIG_PATH)} names `setup:`, "
                "which wins over a devcontainer.json.",
            )
        return RunEnvironment(env=config.env, commands=own, notes=notes)
    said = describe_devcontainer(devcontainer)
    return RunEnvironment(
        env=merge_env(devcontainer.env, config.env),
        commands=devcontainer.commands,
        devcontainer=devcontainer,
        notes=said,
        comment=said,
    )


def describe_devcontainer(found: Devcontainer) -> tuple[str, ...]:
    """What Honk did with a devcontainer.json and what it did not: Markdown lines, every
    name from the file as inline code (the file is the repository's, not Honk's)."""
    used: list[str] = []
    if found.env:
        used.append(f"{len(found.env)} variable{'s' if len(found.env) != 1 else ''}")
    kinds = list(dict.fromkeys(c.origin.split(" ", 1)[0] for c in found.commands))
    if kinds:
        used.append(", ".join(code(k) for k in kinds) + " as setup, in that order")
    lines = [
        f"Honk set up this run from {code(found.path)}: "
        + ("; ".join(used) if used else "nothing in it applies")
        + "."
    ]
    if found.parallel:
        lines.append(
            "Named commands of "
            + ", ".join(code(k) for k in found.parallel)
            + " ran one after another (the spec runs them at once)."
        )
    if found.not_done:
        lines.append(
            "Not done (Honk runs the repository in its own sandbox, not in a container): "
            + _names(found.not_done)
            + "."
        )
    if found.dropped:
        left = [f"{code(_short(name))} ({why})" for name, why in found.dropped[:SHOWN_NAMES]]
        more = len(found.dropped) - SHOWN_NAMES
        lines.append(
            "Variables left out: "
            + "; ".join(left)
            + (f"; and {more} more" if more > 0 else "")
            + "."
        )
    if found.substituted:
        lines.append(
            "Honk gives no variable of its own host: "
            + _names(list(dict.fromkeys(found.substituted)))
            + " read as empty (or the default written)."
        )
    return tuple(lines)


def _short(name: str, limit: int = 60) -> str:
    """A name from the file, cut before it is made a code span (never through one)."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _names(items: list[str] | tuple[str, ...]) -> str:
    shown = ", ".join(code(_short(item)) for item in items[:SHOWN_NAMES])
    more = len(items) - SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown
