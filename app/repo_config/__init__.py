"""Per-repository settings: `.github/honk.yml` over the org-wide default in the org's `.github`.

`config` (what Honk holds of the file: `RepoConfig`), `parse` (reading one file, each refusal
naming the setting), `env` (what `env:` may hold), `globs` (`paths:` and `review: allow:` in
CODEOWNERS' reading), `policy` (the operator's settings merged with the file: `run_limits`,
`review_policy`, `network_plan`), `load` (from GitHub, parsed once per blob). This package's
names are its callers' interface.
"""

from app.repo_config.config import CONFIG_PATH, OnVeto, RepoConfig, RepoConfigError, merge_env
from app.repo_config.env import HONK_SET_ENV, env_name_refusal, env_value_refusal
from app.repo_config.globs import globs_match
from app.repo_config.load import ConfigCache, FileSource, load_repo_config
from app.repo_config.parse import SETTINGS, parse_config
from app.repo_config.policy import (
    NetworkPlan,
    ReviewPolicy,
    RunLimits,
    network_plan,
    review_policy,
    run_limits,
)

__all__ = [
    "CONFIG_PATH",
    "HONK_SET_ENV",
    "SETTINGS",
    "ConfigCache",
    "FileSource",
    "NetworkPlan",
    "OnVeto",
    "RepoConfig",
    "RepoConfigError",
    "ReviewPolicy",
    "RunLimits",
    "env_name_refusal",
    "env_value_refusal",
    "globs_match",
    "load_repo_config",
    "merge_env",
    "network_plan",
    "parse_config",
    "review_policy",
    "run_limits",
]
