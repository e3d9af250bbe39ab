"""Reading one `.github/honk.yml`: every setting checked as it is read, every refusal naming
the file, the setting and why (a `RepoConfigError`, shown on the issue)."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from app.network_policy import NetworkSettingError, parse_items
from app.repo_config.config import CONFIG_PATH, OnVeto, RepoConfig, RepoConfigError
from app.repo_config.env import (
    ENV_MAX_NAME,
    ENV_MAX_TOTAL,
    ENV_MAX_VARIABLES,
    env_name_refusal,
    env_value_refusal,
)
from app.repo_config.globs import path_glob

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

MERGE_METHODS = ("squash", "merge", "rebase")  # GitHub's merge_method values

LABEL_MAX = 50  # GitHub's limit on a label's name


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
