"""`honk doctor`'s checks of the services Honk talks to besides GitHub: Anthropic (a token
count) and Slack (auth.test, then a real message in the channel)."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.cli.doctor_check import (
    ANTHROPIC_API_URL,
    FAIL,
    PASS,
    SKIP,
    SLACK_TEST_MESSAGE,
    Check,
    host_and_setting,
    unreachable,
)
from app.config import AgentSettings, SlackSettings


async def check_anthropic(agent: AgentSettings) -> Check:
    """A token count: authenticated and free, and it also proves the model name exists."""
    if not agent.anthropic_api_key:
        return Check("Anthropic", FAIL, "ANTHROPIC_API_KEY is not set")
    client = anthropic.AsyncAnthropic(
        api_key=agent.anthropic_api_key,
        base_url=agent.anthropic_base_url,
        max_retries=1,
        timeout=anthropic.Timeout(30.0, connect=10.0),
    )
    try:
        counted = await client.messages.count_tokens(
            model=agent.model, messages=[{"role": "user", "content": "honk doctor"}]
        )
    except anthropic.APIStatusError as exc:
        return Check("Anthropic", FAIL, f"HTTP {exc.status_code}: {_anthropic_reason(exc)}")
    except anthropic.APIConnectionError as exc:
        where = host_and_setting(
            agent.anthropic_base_url or ANTHROPIC_API_URL, "ANTHROPIC_BASE_URL"
        )
        why = unreachable(exc) or type(exc).__name__
        return Check("Anthropic", FAIL, f"cannot reach {where}: {why}")
    finally:
        await client.close()
    return Check(
        "Anthropic",
        PASS,
        f"key accepted; model {agent.model} counted {counted.input_tokens} tokens",
    )


def _anthropic_reason(exc: anthropic.APIStatusError) -> str:
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    kind, message = error.get("type"), error.get("message")
    return f"{kind}: {message}" if kind and message else str(exc.message)


async def check_slack(slack: SlackSettings, session: aiohttp.ClientSession) -> list[Check]:
    """auth.test, then a real chat.postMessage: only posting proves the bot can post there
    (the chat:write scope, channel membership, an archived or misspelt channel)."""
    if not slack.bot_token:
        return [Check("Slack", SKIP, "SLACK_BOT_TOKEN is not set: notifications are off")]
    client = AsyncWebClient(
        token=slack.bot_token, base_url=slack.api_url, session=session, timeout=20
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return [Check("Slack", FAIL, f"auth.test failed: {_slack_reason(exc)}")]
    checks = [Check("Slack", PASS, f"auth.test passed: @{auth.get('user')} in {auth.get('team')}")]
    channel = slack.channel
    if not channel:
        checks.append(Check("Slack channel", FAIL, "SLACK_CHANNEL is not set"))
        return checks
    try:
        await client.chat_postMessage(channel=channel, text=SLACK_TEST_MESSAGE)
    except SlackApiError as exc:
        checks.append(
            Check("Slack channel", FAIL, f"cannot post to {channel}: {_slack_reason(exc)}")
        )
        return checks
    checks.append(Check("Slack channel", PASS, f"posted a test message to {channel}"))
    return checks


def _slack_reason(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return str(code or f"HTTP {getattr(exc.response, 'status_code', '?')}")
