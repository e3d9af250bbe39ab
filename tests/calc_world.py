"""The small world most end-to-end tests share: octo-org/calc, whose add() subtracts."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.conftest import load_payload
from tests.fakes.anthropic import FakeAnthropic, text, tool_use_bash, tool_use_edit
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

REPO = "octo-org/calc"
INSTALLATION = 5150
ISSUE = 12
ISSUE_TITLE = "add() returns the wrong sum"
ISSUE_BODY = "`add(2, 3)` gives -1."

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
# The review's outcome checks run pytest without the plugins of Honk's own environment (the
# sandbox shows its Python): loading them costs seconds a run, several runs a review.
REVIEW_TESTS = "review:\n  tests: PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q\n"
REPO_FILES = {
    "calc.py": BUGGY,
    "test_calc.py": TESTS,
    "AGENTS.md": "Run `python -m pytest -q` before you finish.\n",
    ".github/honk.yml": "verify: python -m pytest -q\n" + REVIEW_TESTS,
}


# The review's outcome checks asked off (for a test about something else, where the operator
# allows it): a run then saves the checks' sandboxed test runs on the base and the head.
NO_OUTCOME_CHECKS = REPO_FILES[".github/honk.yml"] + "  outcome: off\n"


def without_outcome_checks(fake_github: FakeGitHub, settings: Settings) -> Settings:
    """The calc repository's config asks the outcome checks off; the operator allows it."""
    fake_github.commit_files(
        REPO, {".github/honk.yml": NO_OUTCOME_CHECKS}, message="No outcome checks"
    )
    return settings.with_overrides(review_outcome_optional=True)


def seed_calc(fake_github: FakeGitHub, *, issue: bool = True) -> None:
    """Honk installed on octo-org/calc; alice may write there (and asked, when `issue`)."""
    fake_github.add_installation(INSTALLATION, account="octo-org", repos=[REPO])
    fake_github.add_repo(REPO, files=REPO_FILES)
    if issue:
        fake_github.add_issue(
            REPO, ISSUE, title=ISSUE_TITLE, body=ISSUE_BODY, user="alice", labels=["honk"]
        )
    fake_github.set_permission(REPO, "alice", "write")
    fake_github.add_user("alice", name="Alice Example", email="alice@example.com")


def fixing_script(*, look_first: bool = False) -> list[Any]:
    """The agent's turns that fix add(): edit, run the tests, sum up. `look_first` reads
    calc.py before the edit (one more model request)."""
    look = [tool_use_bash("cat calc.py", say="Let me look at the code.")] if look_first else []
    return [
        *look,
        tool_use_edit(command="str_replace", path="calc.py", old_str="a - b", new_str="a + b"),
        tool_use_bash("python -m pytest -q"),
        text("Fixed `add`: it subtracted instead of adding. `python -m pytest -q` passes."),
    ]


def calc_settings(
    base: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    **overrides: Any,
) -> Settings:
    """`base` pointed at every fake, Slack on, one worker."""
    values: dict[str, Any] = {
        "github_api_url": fake_github.url,
        "github_url": fake_github.url,
        "anthropic_base_url": fake_anthropic.url,
        "model": "claude-sonnet-4-6",
        "workers": 1,
    }
    return fake_slack.settings(base).with_overrides(**(values | overrides))


def labeled(sender: str = "alice") -> dict[str, Any]:
    """The real `issues.labeled` example, about the calc issue and the honk label."""
    payload = load_payload("issues.labeled.1")
    payload["label"] = {**payload["label"], "name": "honk"}
    payload["repository"] = {**payload["repository"], "full_name": REPO, "name": "calc"}
    payload["issue"] = {
        **payload["issue"],
        "number": ISSUE,
        "title": ISSUE_TITLE,
        "body": ISSUE_BODY,
    }
    payload["sender"] = {**payload["sender"], "login": sender, "type": "User"}
    payload["installation"] = {"id": INSTALLATION}
    return payload


@pytest.fixture
def calc_world_settings(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
) -> Settings:
    """octo-org/calc seeded with its issue, and Honk's settings pointed at every fake."""
    seed_calc(fake_github)
    return calc_settings(base_settings, fake_github, fake_anthropic, fake_slack)
