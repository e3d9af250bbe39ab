"""The review's settings: HONK_REVIEW_* and `review:` in `.github/honk.yml`, merged once."""

from __future__ import annotations

import re

import pytest

from app.config import ConfigError, Settings
from app.repo_config import RepoConfig, RepoConfigError, parse_config, review_policy


def test_operator_defaults() -> None:
    settings = Settings.from_env({"HONK_MODEL": "claude-opus-4-5"}, env_file=None)
    # The judge uses the agent's model unless told otherwise.
    assert settings.review.model == "claude-opus-4-5"
    assert settings.review.model_judge is True and settings.review.checks_optional is False
    assert settings.review.diff_chars == 60_000
    settings = Settings.from_env(
        {
            "HONK_REVIEW_MODEL": "claude-haiku-4-5",
            "HONK_MODEL_JUDGE": "off",
            "HONK_REVIEW_CHECKS_OPTIONAL": "yes",
            "HONK_REVIEW_DIFF_CHARS": "20000",
        },
        env_file=None,
    )
    assert settings.review.model == "claude-haiku-4-5" and settings.review.model_judge is False
    assert settings.review.checks_optional is True and settings.review.diff_chars == 20_000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HONK_MODEL_JUDGE", "sometimes", "HONK_MODEL_JUDGE must be on or off"),
        ("HONK_REVIEW_CHECKS_OPTIONAL", "2", "HONK_REVIEW_CHECKS_OPTIONAL must be on or off"),
        (
            "HONK_REVIEW_DIFF_CHARS",
            "10",
            r"HONK_REVIEW_DIFF_CHARS must be at least 1000 \(got 10\)",
        ),
    ],
)
def test_bad_operator_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value}, env_file=None)


def test_review_in_the_file() -> None:
    config = parse_config(
        "review:\n  model: claude-haiku-4-5\n  model_judge: off\n  on_veto: comment\n"
        "  allow: [poetry.lock, 'vendor/**']\n  checks: 'on'\n"
    )
    assert config.review_model == "claude-haiku-4-5" and config.model_judge is False
    assert config.on_veto == "comment" and config.review_checks is True
    assert config.review_allow == ("poetry.lock", "vendor/**")
    assert {"review_model", "model_judge", "on_veto", "review_allow"} <= config.fields_set


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "review: on\n",
            "review must be a mapping (model, model_judge, on_veto, allow, checks, outcome, tests)",
        ),
        (
            "review:\n  on_vetoo: draft\n",
            "unknown review setting 'on_vetoo' (did you mean on_veto?)",
        ),
        ("review:\n  on_veto: close\n", "review.on_veto must be draft or comment"),
        ("review:\n  model_judge: maybe\n", "review.model_judge must be on or off"),
        ("review:\n  checks: 1\n", "review.checks must be on or off"),
        ("review:\n  allow: 3\n", "review.allow must be a string or a list of strings"),
        ("review:\n  allow: ['../x']\n", "review.allow are globs inside the repository"),
        ("review:\n  model: ''\n", "review.model must not be empty"),
    ],
)
def test_bad_review_settings_name_the_setting(text: str, message: str) -> None:
    with pytest.raises(RepoConfigError, match=re.escape(message)):
        parse_config(text)


def test_the_org_default_and_the_repository_merge_setting_by_setting() -> None:
    org = parse_config("review:\n  on_veto: comment\n  allow: [yarn.lock]\n", "org")
    repo = parse_config("review:\n  model_judge: off\n")
    merged = repo.merged_over(org)
    assert merged.on_veto == "comment" and merged.review_allow == ("yarn.lock",)
    assert merged.model_judge is False
    cleared = parse_config("review:\n  allow: []\n").merged_over(org)
    assert cleared.review_allow == () and cleared.on_veto == "comment"


def test_policy_repository_over_operator() -> None:
    settings = Settings().with_overrides(review_model="claude-sonnet-4-6", model_judge=True)
    policy = review_policy(settings.review, RepoConfig())
    assert (policy.model, policy.model_judge, policy.on_veto) == (
        "claude-sonnet-4-6",
        True,
        "draft",
    )
    assert policy.checks and not policy.checks_kept
    own = RepoConfig(review_model="claude-haiku-4-5", model_judge=False, on_veto="comment")
    policy = review_policy(settings.review, own)
    assert (policy.model, policy.model_judge, policy.on_veto) == (
        "claude-haiku-4-5",
        False,
        "comment",
    )


def test_only_the_operator_lets_a_repository_turn_the_checks_off() -> None:
    wants_off = RepoConfig(review_checks=False)
    kept = review_policy(Settings().review, wants_off)
    assert kept.checks is True and kept.checks_kept is True
    allowed = review_policy(
        Settings().with_overrides(review_checks_optional=True).review, wants_off
    )
    assert allowed.checks is False and allowed.checks_kept is False
