"""Slack's settings: the bot's token, the signing secret, the default channel, the API's URL."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.declare import Group, setting
from app.config.parse import SLACK_API_URL, optional_text, slashed_url


@dataclass(frozen=True)
class SlackSettings(Group):
    section = "Slack"

    bot_token: str | None = setting(
        "SLACK_BOT_TOKEN",
        optional_text,
        None,
        "the Slack app's *Bot User OAuth Token* (`xoxb-…`)",
        secret=True,
        flat="slack_bot_token",
    )
    signing_secret: str | None = setting(
        "SLACK_SIGNING_SECRET",
        optional_text,
        None,
        "*Basic Information → Signing Secret*: verifies every request from Slack",
        secret=True,
        flat="slack_signing_secret",
    )
    channel: str | None = setting(
        "SLACK_CHANNEL",
        optional_text,
        None,
        "where runs started on GitHub report (`#honk` or a channel id)",
        flat="slack_channel",
    )
    api_url: str = setting(
        "SLACK_API_URL",
        slashed_url,
        SLACK_API_URL,
        "the Slack Web API's base URL",
        flat="slack_api_url",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token and self.channel)
