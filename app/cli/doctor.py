"""`honk doctor`: check a configuration for real, one line per check; non-zero exit on a failure.

The checks live by what they look at: doctor_github, doctor_web, doctor_services,
doctor_host; what they share (`Check`) in doctor_check."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from app.cli.doctor_check import CHECK_TIMEOUT, FAIL, MARKS, Check, host_and_setting, unreachable
from app.cli.doctor_github import check_private_key, check_webhook_secret, github_checks
from app.cli.doctor_host import check_sandbox, check_store, check_toolchains
from app.cli.doctor_services import check_anthropic, check_slack
from app.cli.doctor_web import check_honk_url, check_sign_in
from app.config import ConfigError, Settings
from app.log import configure_logging, redact


def doctor_command(env_file: str | Path | None, out: TextIO | None = None) -> int:
    """The CLI entry: settings from the environment and `env_file`, then every check."""
    out = out or sys.stdout
    try:
        settings = Settings.from_env(env_file=env_file)
    except ConfigError as exc:
        _print(out, Check("configuration", FAIL, str(exc)))
        return 1
    redact.add(*settings.secrets())
    # Warnings (a retried request) go to stderr, redacted; stdout holds only the checks.
    configure_logging("WARNING", "text")
    return asyncio.run(run_doctor(settings, out))


async def run_doctor(settings: Settings, out: TextIO) -> int:
    """Print every check in order, one line each; 0 when none failed (warnings pass), else 1."""
    failed = False

    def report(check: Check) -> None:
        nonlocal failed
        failed = failed or check.status == FAIL
        _print(out, check)

    github_api = host_and_setting(settings.github.api_url, "GITHUB_API_URL")
    slack_api = host_and_setting(settings.slack.api_url, "SLACK_API_URL")
    app_info: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        report(check_private_key(settings.github))
        github_ok = settings.github.configured
        github = github_checks(settings, session, github_ok, app_info)
        for check in await _guarded("GitHub App", github, github_api):
            report(check)
        report(check_webhook_secret(settings.github))
        report(check_honk_url(settings.web))
        report(check_sign_in(settings, app_info.get("client_id")))
        report(await _one("Anthropic", check_anthropic(settings.agent)))
        for check in await _guarded("Slack", check_slack(settings.slack, session), slack_api):
            report(check)
        report(await _one("sandbox", check_sandbox(settings.sandbox)))
        report(await _one("toolchains", check_toolchains(settings.sandbox)))
        report(await _one("store", check_store(settings.store)))
    return 1 if failed else 0


def _print(out: TextIO, check: Check) -> None:
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "".join(MARKS.values()).encode(encoding)
        ascii_only = False
    except (LookupError, UnicodeEncodeError):
        ascii_only = True
    out.write(check.line(ascii_only) + "\n")
    out.flush()


async def _one(name: str, check: Awaitable[Check]) -> Check:
    return (await _guarded(name, _as_list(check)))[0]


async def _as_list(check: Awaitable[Check]) -> list[Check]:
    return [await check]


async def _guarded(name: str, checks: Awaitable[list[Check]], where: str = "") -> list[Check]:
    """A check that raises or hangs fails with the reason instead of stopping the doctor.

    `where`: the host the checks talk to and its setting, named when it cannot be reached.
    """
    try:
        return await asyncio.wait_for(checks, CHECK_TIMEOUT)
    except TimeoutError:
        late = f"{where} gave " if where else ""
        return [Check(name, FAIL, f"{late}no answer within {CHECK_TIMEOUT:.0f} s")]
    except Exception as exc:
        if where and (why := unreachable(exc)):
            return [Check(name, FAIL, f"cannot reach {where}: {why}")]
        return [Check(name, FAIL, f"{type(exc).__name__}: {exc}")]
