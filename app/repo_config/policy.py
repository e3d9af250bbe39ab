"""The operator's settings merged with a repository's file, each in one place: what a run may
spend (`run_limits`), how its change is reviewed (`review_policy`), what each sandbox phase
may reach (`network_plan`)."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import AgentSettings, NetworkSettings, ReviewSettings
from app.network_policy import NetworkSettingError, Rule, compile_rules, setup_default
from app.repo_config.config import OnVeto, RepoConfig, RepoConfigError


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
