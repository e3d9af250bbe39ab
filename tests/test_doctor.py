"""`honk doctor` against healthy and broken fakes: one line per check, exit status on failure."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli.doctor import SLACK_TEST_MESSAGE, doctor_command, run_doctor
from app.config import Settings
from tests.conftest import new_private_key

ORG = "octo-org"
REPO = f"{ORG}/widgets"


@pytest.fixture
def healthy(
    base_settings: Settings, fake_github: Any, fake_slack: Any, fake_anthropic: Any
) -> Settings:
    fake_github.add_repo(REPO)
    fake_github.add_repo(f"{ORG}/gadgets")
    fake_github.add_installation(9001, account=ORG, repos=[REPO])
    return fake_slack.settings(
        base_settings.with_overrides(
            github_api_url=fake_github.url, anthropic_base_url=fake_anthropic.url
        )
    )


async def doctor(settings: Settings) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = await run_doctor(settings, out)
    return status, out.getvalue().splitlines()


def line(lines: list[str], name: str) -> str:
    found = [entry for entry in lines if entry[2:].startswith(f"{name}:")]
    assert len(found) == 1, lines
    return found[0]


async def test_healthy_configuration_passes_every_check(
    healthy: Settings, fake_slack: Any, fake_anthropic: Any
) -> None:
    status, lines = await doctor(healthy)
    assert status == 0, lines
    assert all(entry.startswith("✓ ") for entry in lines), lines
    assert "RSA 2048 bits" in line(lines, "private key")
    assert "honk-test (id 4242)" in line(lines, "GitHub App")
    assert line(lines, f"installation 9001 ({ORG})").endswith(f"selected: 1 repository: {REPO}")
    assert line(lines, "webhook secret")
    assert f"model {healthy.model}" in line(lines, "Anthropic")
    assert fake_anthropic.count_token_requests[0]["model"] == healthy.model
    assert "auth.test passed" in line(lines, "Slack")
    assert line(lines, "Slack channel")
    assert [m.text for m in fake_slack.messages("#honk")] == [SLACK_TEST_MESSAGE]
    assert "bwrap" in line(lines, "sandbox")
    # This machine (root, cgroup v1's pids hierarchy writable) caps with a cgroup.
    assert "processes capped by a pids cgroup" in line(lines, "sandbox")
    # ... and a memory cgroup of its own (v1's memory hierarchy) holds each command whole.
    assert (
        "memory capped by a memory cgroup (v1) per command: 4,096 MiB for all its processes "
        "together, no swap"
    ) in line(lines, "sandbox")
    assert "schema up to date" in line(lines, "store")


async def test_wrong_key_is_refused_by_github(healthy: Settings) -> None:
    status, lines = await doctor(healthy.with_overrides(private_key=new_private_key()))
    assert status == 1
    assert line(lines, "private key").startswith("✓")  # it parses; GitHub refuses it
    refused = line(lines, "GitHub App")
    assert refused.startswith("✗") and "refused the JWT" in refused and "401" in refused
    assert line(lines, "installations").startswith("- ")


async def test_slack_invalid_auth_and_anthropic_401(healthy: Settings) -> None:
    broken = healthy.with_overrides(
        slack_bot_token="xoxb-0000-not-the-token", anthropic_api_key="sk-ant-wrong-key-42"
    )
    status, lines = await doctor(broken)
    assert status == 1
    assert line(lines, "Slack") == "✗ Slack: auth.test failed: invalid_auth"
    anthropic_line = line(lines, "Anthropic")
    assert anthropic_line.startswith("✗") and "HTTP 401" in anthropic_line
    assert "authentication_error" in anthropic_line
    assert line(lines, "GitHub App").startswith("✓")  # the rest still checked
    text = "\n".join(lines)
    assert "sk-ant-wrong-key-42" not in text and "not-the-token" not in text


async def test_channel_the_bot_cannot_post_to(healthy: Settings, fake_slack: Any) -> None:
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    status, lines = await doctor(healthy)
    assert status == 1
    assert line(lines, "Slack").startswith("✓")
    assert line(lines, "Slack channel") == "✗ Slack channel: cannot post to #honk: not_in_channel"


async def test_suspended_installation_and_no_slack(healthy: Settings, fake_github: Any) -> None:
    fake_github.installations[9001]["suspended_at"] = "2024-01-01T00:00:00Z"
    status, lines = await doctor(healthy.with_overrides(slack_bot_token=None))
    assert status == 1
    assert "suspended" in line(lines, f"installation 9001 ({ORG})")
    assert line(lines, "Slack").startswith("- ")  # optional: skipped, not failed


async def test_unconfigured_github_and_no_installations(
    base_settings: Settings, fake_github: Any, fake_anthropic: Any
) -> None:
    status, lines = await doctor(
        base_settings.with_overrides(
            app_id=None,
            private_key=None,
            webhook_secret=None,
            anthropic_base_url=fake_anthropic.url,
        )
    )
    assert status == 1
    assert "honk serve" in line(lines, "private key")
    assert line(lines, "GitHub App").startswith("- ")
    assert line(lines, "webhook secret").startswith("✗")

    status, lines = await doctor(
        base_settings.with_overrides(
            github_api_url=fake_github.url, anthropic_base_url=fake_anthropic.url
        )
    )
    assert status == 1
    assert "installations/new" in line(lines, "installations")


async def run_cli(env_file: Path) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(env_file.parent), "LANG": "C.UTF-8"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "--env-file",
        str(env_file),
        "doctor",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_cli_healthy_exits_zero(healthy: Settings, tmp_path: Path) -> None:
    env_file = tmp_path / "doctor.env"
    assert healthy.private_key and healthy.anthropic_base_url and healthy.slack_bot_token
    env_file.write_text(
        f"APP_ID={healthy.app_id}\n"
        f'PRIVATE_KEY="{healthy.private_key.strip().replace(chr(10), chr(92) + "n")}"\n'
        f"WEBHOOK_SECRET={healthy.webhook_secret}\n"
        f"GITHUB_API_URL={healthy.github_api_url}\n"
        f"ANTHROPIC_API_KEY={healthy.anthropic_api_key}\n"
        f"ANTHROPIC_BASE_URL={healthy.anthropic_base_url}\n"
        f"SLACK_BOT_TOKEN={healthy.slack_bot_token}\nSLACK_CHANNEL=#honk\n"
        f"SLACK_API_URL={healthy.slack_api_url}\nHONK_DATA_DIR={tmp_path / 'data'}\n"
    )
    status, out = await run_cli(env_file)
    assert status == 0, out
    assert len(out.splitlines()) == 9 and out.count("✓ ") == 9


def test_broken_configuration_is_one_failed_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / "broken.env"
    env_file.write_text("APP_ID=12\nPRIVATE_KEY=not-a-key\n")
    out = io.StringIO()
    assert doctor_command(env_file, out) == 1
    assert out.getvalue() == "✗ configuration: PRIVATE_KEY is not a PEM private key\n"
