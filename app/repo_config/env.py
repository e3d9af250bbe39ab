"""What a repository's `env:` (or devcontainer's variables) may hold: plain variables only, no
secrets, nothing Honk sets or that changes how the sandbox works, bounded in number and size."""

from __future__ import annotations

import re

from app.log import TOKEN_SHAPES

# `env:` is for plain variables: a handful, short, each a word a shell takes as a name.
ENV_MAX_VARIABLES = 64

ENV_MAX_NAME = 128

ENV_MAX_VALUE = 4096

ENV_MAX_TOTAL = 32 * 1024  # names and values together

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Names that hold secrets by convention (case-insensitive): secrets never go to the agent, and
# a value that a repository writes in its own file is no secret anyway.
_SECRET_SUFFIXES = ("TOKEN", "_KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS", "CREDENTIAL")

_SECRET_WORDS = ("SECRET", "PASSWORD", "PRIVATE_KEY", "API_KEY", "ACCESS_KEY", "AUTH_TOKEN")

_SECRET_NAMES = frozenset({"KEY", "PASS", "PAT"})

# Names Honk sets for every sandboxed command, or will (the toolchains' homes): a repository's
# value would undo them. Extend this when the sandbox sets another.
HONK_SET_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "RUSTUP_HOME",
        "CARGO_HOME",
        "GOROOT",
        "JAVA_HOME",
        # The run's home and the package caches in it (workspace/run_home.py), kept there
        # so that what setup downloads is kept for the next run of the repository.
        "NPM_CONFIG_CACHE",
        "YARN_CACHE_FOLDER",
        "NPM_CONFIG_STORE_DIR",
        "GOPATH",
        "GOMODCACHE",
        "GOCACHE",
        "GOFLAGS",
        "PIP_CACHE_DIR",
        "UV_CACHE_DIR",
        "GRADLE_USER_HOME",
        "MAVEN_OPTS",
    }
)

# Names that change how the sandbox itself works: the dynamic loader's, the shell's start-up
# and prompt hooks (bash reads BASH_ENV before the sandbox's own limits are set), Python's
# home, where temporary files go (a capped tmpfs), and git's (the checkout's .git is Honk's).
_SANDBOX_ENV = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "PROMPT_COMMAND",
        "SHELLOPTS",
        "BASHOPTS",
        "BASH_XTRACEFD",
        "PS1",
        "PS2",
        "PS4",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "PYTHONHOME",
        "TMPDIR",
    }
)

_SANDBOX_PREFIXES = ("LD_", "DYLD_", "GIT_", "BASH_FUNC_", "HONK_")

# Names ending in PROXY that name a package mirror, not an HTTP proxy: Go's module proxy is
# fetched like any host, through the phase's proxy and its allowlist.
_MIRROR_NAMES = frozenset({"GOPROXY"})


def env_name_refusal(name: str) -> str | None:
    """Why `name` may not be a repository's variable (a sentence's end), or None if it may."""
    if not _ENV_NAME.fullmatch(name):
        return "is not a variable name (letters, digits and _, not starting with a digit)"
    if len(name) > ENV_MAX_NAME:
        return f"is longer than {ENV_MAX_NAME} characters"
    upper = name.upper()
    if (
        upper in _SECRET_NAMES
        or upper.endswith(_SECRET_SUFFIXES)
        or any(word in upper for word in _SECRET_WORDS)
    ):
        return (
            "names a secret (a token, key, password or credentials): secrets never go to the "
            "agent, and a value written in the repository is no secret"
        )
    if upper in HONK_SET_ENV:
        return "is set by Honk for every sandboxed command"
    if (
        upper in _SANDBOX_ENV
        or upper.startswith(_SANDBOX_PREFIXES)
        or (upper.endswith("PROXY") and upper not in _MIRROR_NAMES)
    ):
        return "changes how Honk's sandbox works (its shell, loader, proxy, git or temporary files)"
    return None


def env_value_refusal(value: str) -> str | None:
    """Why `value` may not be a repository variable's value, or None if it may."""
    if "\0" in value:
        return "holds a NUL character"
    if len(value) > ENV_MAX_VALUE:
        return f"is longer than {ENV_MAX_VALUE} characters"
    if _SECRET_VALUE.search(value):
        return "looks like a secret (a token's or key's shape): secrets never go to the agent"
    return None


_SECRET_VALUE = re.compile("|".join(f"(?:{shape})" for shape in TOKEN_SHAPES))
