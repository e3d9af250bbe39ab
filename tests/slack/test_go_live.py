"""Going live from Slack, end to end: the card, connecting GitHub, merging and approving as
yourself (GitHub's rules, GitHub's words), and the merge followed to production."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.as_person import OWN_APPROVAL
from app.config import Settings
from app.slack import blocks, card
from app.web import SERVICES, create_app
from tests.calc_world import FIXED, REPO
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.golive_world import (
    HONK_URL,
    PR,
    _connect_button,
    buttons,
    ci_finishes,
    connect,
    connect_user,
    dispatched,
    golive_settings,
    green_pr,
    in_thread,
    told_to,
)
from tests.helpers import ClientFactory, eventually, post_webhook

SITE = "https://calc.example.com"


@pytest.fixture
def world(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    from tests.calc_world import fixing_script

    fake_anthropic.script(*fixing_script())
    return golive_settings(base_settings, fake_github, fake_anthropic, fake_slack)


def user_merges(fake_github: FakeGitHub) -> list[Any]:
    return fake_github.calls_to("PUT", rf"^/repos/{REPO}/pulls/{PR}/merge$")


async def test_the_card_then_a_writer_connects_merges_and_sees_it_live(
    aiohttp_client: ClientFactory, world: Settings, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    client = await aiohttp_client(create_app(world))
    run, ready = await green_pr(client, fake_github, fake_slack)

    # The card: what changed, files, tests and CI, the review, the cost, and the buttons.
    shown = json.dumps(ready.blocks)
    assert "subtracted instead of adding" in shown  # the agent's summary
    assert "`calc.py` +1 -1" in shown and "Honk ran `python -m pytest -q`: *passed*" in shown
    assert "CI passed (1 check)" in shown and "Review: approved" in shown and "Cost: $" in shown
    found = buttons(ready)
    assert {card.MERGE_ACTION, card.APPROVE_ACTION, blocks.RETRY_ACTION, card.CLOSE_ACTION} <= set(
        found
    )
    assert found[blocks.VIEW_RUN_ACTION]["url"] == f"{HONK_URL}/runs/{run.id}"
    assert found[blocks.RETRY_ACTION]["text"]["text"] == "Request changes"

    # Not connected yet: only alice is offered to connect; nothing is merged.
    seen = len(fake_slack.responses)
    await fake_slack.click(client, ready, card.MERGE_ACTION)
    url = await _connect_button(fake_slack, seen)
    assert fake_slack.responses[-1]["response_type"] == "ephemeral"
    assert user_merges(fake_github) == []
    page = await connect(client, fake_github, url, "alice")
    assert "<strong>alice</strong>" in page
    await eventually(lambda: in_thread(fake_slack, "connected GitHub as `alice`"))
    again = await client.get(url.removeprefix(HONK_URL))
    assert again.status == 404  # the link worked once

    await fake_slack.click(client, ready, card.MERGE_ACTION)
    (merged,) = await eventually(lambda: in_thread(fake_slack, "*Merged*"))
    (call,) = user_merges(fake_github)
    assert call.headers["Authorization"].startswith("Bearer ghu_")  # alice's own token
    assert call.json == {"merge_method": "squash", "sha": run.head_sha}
    pr = fake_github.repo(REPO)["pulls"][PR]
    assert pr["merged"] and pr["merged_by"]["login"] == "alice"
    main = fake_github.branch_sha(REPO, "main")
    assert main == pr["merge_commit_sha"] and fake_github.file_at(REPO, "main", "calc.py") == FIXED
    assert "(#13)" in fake_github.git(REPO, "log", "-1", "--format=%s", "main")
    assert "<@U0ALICE>" in merged.text or "<@U0ALICE>" in json.dumps(merged.blocks)
    assert card.MERGE_ACTION not in buttons(ready)  # the card says it was merged instead

    # Followed to production: CI on main, then the deployment.
    await ci_finishes(client, fake_github, main, branch="main")
    await eventually(lambda: in_thread(fake_slack, "CI passed* on `main` after the merge"))
    deployment = fake_github.add_deployment(REPO, main, environment="production")
    status = fake_github.add_deployment_status(
        REPO, deployment, "success", environment_url=SITE, log_url=f"{SITE}/log"
    )
    event = fake_github.deployment_status_event(REPO, deployment, status, 5150)
    for _ in range(2):  # GitHub may say it twice: the thread hears it once
        await post_webhook(client, "deployment_status", event)
    await eventually(lambda: dispatched(client))
    (live,) = in_thread(fake_slack, "Deployed to production")
    assert f"Live. Deployed to production: {SITE}" in live.text
    steps = [s.name for s in (await client.app[SERVICES].store.runs.get(run.id)).steps]  # type: ignore[union-attr]
    assert "merge" in steps and "deploy" in steps


async def test_a_reader_is_refused_in_githubs_words_and_a_required_review_needs_a_second_person(
    aiohttp_client: ClientFactory, world: Settings, fake_github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    fake_github.require_reviews(REPO, 1)
    client = await aiohttp_client(create_app(world))
    _run, ready = await green_pr(client, fake_github, fake_slack)
    for user in ("U0BOB", "U0ALICE", "U0DAVE"):
        await connect_user(client, fake_slack, fake_github, user)

    # bob may only read: GitHub refuses him, and only he is told.
    await fake_slack.click(client, ready, card.MERGE_ACTION, user="U0BOB")
    (refusal,) = await eventually(lambda: told_to(fake_slack, "Must have push access"))
    assert refusal["response_type"] == "ephemeral"
    assert refusal["text"] == "GitHub refused: Must have push access to repository"
    assert not in_thread(fake_slack, "push access")

    # alice may write, but the branch wants an approving review first.
    await fake_slack.click(client, ready, card.MERGE_ACTION)
    rule = "At least 1 approving review is required by reviewers with write access."
    (said,) = await eventually(lambda: told_to(fake_slack, rule))
    assert said["response_type"] == "ephemeral" and said["text"] == f"GitHub refused: {rule}"
    # She asked for the change: her approval is not the second pair of eyes.
    await fake_slack.click(client, ready, card.APPROVE_ACTION)
    await eventually(lambda: told_to(fake_slack, OWN_APPROVAL))
    assert fake_github.reviews_of(REPO, PR) == []

    await fake_slack.click(client, ready, card.APPROVE_ACTION, user="U0DAVE")
    await eventually(lambda: in_thread(fake_slack, "<@U0DAVE> approved"))
    (review,) = fake_github.reviews_of(REPO, PR)
    assert (review["user"]["login"], review["state"]) == ("dave", "APPROVED")

    await fake_slack.click(client, ready, card.MERGE_ACTION)
    await eventually(lambda: in_thread(fake_slack, "*Merged*"))
    pr = fake_github.repo(REPO)["pulls"][PR]
    assert pr["merged"] and pr["merged_by"]["login"] == "alice"
    assert not fake_github.repo(REPO)["pulls"][PR]["draft"]
