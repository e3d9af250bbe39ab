"""A repository's devcontainer.json as Honk honours it: found in the base commit where the
spec looks, read as JSON with comments (jsonc.py), its variables vetted as `env:`'s are, its
creation commands (`${...}` substituted; Honk's host gives nothing), and what Honk does not do
of it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from app.repo_config import env_name_refusal, env_value_refusal
from app.runs.jsonc import JsoncError, read_jsonc
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


class DevcontainerError(ValueError):
    """The devcontainer.json Honk would use cannot be read; the message says where and why."""


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
