"""`.github/honk.yml` as Honk holds it: `RepoConfig` (one file, or a file over its org's
default), the error that names the file and the problem, and where the file is."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from app.repo_config.globs import globs_match

CONFIG_PATH = ".github/honk.yml"

ORG_DEFAULTS_REPO = ".github"  # Probot's convention: the org's `.github` repository


class OnVeto(StrEnum):
    """What a vetoed change becomes (`review: on_veto:`)."""

    DRAFT = "draft"  # a draft PR, the default
    COMMENT = "comment"  # no PR: a comment on the issue says why


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
