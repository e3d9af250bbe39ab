"""Per-repository settings from `.github/honk.yml` (org-wide defaults from the org's `.github` repo)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

CONFIG_PATH = ".github/honk.yml"


class RepoConfigError(ValueError):
    """The file is not valid; the message says where and why (shown on the issue)."""


@dataclass(frozen=True)
class RepoConfig:
    verify: str | None = None  # the check command, run in the sandbox after the agent
    setup: tuple[str, ...] = ()  # commands before the agent, with network
    network: tuple[str, ...] = ()  # hosts the agent may reach; empty: no network
    model: str | None = None
    max_turns: int | None = None
    max_minutes: float | None = None
    ci_repair_rounds: int | None = None
    slack_channel: str | None = None
    label: str | None = None
    paths: tuple[str, ...] = ()  # globs the agent may change; empty: anything
    source: str = "defaults"  # where it came from, for messages

    def path_allowed(self, path: str) -> bool:
        return not self.paths or any(fnmatch.fnmatch(path, glob) for glob in self.paths)

    def merged_over(self, base: RepoConfig) -> RepoConfig:
        """This file's values on top of `base` (the org-wide default)."""
        changes = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "source" and getattr(self, f.name) not in (None, ())
        }
        return replace(base, **changes, source=self.source)


_LIMITS = {"turns": "max_turns", "minutes": "max_minutes", "ci_repair_rounds": "ci_repair_rounds"}


def parse_config(text: str, source: str = CONFIG_PATH) -> RepoConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RepoConfigError(f"{source} is not valid YAML{where}") from None
    if data is None:
        return RepoConfig(source=source)
    if not isinstance(data, dict):
        raise RepoConfigError(f"{source} must be a mapping of settings")
    unknown = set(data) - {"verify", "setup", "network", "model", "limits", "slack_channel",
                           "label", "paths"}
    if unknown:
        raise RepoConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {"source": source}
    for key in ("verify", "model", "slack_channel", "label"):
        if key in data and data[key] is not None:
            values[key] = _string(data[key], key, source)
    for key in ("setup", "network", "paths"):
        if key in data and data[key] is not None:
            values[key] = _strings(data[key], key, source)
    limits = data.get("limits") or {}
    if not isinstance(limits, dict):
        raise RepoConfigError(f"{source}: limits must be a mapping")
    for key, value in limits.items():
        if key not in _LIMITS:
            raise RepoConfigError(f"{source}: unknown limit {key!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RepoConfigError(f"{source}: limits.{key} must be a non-negative number")
        values[_LIMITS[key]] = value if key == "minutes" else int(value)
    return RepoConfig(**values)


def _string(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RepoConfigError(f"{source}: {key} must be a string")
    return str(value)


def _strings(value: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RepoConfigError(f"{source}: {key} must be a string or a list of strings")
    return tuple(value)


@dataclass
class ConfigCache:
    """Parsed configs keyed by blob SHA: the same file is parsed once."""

    by_sha: dict[str, RepoConfig] = field(default_factory=dict)

    def parse(self, text: str, sha: str, source: str) -> RepoConfig:
        if sha not in self.by_sha:
            if len(self.by_sha) > 1024:
                self.by_sha.clear()
            self.by_sha[sha] = parse_config(text, source)
        return self.by_sha[sha]


async def load_repo_config(gh: Any, repo: str, ref: str | None, cache: ConfigCache) -> RepoConfig:
    """The repository's config over its org's default; raises RepoConfigError when malformed."""
    owner = repo.split("/", 1)[0]
    base = RepoConfig()
    if repo.split("/", 1)[1] != ".github":
        found = await gh.file_text(f"{owner}/.github", CONFIG_PATH)
        if found:
            base = cache.parse(found[0], found[1], f"{owner}/.github:{CONFIG_PATH}")
    found = await gh.file_text(repo, CONFIG_PATH, ref)
    if not found:
        return base
    return cache.parse(found[0], found[1], CONFIG_PATH).merged_over(base)
