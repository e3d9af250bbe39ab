"""The go-live card and the thread's notes after it (pure), the merge method chosen, `merge:`."""

from __future__ import annotations

import json

import pytest

from app.as_person import Refused, merge_method
from app.repo_config import RepoConfigError, parse_config
from app.slack import blocks, card
from app.slack.card import CardFacts, ChangedFile

FACTS = CardFacts(
    run_id=7,
    sha="a" * 40,
    pr_number=13,
    pr_url="https://github.com/octo-org/calc/pull/13",
    pr_title="add() <b>returns</b> the wrong sum",
    base="main",
    summary="Fixed it. <!channel> @octo-org/everyone look ![x](https://evil.example/p.png)",
    files=tuple(ChangedFile(f"src/file_{i}.py", i, 1) for i in range(20)),
    files_total=20,
    verification="Honk ran `pytest -q`: **passed**.",
    checks_passed=2,
    review="Review: approved. <@U0BOSS> said fine",
    links=(("preview (deployment)", "https://pr-13.example.com"),),
    cost="$0.21",
    run_url="https://honk.example.com/runs/7",
)


def _texts(message: blocks.Message) -> str:
    return json.dumps(message[1])


def test_the_card_shows_everything_and_keeps_model_text_inert() -> None:
    text, found = card.ready_card(FACTS)
    shown = _texts((text, found))
    assert text.startswith(":white_check_mark: CI passed on <https://github.com/")
    assert "<!channel>" not in shown and "<@U0BOSS>" not in shown
    assert "@octo-org/everyone" not in shown.replace("`@octo-org/everyone`", "")
    assert "&lt;b&gt;returns&lt;/b&gt;" in shown  # the title is escaped
    assert "*Files* (+190 -20 in 20 files)" in shown and "and 12 more" in shown
    assert "Honk ran `pytest -q`: *passed*." in shown and "CI passed (2 checks)" in shown
    assert "<https://pr-13.example.com|preview (deployment)>" in shown and "Cost: $0.21" in shown
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in found)
    ids = [e["action_id"] for b in found if b["type"] == "actions" for e in b["elements"]]
    assert ids[:4] == [
        card.MERGE_ACTION,
        card.APPROVE_ACTION,
        blocks.RETRY_ACTION,
        card.CLOSE_ACTION,
    ]
    values = {
        e["action_id"]: e.get("value")
        for b in found
        if b["type"] == "actions"
        for e in b["elements"]
    }
    assert card.parse_target(values[card.MERGE_ACTION]) == (7, "a" * 40)
    assert values[blocks.RETRY_ACTION] == "7"  # the Retry form, as on any message


def test_a_long_summary_is_cut_before_it_is_made_inert() -> None:
    facts = CardFacts(**{**FACTS.__dict__, "summary": "@team " * 1000})
    shown = _texts(card.ready_card(facts))
    assert len(shown) < 20_000 and "@team @team" not in shown


def test_deployments_say_live_only_for_production() -> None:
    live = card.deployed(
        environment="production", state="success", url="https://x.example", production=True
    )
    assert live[0] == ":rocket: Live. Deployed to production: https://x.example"
    staging = card.deployed(
        environment="staging", state="success", url="https://s.example", production=False
    )
    assert "Live" not in staging[0] and "Deployed to staging" in staging[0]
    failed = card.deployed(
        environment="production", state="failure", url="https://log", production=True
    )
    assert "failed" in failed[0] and "https://log" in failed[0]


def test_a_stopped_run_offers_to_continue() -> None:
    text, found = card.stopped_at_limit(
        reason="the turn limit was reached", cost="$0.40", turns=40, run_id=9
    )
    assert "Nothing was pushed yet" in json.dumps(found) and "$0.40" in text
    (button,) = [e for b in found if b["type"] == "actions" for e in b["elements"]]
    assert button["text"]["text"] == "Continue with +40 turns" and button["value"] == "9"


@pytest.mark.parametrize(
    ("allowed", "wanted", "chosen"),
    [
        ({}, None, "squash"),
        ({"allow_squash_merge": False}, None, "merge"),
        ({"allow_squash_merge": False, "allow_merge_commit": False}, None, "rebase"),
        ({}, "rebase", "rebase"),
    ],
)
def test_the_merge_method_is_one_the_repository_allows(
    allowed: dict[str, bool], wanted: str | None, chosen: str
) -> None:
    assert merge_method({"full_name": "o/r", **allowed}, wanted) == chosen


def test_a_merge_method_the_repository_refuses_is_named() -> None:
    with pytest.raises(Refused, match="allows: merge, rebase"):
        merge_method({"full_name": "o/r", "allow_squash_merge": False}, "squash")


def test_merge_in_honk_yml_is_validated() -> None:
    assert parse_config("merge: Rebase\n").merge == "rebase"
    with pytest.raises(RepoConfigError, match="merge must be one of squash, merge, rebase"):
        parse_config("merge: fast-forward\n")
