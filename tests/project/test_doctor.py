"""`honk doctor` against healthy and broken fakes: one line per check, exit status on failure."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from app.cli.doctor import doctor_command, run_doctor
from app.cli.doctor_check import SLACK_TEST_MESSAGE, unreachable
from app.config import Settings
from tests.conftest import new_private_key
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.fakes.slack import FakeSlack

ORG = "octo-org"
REPO = f"{ORG}/widgets"


@pytest.fixture
def healthy(
    base_settings: Settings,
    fake_github: FakeGitHub,
    fake_slack: FakeSlack,
    fake_anthropic: FakeAnthropic,
) -> Settings:
    fake_github.add_repo(REPO)
    fake_github.add_repo(f"{ORG}/gadgets")
    fake_github.add_installation(9001, account=ORG, repos=[REPO])
    return fake_slack.settings(
        base_settings.with_overrides(
            github_api_url=fake_github.url,
            anthropic_base_url=fake_anthropic.url,
            honk_url="https://honk.example.com",
            github_client_id=fake_github.oauth_client_id,
            github_client_secret=fake_github.oauth_client_secret,
            session_key=Fernet.generate_key().decode(),
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
    healthy: Settings, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    status, lines = await doctor(healthy)
    assert status == 0, lines
    assert all(entry.startswith("✓ ") for entry in lines), lines
    assert "RSA 2048 bits" in line(lines, "private key")
    assert "honk-test (id 4242)" in line(lines, "GitHub App")
    assert line(lines, f"installation 9001 ({ORG})").endswith(f"selected: 1 repository: {REPO}")
    assert line(lines, "webhook secret")
    assert (
        line(lines, "HONK_URL")
        == "✓ HONK_URL: run pages at https://honk.example.com/runs (not fetched)"
    )
    assert (
        line(lines, "sign-in")
        == "✓ sign-in: client Iv1.fakeclient0001 (the App's own); sessions keyed"
    )
    assert f"model {healthy.agent.model}" in line(lines, "Anthropic")
    assert fake_anthropic.count_token_requests[0]["model"] == healthy.agent.model
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


async def test_channel_the_bot_cannot_post_to(healthy: Settings, fake_slack: FakeSlack) -> None:
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    status, lines = await doctor(healthy)
    assert status == 1
    assert line(lines, "Slack").startswith("✓")
    assert line(lines, "Slack channel") == "✗ Slack channel: cannot post to #honk: not_in_channel"


async def test_suspended_installation_and_no_slack(
    healthy: Settings, fake_github: FakeGitHub
) -> None:
    fake_github.installations[9001]["suspended_at"] = "2024-01-01T00:00:00Z"
    status, lines = await doctor(healthy.with_overrides(slack_bot_token=None))
    assert status == 1
    assert "suspended" in line(lines, f"installation 9001 ({ORG})")
    assert line(lines, "Slack").startswith("- ")  # optional: skipped, not failed


async def test_unconfigured_github_and_no_installations(
    base_settings: Settings, fake_github: FakeGitHub, fake_anthropic: FakeAnthropic
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
        cwd=Path(__file__).parents[2],
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_cli_healthy_exits_zero(healthy: Settings, tmp_path: Path) -> None:
    env_file = tmp_path / "doctor.env"
    assert (
        healthy.github.private_key and healthy.agent.anthropic_base_url and healthy.slack.bot_token
    )
    env_file.write_text(
        f"APP_ID={healthy.github.app_id}\n"
        f'PRIVATE_KEY="{healthy.github.private_key.strip().replace(chr(10), chr(92) + "n")}"\n'
        f"WEBHOOK_SECRET={healthy.github.webhook_secret}\n"
        f"GITHUB_API_URL={healthy.github.api_url}\n"
        f"ANTHROPIC_API_KEY={healthy.agent.anthropic_api_key}\n"
        f"ANTHROPIC_BASE_URL={healthy.agent.anthropic_base_url}\n"
        f"SLACK_BOT_TOKEN={healthy.slack.bot_token}\nSLACK_CHANNEL=#honk\n"
        f"SLACK_API_URL={healthy.slack.api_url}\nHONK_DATA_DIR={tmp_path / 'data'}\n"
        f"HONK_URL={healthy.web.url}\nGITHUB_CLIENT_ID={healthy.github.client_id}\n"
        f"GITHUB_CLIENT_SECRET={healthy.github.client_secret}\n"
        f"HONK_SESSION_KEY={healthy.web.session_key}\n"
    )
    status, out = await run_cli(env_file)
    assert status == 0, out
    assert len(out.splitlines()) == 12 and out.count("✓ ") == 12


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


async def test_warnings_are_marked_and_do_not_fail(healthy: Settings) -> None:
    status, lines = await doctor(
        healthy.with_overrides(
            webhook_secret="zq9", honk_url=None, github_client_id=None, github_client_secret=None
        )
    )
    assert status == 0, lines  # Honk runs, with less
    assert line(lines, "webhook secret").startswith(
        "! webhook secret: WEBHOOK_SECRET is short (3 characters): whoever guesses it can send "
        "Honk webhooks; set it to 20 or more random characters"
    )
    assert line(lines, "HONK_URL").startswith(
        "! HONK_URL: not set: comments and Slack messages carry no links to run pages"
    )
    assert line(lines, "sign-in") == (
        "! sign-in: GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET are not set: run pages answer "
        "503 and nobody can sign in; Honk's set-up writes them into .env, or copy them from "
        "the GitHub App's settings"
    )
    assert line(lines, "GitHub App").startswith("✓")
    assert "zq9" not in "\n".join(lines)  # its length, never the secret

    status, lines = await doctor(
        healthy.with_overrides(webhook_secret="ab" * 12, honk_url="http://honk.example.com")
    )
    assert status == 0
    assert "is of only 2 distinct characters" in line(lines, "webhook secret")
    assert line(lines, "webhook secret").startswith("! ")
    assert line(lines, "HONK_URL").startswith("! HONK_URL: http://honk.example.com is plain http")
    local = await doctor(healthy.with_overrides(honk_url="http://127.0.0.1:3000"))
    assert line(local[1], "HONK_URL").startswith("✓")  # on one's own machine, http is fine

    status, lines = await doctor(healthy.with_overrides(session_key=None))
    assert status == 0
    assert line(lines, "sign-in").startswith("! sign-in: client Iv1.fakeclient0001 set; ")
    assert "HONK_SESSION_KEY is not" in line(lines, "sign-in")


async def test_half_a_sign_in_client_or_another_apps_fails(healthy: Settings) -> None:
    status, lines = await doctor(healthy.with_overrides(github_client_secret=None))
    assert status == 1
    assert line(lines, "sign-in").startswith(
        "✗ sign-in: GITHUB_CLIENT_SECRET is not set (GITHUB_CLIENT_ID is): run pages answer 503"
    )
    status, lines = await doctor(healthy.with_overrides(github_client_id="Iv1.someone-elses"))
    assert status == 1
    assert line(lines, "sign-in") == (
        "✗ sign-in: GITHUB_CLIENT_ID Iv1.someone-elses is not this App's client "
        "(Iv1.fakeclient0001): signing in would fail"
    )
    assert healthy.github.client_secret not in "\n".join(lines)


async def test_the_host_that_cannot_be_reached_is_named(healthy: Settings) -> None:
    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    status, lines = await doctor(
        healthy.with_overrides(
            github_api_url=f"http://{closed}",
            anthropic_base_url=f"http://{closed}",
            slack_api_url=f"http://{closed}/api/",
        )
    )
    assert status == 1
    assert line(lines, "GitHub App") == (
        f"✗ GitHub App: cannot reach {closed} (GITHUB_API_URL): Connection refused"
    )
    assert line(lines, "Anthropic") == (
        f"✗ Anthropic: cannot reach {closed} (ANTHROPIC_BASE_URL): Connection refused"
    )
    assert (
        line(lines, "Slack")
        == f"✗ Slack: cannot reach {closed} (SLACK_API_URL): Connection refused"
    )


def test_unreachable_reads_the_reason_behind_the_exception() -> None:
    """A name that does not resolve: the resolver's words, however deep the cause."""
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as cause:
            raise RuntimeError("the client gave up") from cause
    except RuntimeError as exc:
        assert unreachable(exc) == "Name or service not known"
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 1)"),
    )
    assert unreachable(refused) == "Connection refused"
    assert unreachable(ValueError("not about the network")) is None


async def test_without_a_unicode_terminal_the_marks_are_words(healthy: Settings) -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    weak = healthy.with_overrides(webhook_secret="short-secret", honk_url=None)
    status = await run_doctor(weak, out)
    out.flush()
    lines = raw.getvalue().decode().splitlines()
    assert status == 0
    assert line_named(lines, "webhook secret").startswith("warn webhook secret: ")
    assert line_named(lines, "private key").startswith("ok private key: ")


def line_named(lines: list[str], name: str) -> str:
    found = [entry for entry in lines if entry.split(" ", 1)[1].startswith(f"{name}:")]
    assert len(found) == 1, lines
    return found[0]
