"""A repository's own environment, end to end through the real HTTP entry, real bwrap, real git
and the real proxy: `env:` reaches setup, the agent and `verify:`; a secret's name is refused
on the tracking comment; a devcontainer-only repository gets a ready PR with a note of what
Honk did not do; a failed setup shows its own last lines and the proxy's refusals with their
reasons and advice; setup's products and a build's target/ are left out of the commit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.config import Settings
from app.models import RunState
from app.web import SERVICES, create_app
from tests.calc_world import FIXED, REPO, labeled
from tests.e2e.test_e2e import finished_run
from tests.fakes.anthropic import (
    FakeAnthropic,
    result_text,
    text,
    tool_results,
    tool_use_bash,
    tool_use_edit,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack
from tests.helpers import ClientFactory, post_webhook
from tests.run_page_world import page_settings, seed_people, sign_in

pytestmark = pytest.mark.bwrap

HONK_URL = "http://honk.example.test"
FIX = tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b")


@pytest.fixture
def world_settings(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    seed_people(fake_github)
    return page_settings(base_settings, fake_github, fake_anthropic, fake_slack, honk_url=HONK_URL)


def outputs(fake_anthropic: FakeAnthropic) -> str:
    return "\n".join(
        result_text(block) for request in fake_anthropic.requests for block in tool_results(request)
    )


def tracking_comment(fake_github: FakeGitHub, run: Any) -> str:
    return str(fake_github.repo(REPO)["comments"][run.tracking_comment_id]["body"])


async def run_page(client: TestClient, fake_github: FakeGitHub, run: Any) -> str:
    await sign_in(client, fake_github, "alice", f"/runs/{run.id}")
    page = await client.get(f"/runs/{run.id}")
    assert page.status == 200
    return await page.text()


async def events_of(client: TestClient, run: Any, kind: str) -> list[dict[str, Any]]:
    store = client.app[SERVICES].store
    return [event.data for event in await store.events.read(run.id, kinds=(kind,))]


async def test_env_reaches_setup_the_agent_and_verify_and_only_the_change_is_committed(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_github.commit_files(
        REPO,
        {
            ".github/honk.yml": (
                'verify: python -m pytest -q && test "$CALC_MODE" = strict\n'
                'setup: echo "setup saw $CALC_MODE" > setup-saw.txt\n'
                "env:\n  CALC_MODE: strict\n  PYTHONPATH: src\n"
            ),
        },
    )
    fake_anthropic.script(
        tool_use_bash('cat setup-saw.txt; echo "agent saw $CALC_MODE and $PYTHONPATH"'),
        FIX,
        tool_use_edit(command="create", path="util.py", file_text="ONE = 1\n"),
        # A build's output, which this repository's .gitignore does not ignore.
        tool_use_bash("mkdir -p target/debug && echo binary > target/debug/calc && ls target"),
        tool_use_bash("python -m pytest -q"),
        text("Fixed `add`, and added `util.py`."),
    )
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error

    seen = outputs(fake_anthropic)
    assert "setup saw strict" in seen
    assert "agent saw strict and src" in seen
    pr = fake_github.repo(REPO)["pulls"][run.pr_number]
    # `verify:` saw the variable too: it passed, and the PR is ready.
    assert "passed" in pr["body"] and not pr["draft"]
    committed = fake_github.git(REPO, "show", "--name-only", "--format=", run.branch).split()
    assert sorted(committed) == ["calc.py", "util.py"]
    assert fake_github.file_at(REPO, run.branch, "calc.py") == FIXED
    assert "## Left out of the commit" in pr["body"]
    assert "- `setup-saw.txt (made or changed by setup)`" in pr["body"]
    assert "- `target/ (build output)`" in pr["body"]

    # The setup command is on the run page with its output.
    setup = await events_of(client, run, "setup")
    assert [e.get("exit_code") for e in setup] == [None, 0]
    assert setup[1]["command"] == 'echo "setup saw $CALC_MODE" > setup-saw.txt'
    page = await run_page(client, fake_github, run)
    assert 'id="setup-0"' in page and "setup saw $CALC_MODE" in page


async def test_a_secret_like_name_in_env_is_refused_on_the_tracking_comment(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_github.commit_files(
        REPO, {".github/honk.yml": "verify: python -m pytest -q\nenv:\n  NPM_TOKEN: abc123\n"}
    )
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    comment = tracking_comment(fake_github, run)
    assert (
        "`.github/honk.yml` is not valid: .github/honk.yml: env: NPM_TOKEN is refused: it "
        "names a secret (a token, key, password or credentials): secrets never go to the agent"
    ) in comment
    assert fake_anthropic.requests == []  # no agent ran
    assert "abc123" not in comment


DEVCONTAINER = """{
  // The team's dev container: VS Code, Codespaces.
  "name": "calc",
  "image": "mcr.microsoft.com/devcontainers/python:3.12",
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "forwardPorts": [8000],
  "containerEnv": {"CALC_EXPECTED_FILE": "fixtures/expected.txt",},
  /* The tests read what this makes. */
  "postCreateCommand": ["sh", "-c", "mkdir -p fixtures && echo 5 > \\"$CALC_EXPECTED_FILE\\""],
  "postStartCommand": "python -m http.server",
}
"""
TESTS_NEEDING_SETUP = (
    "import os\n\nfrom calc import add\n\n\ndef test_add():\n"
    "    expected = int(open(os.environ['CALC_EXPECTED_FILE']).read())\n"
    "    assert add(2, 3) == expected\n"
)


async def test_a_devcontainer_only_repository_gets_a_ready_pr_and_a_note_of_what_was_not_done(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_github.commit_files(
        REPO,
        {
            ".github/honk.yml": None,
            ".devcontainer/devcontainer.json": DEVCONTAINER,
            "test_calc.py": TESTS_NEEDING_SETUP,
        },
    )
    fake_anthropic.script(
        FIX, tool_use_bash("python -m pytest -q"), text("Fixed `add`: the tests pass.")
    )
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error

    assert "1 passed" in outputs(fake_anthropic)  # the file postCreateCommand made was there
    pr = fake_github.repo(REPO)["pulls"][run.pr_number]
    assert not pr["draft"]
    committed = fake_github.git(REPO, "show", "--name-only", "--format=", run.branch).split()
    assert committed == ["calc.py"]
    assert "- `fixtures/ (made or changed by setup)`" in pr["body"]

    not_done = (
        "Not done (Honk runs the repository in its own sandbox, not in a container): "
        "`image`, `features`, `forwardPorts`, `postStartCommand`."
    )
    assert not_done in tracking_comment(fake_github, run)
    notes = [e["text"] for e in await events_of(client, run, "note")]
    assert notes[0] == (
        "Honk set up this run from `.devcontainer/devcontainer.json`: 1 variable; "
        "`postCreateCommand` as setup, in that order."
    )
    assert not_done in notes
    page = await run_page(client, fake_github, run)
    assert "<code>forwardPorts</code>" in page and "<code>postStartCommand</code>" in page
    setup = await events_of(client, run, "setup")
    assert setup[-1]["origin"] == "postCreateCommand" and setup[-1]["exit_code"] == 0


async def test_a_failed_setup_shows_its_own_last_lines_on_the_comment_and_in_slack(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    failing = "sh -c 'echo resolving; echo npm ERR! 404 Not Found >&2; exit 1'"
    fake_github.commit_files(
        REPO,
        {".github/honk.yml": f"verify: pytest -q\nsetup:\n  - echo first\n  - {failing}\n"},
    )
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert run.error == f"setup command `{failing}` failed (exit 1)"
    comment = tracking_comment(fake_github, run)
    assert f"Failed: setup command `{failing}` failed (exit 1)" in comment
    assert (
        "The last lines it printed:\n\n```text\nresolving\nnpm ERR! 404 Not Found\n```" in comment
    )
    assert fake_anthropic.requests == []
    replies = json.dumps([m.blocks for m in fake_slack.messages()])
    assert "npm ERR! 404 Not Found" in replies
    setup = await events_of(client, run, "setup")
    assert [(e["index"], e.get("exit_code")) for e in setup] == [
        (0, None),
        (0, 0),
        (1, None),
        (1, 1),
    ]
    page = await run_page(client, fake_github, run)
    assert 'id="setup-1"' in page and "exit 1" in page and "npm ERR! 404 Not Found" in page


async def test_a_refusals_reason_and_advice_reach_the_comment(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> None:
    # Repositories may name any host (never a private address unless the operator vouches).
    settings = world_settings.with_overrides(network_allow=("*",))
    fake_github.commit_files(
        REPO,
        {
            ".github/honk.yml": (
                "verify: python -m pytest -q\n"
                "setup_network: ['localhost:4873']\n"
                "setup: curl -sS -m 5 http://localhost:4873/left-pad; "
                "curl -sS -m 5 http://localhost:4874/; exit 1\n"
            )
        },
    )
    client = await aiohttp_client(create_app(settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    comment = tracking_comment(fake_github, run)
    # The proxy's own answer is in the command's output...
    assert "Honk's network policy refused localhost:4874" in comment
    # ...and each refusal, with its reason and what would allow it, is on the comment.
    assert (
        "- `localhost:4874` was refused: it is not in `setup_network:` in `.github/honk.yml`. "
        "To allow it, add `localhost:4874` there"
    ) in comment
    assert "- `localhost` resolves to " in comment and "a loopback address" in comment
    assert (
        "Ask the operator to allow it with `HONK_NETWORK_ALLOW=* localhost:4873` "
        "(`setup_network:` names it already)"
    ) in comment
    replies = json.dumps([m.blocks for m in fake_slack.messages()])
    assert "HONK_NETWORK_ALLOW=* localhost:4873" in replies


async def test_a_draft_pr_for_a_failed_verification_shows_the_command_and_its_last_lines(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    wrong = tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a * b")
    fake_anthropic.script(wrong, text("Fixed `add`."), text("It is fixed."))
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.SUCCEEDED, run.error
    pr = fake_github.repo(REPO)["pulls"][run.pr_number]
    assert pr["draft"]
    body = pr["body"]
    assert (
        "Honk ran `python -m pytest -q`: **failed**.\n\nThe last lines it printed:\n\n```text\n"
        in (body)
    )
    assert "assert 6 == 5" in body and "1 failed" in body


async def test_an_unreadable_devcontainer_stops_the_run_naming_the_line(
    aiohttp_client: ClientFactory,
    world_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_github.commit_files(
        REPO,
        {
            ".github/honk.yml": "verify: python -m pytest -q\n",  # no setup: the file is used
            ".devcontainer.json": '{\n  // fine\n  "postCreateCommand": "make"\n  "name": "x"\n}\n',
        },
    )
    client = await aiohttp_client(create_app(world_settings))
    await post_webhook(client, "issues", labeled())
    run = await finished_run(client)
    assert run.state == RunState.FAILED
    assert run.error == (
        ".devcontainer.json is not valid JSON with comments: line 4, column 3: "
        "Expecting ',' delimiter"
    )
    assert f"Failed: {run.error}" in tracking_comment(fake_github, run)
    assert fake_anthropic.requests == []
