"""/metrics after a real run: runs, phases, tokens and cost, the verdict, sandbox, GitHub, Slack."""

from __future__ import annotations

import re
from typing import Any

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import ISSUE, REPO, fixing_script, labeled
from tests.fakes.anthropic import FakeAnthropic
from tests.helpers import ClientFactory, eventually, post_webhook

TOKEN = "metrics-test-token-5b1d"


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` in an exposition (0 when it is not there)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_run_shows_in_the_metrics(
    aiohttp_client: ClientFactory, calc_world_settings: Settings, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.script(*fixing_script())
    client = await aiohttp_client(
        create_app(calc_world_settings.with_overrides(metrics_token=TOKEN))
    )

    async def scrape() -> str:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        return await response.text()

    before = await scrape()
    await post_webhook(client, "issues", labeled())
    store = client.app[SERVICES].store

    async def finished() -> Any:
        runs = await store.runs.find(repo=REPO, issue_number=ISSUE)
        return runs[0] if runs and not runs[0].state.active else None

    run = await eventually(finished, within=60)
    assert run.state == RunState.SUCCEEDED, run.error
    after = await scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("honk_runs_finished_total", kind="issue", outcome="succeeded") == 1
    assert value(after, "honk_runs", state="succeeded") >= 1
    assert grew("honk_run_phase_seconds_count", phase="agent") >= 1
    assert grew("honk_run_phase_seconds_count", phase="verify") >= 1
    model = calc_world_settings.agent.model
    assert grew("honk_model_tokens_total", model=model, kind="output") > 0
    assert grew("honk_model_cost_dollars_total", model=model) > 0
    assert grew("honk_review_verdicts_total", verdict="approved") == 1
    assert grew("honk_sandbox_command_seconds_count", result="ok") >= 1
    assert grew("honk_github_requests_total", method="POST", status="201") >= 1
    assert value(after, "honk_github_rate_limit_remaining") >= 0
    assert grew("honk_slack_requests_total", method="chat.postMessage", outcome="ok") >= 1
    assert grew("honk_deliveries_total", event="issues", outcome="stored") == 1
    assert grew("honk_dispatched_total", event="issues", result="done") == 1
