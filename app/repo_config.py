"""Per-repository settings: `.github/honk.yml` over the org-wide default in the org's `.github`."""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Protocol

import gidgethub
import yaml

from app.config import AgentSettings, NetworkSettings, ReviewSettings
from app.log import TOKEN_SHAPES
from app.network_policy import (
    NetworkSettingError,
    Rule,
    compile_rules,
    parse_items,
    setup_default,
)

CONFIG_PATH = ".github/honk.yml"
ORG_DEFAULTS_REPO = ".github"  # Probot's convention: the org's `.github` repository

SETTINGS = (
    "verify",
    "setup",
    "setup_network",
    "network",
    "model",
    "limits",
    "slack_channel",
    "label",
    "paths",
    "review",
    "merge",
    "env",
)
_LIMITS = {"turns": "max_turns", "minutes": "max_minutes", "ci_repair_rounds": "ci_repair_rounds"}
# `review:` in the file -> RepoConfig's fields.
_REVIEW = {
    "model": "review_model",
    "model_judge": "model_judge",
    "on_veto": "on_veto",
    "allow": "review_allow",
    "checks": "review_checks",
    "outcome": "review_outcome",
    "tests": "review_test_commands",  # and review_test_files
}
_REVIEW_TESTS = ("command", "commands", "files")


class OnVeto(StrEnum):
    """What a vetoed change becomes (`review: on_veto:`)."""

    DRAFT = "draft"  # a draft PR, the default
    COMMENT = "comment"  # no PR: a comment on the issue says why


MERGE_METHODS = ("squash", "merge", "rebase")  # GitHub's merge_method values
LABEL_MAX = 50  # GitHub's limit on a label's name

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


class RepoConfigError(ValueError):
    """The file is not valid; the message says where and why (shown on the issue)."""


@dataclass(frozen=True)
class RepoConfig:
    verify: str | None = None  # the check command, run in the sandbox after the agent
    setup: tuple[str, ...] = ()  # commands before the agent, over the base branch's files
    # What setup may reach through Honk's proxy (presets, hosts); None: the registries preset.
    setup_network: tuple[str, ...] | None = None
    network: tuple[str, ...] = ()  # what the agent may reach; empty: nothing (`off`)
    model: str | None = None
    max_turns: int | None = None
    max_minutes: float | None = None
    ci_repair_rounds: int | None = None
    slack_channel: str | None = None
    label: str | None = None
    paths: tuple[str, ...] = ()  # globs (CODEOWNERS' reading) Honk may change; empty: anything
    review_model: str | None = None
    model_judge: bool | None = None  # the model judge on or off; None: the operator's default
    on_veto: OnVeto | None = None
    review_allow: tuple[str, ...] = ()  # globs of files the repository expects changes to
    review_checks: bool | None = None  # False: checks off (only if the operator allows it)
    # The outcome checks (app/review): off only where the operator allows it; the test
    # commands they run and extra test infrastructure files, when Honk's defaults do not fit.
    review_outcome: bool | None = None
    review_test_commands: tuple[str, ...] = ()
    review_test_files: tuple[str, ...] = ()
    merge: str | None = None  # how Merge in Slack merges: squash, merge or rebase
    # Plain variables for setup, the agent's commands, `verify:` and the review's test runs.
    env: tuple[tuple[str, str], ...] = ()
    source: str = "defaults"  # where it came from, for messages
    # Fields the file wrote, even as empty (`network: []` clears an org-wide default).
    fields_set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def path_allowed(self, path: str) -> bool:
        """Whether `paths:` lets Honk change `path` (a path inside the repository)."""
        return not self.paths or globs_match(self.paths, path)

    def merged_over(self, base: RepoConfig) -> RepoConfig:
        """This file's values on top of `base` (the org-wide default)."""
        changes = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("source", "fields_set")
            and (
                f.name in self.fields_set
                if self.fields_set
                else getattr(self, f.name) not in (None, ())
            )
        }
        if "env" in changes:  # variable by variable: this file's value wins over the default
            changes["env"] = merge_env(base.env, self.env)
        return replace(
            base, **changes, source=self.source, fields_set=base.fields_set | self.fields_set
        )


def merge_env(
    under: tuple[tuple[str, str], ...], over: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """`over`'s variables on top of `under`'s, each name once (in the order first seen)."""
    merged = dict(under)
    merged.update(over)
    return tuple(merged.items())


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


def globs_match(globs: tuple[str, ...], path: str) -> bool:
    """Whether `path` (a file's path in the repository) matches `globs` as `paths:` and
    `review.allow` read them: each glob read as CODEOWNERS reads it (see `path_glob`),
    `!glob` taking paths back out, the last matching glob deciding."""
    decided = False
    for negated, pattern in _compiled_globs(tuple(globs)):
        if pattern.fullmatch(path):
            decided = not negated
    return decided


@functools.lru_cache(maxsize=256)
def _compiled_globs(globs: tuple[str, ...]) -> tuple[tuple[bool, re.Pattern[str]], ...]:
    return tuple((glob.startswith("!"), path_glob(glob.removeprefix("!"))) for glob in globs)


def path_glob(glob: str) -> re.Pattern[str]:
    """One glob as a regular expression over a file's path, in CODEOWNERS' reading (GitHub's
    own convention for rules about paths), since `paths:` restricts what may change:

    - `*` and `?` stay inside one path segment, `[abc]` is one character of a class;
    - `**` as a whole segment crosses segments: `**/x` is x at any depth, `a/**/x` is x
      anywhere below a, `a/**` everything below a;
    - a glob with a `/` at its start or middle is anchored at the repository's root
      (`/calc.py` the top-level file, `docs/*` docs/ at the top); one without (`*.py`,
      `Makefile`, `build/`) matches at any depth;
    - a trailing `/` names a directory, everything below it (`docs/`);
    - a last segment without wildcards is a file or a directory, everything below it then
      (`src/app`, `**/logs`);
    - a last segment with a wildcard matches files at that level only: `docs/*` is the files
      directly in docs/, never docs/_ext/hook.py because `*` matched the directory `_ext`.
      gitignore's reading (a pattern matching a directory matches all below it) would widen a
      restriction through any directory a wildcard happens to match; CODEOWNERS already reads
      `docs/*` this way, and here `*.py` or `docs/build*` do not reach through a directory so
      named either.

    ValueError for what is no glob (empty, or a lone `/`)."""
    body = glob[1:] if glob.startswith("/") else glob
    directory = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        raise ValueError("an empty pattern")
    anchored = glob.startswith("/") or "/" in body
    segments = body.split("/")
    regex = "" if anchored else "(?:.*/)?"
    for index, segment in enumerate(segments):
        at_end = index == len(segments) - 1
        if segment == "**":
            regex += ".+" if at_end else "(?:.*/)?"
            continue
        regex += _segment(segment) + ("" if at_end else "/")
    final = segments[-1]
    if directory and final != "**":
        regex += "/.+"  # everything below the directory, not a file of that name
    elif not directory and final != "**" and not _has_wildcard(final):
        regex += "(?:/.+)?"  # the file, or everything below the directory
    return re.compile(regex, re.DOTALL)


def _segment(segment: str) -> str:
    """One path segment's glob as a regular expression that never crosses a `/`."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "\\" and i + 1 < len(segment):
            out.append(re.escape(segment[i + 1]))
            i += 2
            continue
        if char == "*":
            while i + 1 < len(segment) and segment[i + 1] == "*":
                i += 1  # `**` inside a segment is `*` (gitignore's rule)
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := _class_end(segment, i)) is not None:
            inner = segment[i + 1 : end]
            negate = inner[:1] in ("!", "^")
            out.append(f"(?!/)[{'^' if negate else ''}{_class(inner[1:] if negate else inner)}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _class(inner: str) -> str:
    """A class's characters and ranges (`a-z`), each character escaped for `re`."""
    out: list[str] = []
    i = 0
    while i < len(inner):
        if i + 2 < len(inner) and inner[i + 1] == "-":
            out.append(f"{re.escape(inner[i])}-{re.escape(inner[i + 2])}")
            i += 3
        else:
            out.append(re.escape(inner[i]))
            i += 1
    return "".join(out)


def _class_end(segment: str, start: int) -> int | None:
    """Where the character class opened at `start` closes (its `]`), or None: a literal `[`."""
    i = start + 1
    if i < len(segment) and segment[i] in ("!", "^"):
        i += 1
    if i < len(segment) and segment[i] == "]":
        i += 1  # a `]` first in the class is one of its characters
    end = segment.find("]", i)
    return end if end != -1 else None


def _has_wildcard(segment: str) -> bool:
    i = 0
    while i < len(segment):
        if segment[i] == "\\":
            i += 2
            continue
        if segment[i] in "*?" or (segment[i] == "[" and _class_end(segment, i) is not None):
            return True
        i += 1
    return False


def parse_config(text: str, source: str = CONFIG_PATH) -> RepoConfig:
    """Parse one honk.yml; RepoConfigError names the file and the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise RepoConfigError(
            f"{source} is not valid YAML{where}" + (f": {problem}" if problem else "")
        ) from None
    if data is None:
        return RepoConfig(source=source)
    if not isinstance(data, dict):
        raise RepoConfigError(f"{source} must be a mapping of settings, not {_kind(data)}")
    unknown = sorted(str(k) for k in set(data) - set(SETTINGS))
    if unknown:
        raise RepoConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}{_hint(unknown)}")
    values: dict[str, Any] = {}
    if data.get("verify") is not None:
        values["verify"] = _command(data["verify"], "verify", source)
    for key in ("model", "slack_channel", "label"):
        if data.get(key) is not None:
            values[key] = _string(data[key], key, source)
    if data.get("merge") is not None:
        values["merge"] = _merge_method(data["merge"], source)
    for key in ("setup", "paths"):
        if key in data:
            values[key] = _strings(data[key], key, source)
    for key in ("network", "setup_network"):
        if key in data:
            values[key] = _network(data[key], key, source)
    values.update(_review(data.get("review"), source))
    if data.get("env") is not None:
        values["env"] = parse_env(data["env"], source)
    _check_items(values, source)
    values.update(_limits(data.get("limits"), source))
    # `limits:` and `review:` are one setting each in the file but several fields here.
    nested = {*_LIMITS.values(), *_REVIEW.values(), "review_test_files"}
    written = {k for k in data if k not in ("limits", "review")} | {
        k for k in values if k in nested
    }
    return RepoConfig(**values, source=source, fields_set=frozenset(written))


def _limits(limits: Any, source: str) -> dict[str, Any]:
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise RepoConfigError(
            f"{source}: limits must be a mapping (turns, minutes, "
            f"ci_repair_rounds), not {_kind(limits)}"
        )
    values: dict[str, Any] = {}
    for key, value in limits.items():
        if key not in _LIMITS:
            raise RepoConfigError(
                f"{source}: unknown limit {key!r}{_hint([str(key)], list(_LIMITS))}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RepoConfigError(f"{source}: limits.{key} must be a number")
        if key == "minutes":
            if value <= 0:
                raise RepoConfigError(f"{source}: limits.minutes must be more than 0")
            values["max_minutes"] = float(value)
            continue
        if value != int(value) or value < (1 if key == "turns" else 0):
            least = "a whole number of at least 1" if key == "turns" else "a whole number >= 0"
            raise RepoConfigError(f"{source}: limits.{key} must be {least}")
        values[_LIMITS[key]] = int(value)
    return values


def _network(value: Any, key: str, source: str) -> tuple[str, ...]:
    """`off`, a preset name, or a list of hosts and presets."""
    if value is False or value is None:  # YAML reads a bare `off` as false
        return ()
    if value is True:
        raise RepoConfigError(f"{source}: {key} is `off`, a preset, or a list of hosts")
    if isinstance(value, list):
        value = ["off" if item is False else item for item in value]
    try:
        return parse_items(_strings(value, key, source), f"{source}: {key}")
    except NetworkSettingError as exc:
        raise RepoConfigError(str(exc)) from None


def _review(review: Any, source: str) -> dict[str, Any]:
    if review is None:
        return {}
    if not isinstance(review, dict):
        raise RepoConfigError(
            f"{source}: review must be a mapping ({', '.join(_REVIEW)}), not {_kind(review)}"
        )
    values: dict[str, Any] = {}
    for key, value in review.items():
        if key not in _REVIEW:
            raise RepoConfigError(
                f"{source}: unknown review setting {key!r}{_hint([str(key)], list(_REVIEW))}"
            )
        if value is None:
            continue
        if key == "model":
            values["review_model"] = _string(value, "review.model", source)
        elif key in ("model_judge", "checks", "outcome"):
            values[_REVIEW[key]] = _on_off(value, f"review.{key}", source)
        elif key == "tests":
            values.update(_review_tests(value, source))
        elif key == "on_veto":
            if value not in tuple(OnVeto):
                raise RepoConfigError(f"{source}: review.on_veto must be draft or comment")
            values["on_veto"] = OnVeto(value)
        else:
            values["review_allow"] = _strings(value, "review.allow", source)
    return values


def parse_env(value: Any, source: str, setting: str = "env") -> tuple[tuple[str, str], ...]:
    """`env:`: a mapping of names to plain values (strings; numbers are written as strings).

    Every refusal names the variable and why (RepoConfigError), like any other error in the
    file: a run without a variable the repository asked for would fail in confusing ways.
    """
    if not isinstance(value, dict):
        raise RepoConfigError(
            f"{source}: {setting} must be a mapping of variable names to values, not {_kind(value)}"
        )
    if len(value) > ENV_MAX_VARIABLES:
        raise RepoConfigError(
            f"{source}: {setting} holds {len(value)} variables; at most {ENV_MAX_VARIABLES}"
        )
    pairs: list[tuple[str, str]] = []
    for name, raw in value.items():
        shown = str(name)[:ENV_MAX_NAME]
        if not isinstance(name, str):
            raise RepoConfigError(f"{source}: {setting}: {shown!r} is not a variable name")
        if (why := env_name_refusal(name)) is not None:
            raise RepoConfigError(f"{source}: {setting}: {name} is refused: it {why}")
        if isinstance(raw, bool) or raw is None or not isinstance(raw, str | int | float):
            what = (
                "true or false" if isinstance(raw, bool) else "empty" if raw is None else _kind(raw)
            )
            raise RepoConfigError(
                f"{source}: {setting}.{name} must be a string (quote it), not {what}"
            )
        text = str(raw)
        if (why := env_value_refusal(text)) is not None:
            raise RepoConfigError(f"{source}: {setting}.{name} is refused: its value {why}")
        pairs.append((name, text))
    total = sum(len(name) + len(text) for name, text in pairs)
    if total > ENV_MAX_TOTAL:
        raise RepoConfigError(
            f"{source}: {setting} holds {total:,} characters; at most {ENV_MAX_TOTAL:,}"
        )
    return tuple(pairs)


def _review_tests(value: Any, source: str) -> dict[str, Any]:
    """`review: tests:`: a command, a list of them, or {commands (or command), files}."""
    if not isinstance(value, dict):
        return {"review_test_commands": _strings(value, "review.tests", source)}
    unknown = sorted(str(k) for k in set(value) - set(_REVIEW_TESTS))
    if unknown:
        raise RepoConfigError(
            f"{source}: unknown review.tests setting(s) {', '.join(unknown)}"
            f"{_hint(unknown, list(_REVIEW_TESTS))} (commands, files)"
        )
    if "command" in value and "commands" in value:
        raise RepoConfigError(f"{source}: review.tests takes command or commands, not both")
    commands = value.get("commands", value.get("command"))
    values: dict[str, Any] = {
        "review_test_commands": _strings(commands, "review.tests.commands", source)
    }
    if value.get("files") is not None:
        values["review_test_files"] = _strings(value["files"], "review.tests.files", source)
    return values


def _merge_method(value: Any, source: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in MERGE_METHODS:
        raise RepoConfigError(
            f"{source}: merge must be one of {', '.join(MERGE_METHODS)}, not {value!r}"
        )
    return value.strip().lower()


def _on_off(value: Any, key: str, source: str) -> bool:
    # YAML 1.1 reads a bare on/off as true/false; quoted, they stay words.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    raise RepoConfigError(f"{source}: {key} must be on or off")


def _check_items(values: dict[str, Any], source: str) -> None:
    for key, name in (
        ("paths", "paths"),
        ("review_allow", "review.allow"),
        ("review_test_files", "review.tests.files"),
    ):
        for glob in values.get(key, ()):
            if ".." in glob.split("/") or glob.removeprefix("!").startswith("//"):
                raise RepoConfigError(
                    f"{source}: {name} are globs inside the repository (src/**), not {glob!r}"
                )
            try:
                path_glob(glob.removeprefix("!"))
            except (ValueError, re.error) as exc:
                raise RepoConfigError(
                    f"{source}: {name}: {glob!r} is not a valid glob ({exc})"
                ) from None
    label = values.get("label")
    if label is not None and not 0 < len(label.strip()) <= LABEL_MAX:
        raise RepoConfigError(f"{source}: label must be 1 to {LABEL_MAX} characters")


_KINDS: dict[type, str] = {list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _hint(unknown: list[str], known: list[str] | None = None) -> str:
    close = [m for u in unknown for m in difflib.get_close_matches(u, known or SETTINGS, 1)]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _string(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RepoConfigError(f"{source}: {key} must be a string, not {_kind(value)}")
    text = str(value).strip()
    if not text:
        raise RepoConfigError(f"{source}: {key} must not be empty")
    return text


def _command(value: Any, key: str, source: str) -> str:
    """One shell command; a list of commands runs them in order, stopping at the first failure."""
    if isinstance(value, list):
        return " && ".join(f"( {c} )" for c in _strings(value, key, source))
    return _string(value, key, source)


def _strings(value: Any, key: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RepoConfigError(f"{source}: {key} must be a string or a list of strings")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class RunLimits:
    """What a run may spend, once the operator's limits and the repository's file are merged."""

    max_turns: int
    max_minutes: float
    max_tokens: int
    ci_repair_rounds: int


def run_limits(agent: AgentSettings, config: RepoConfig) -> RunLimits:
    """The one merge of the operator's limits (HONK_MAX_*) with `.github/honk.yml`'s `limits:`.

    Turns and minutes cost the operator money: a repository may lower them, never raise them.
    Tokens are the operator's alone. CI repair rounds are the repository's to choose (0 turns
    repair off); without a choice the operator's HONK_CI_REPAIR_ROUNDS holds.
    """
    return RunLimits(
        max_turns=min(config.max_turns or agent.max_turns, agent.max_turns),
        max_minutes=min(config.max_minutes or agent.max_minutes, agent.max_minutes),
        max_tokens=agent.max_tokens,
        ci_repair_rounds=(
            config.ci_repair_rounds
            if config.ci_repair_rounds is not None
            else agent.ci_repair_rounds
        ),
    )


@dataclass(frozen=True)
class ReviewPolicy:
    """How a run's change is reviewed, once the operator's defaults and `review:` are merged."""

    model: str
    model_judge: bool
    on_veto: OnVeto
    allow: tuple[str, ...]
    checks: bool  # the deterministic checks run
    checks_kept: bool  # the repository asked to turn them off; the operator does not allow it
    diff_chars: int  # the most of the diff the judge is shown
    outcome: bool = True  # the outcome checks run (app/review/outcome.py)
    outcome_kept: bool = False  # asked off by the repository, kept on by the operator
    test_commands: tuple[str, ...] = ()  # `review: tests:`: what the outcome checks run
    test_files: tuple[str, ...] = ()  # and the extra test infrastructure they move


def review_policy(review: ReviewSettings, config: RepoConfig) -> ReviewPolicy:
    """The one merge of HONK_REVIEW_* with `review:`; only the operator lets the checks go,
    and the outcome checks."""
    wants_checks_off = config.review_checks is False
    checks_off = wants_checks_off and review.checks_optional
    wants_outcome_off = config.review_outcome is False
    outcome_off = wants_outcome_off and review.outcome_optional
    return ReviewPolicy(
        model=config.review_model or review.model,
        model_judge=review.model_judge if config.model_judge is None else config.model_judge,
        on_veto=config.on_veto or OnVeto.DRAFT,
        allow=config.review_allow,
        checks=not checks_off,
        checks_kept=wants_checks_off and not checks_off,
        diff_chars=review.diff_chars,
        outcome=not outcome_off,
        outcome_kept=wants_outcome_off and not outcome_off,
        test_commands=config.review_test_commands,
        test_files=config.review_test_files,
    )


@dataclass(frozen=True)
class NetworkPlan:
    """What each sandbox phase may reach through Honk's proxy: no rules, no proxy."""

    setup: tuple[Rule, ...] = ()
    agent: tuple[Rule, ...] = ()


def network_plan(network: NetworkSettings, config: RepoConfig) -> NetworkPlan:
    """`setup_network:` and `network:` within the operator's HONK_NETWORK_ALLOW.

    What the cap does not allow is refused (RepoConfigError names it), like any other error
    in the file: running with less than the file asks would fail in confusing ways, and
    with more is not the operator's choice. Setup's default is the registries preset.
    """
    cap = network.cap()
    setup_items = config.setup_network
    try:
        setup = compile_rules(
            setup_default(cap) if setup_items is None else setup_items,
            setting=f"{config.source}: setup_network",
            cap=cap,
        )
        agent = compile_rules(config.network, setting=f"{config.source}: network", cap=cap)
    except NetworkSettingError as exc:
        raise RepoConfigError(str(exc)) from None
    return NetworkPlan(setup, agent)


@dataclass
class ConfigCache:
    """Parsed configs keyed by blob SHA: the same file is parsed once."""

    by_sha: dict[tuple[str, str], RepoConfig] = field(default_factory=dict)
    max_entries: int = 1024

    def parse(self, text: str, sha: str, source: str) -> RepoConfig:
        # The source is part of the key: the same bytes in two repositories name two files.
        key = (sha, source)
        if key not in self.by_sha:
            if len(self.by_sha) >= self.max_entries:
                self.by_sha.clear()
            self.by_sha[key] = parse_config(text, source)
        return self.by_sha[key]


class FileSource(Protocol):
    """What loading a config needs of GitHub: a file's text and blob sha at a ref
    (`GitHubClient.file_text`; repo_config does not import app.github, its sibling)."""

    async def file_text(
        self, repo: str, path: str, ref: str | None = None
    ) -> tuple[str, str] | None: ...


async def load_repo_config(
    gh: FileSource, repo: str, ref: str | None, cache: ConfigCache
) -> RepoConfig:
    """The repository's config over its org's default; raises RepoConfigError when malformed."""
    owner, name = repo.split("/", 1)
    base = RepoConfig()
    if name != ORG_DEFAULTS_REPO:
        found = await _org_default(gh, owner)
        if found:
            base = cache.parse(found[0], found[1], f"{owner}/{ORG_DEFAULTS_REPO}:{CONFIG_PATH}")
    found = await gh.file_text(repo, CONFIG_PATH, ref)
    if not found:
        return base
    return cache.parse(found[0], found[1], CONFIG_PATH).merged_over(base)


async def _org_default(gh: FileSource, owner: str) -> tuple[str, str] | None:
    try:
        return await gh.file_text(f"{owner}/{ORG_DEFAULTS_REPO}", CONFIG_PATH)
    except gidgethub.BadRequest as exc:
        # An installation on selected repositories cannot read the org's `.github`
        # repository (403): then there is no org-wide default for it, not an error.
        if exc.status_code in (HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND):
            return None
        raise
