"""SlackNotifier against the fake Slack Web API: threads, edits, outages, rate limits, logs."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.config import Settings
from app.models import SlackThread
from app.slack import blocks
from app.slack.notify import SlackNotifier
from tests.fakes.slack import CHANNEL_ID, FAKE_TOKEN, FakeSlack

LOGGER = "app.slack.notify"


@pytest.fixture
def settings(base_settings: Settings, fake_slack: FakeSlack) -> Settings:
    return fake_slack.settings(base_settings)


@pytest.fixture
async def notifier(settings: Settings) -> AsyncIterator[SlackNotifier]:
    notifier = SlackNotifier(settings.slack)
    yield notifier
    await notifier.close()


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


def root_message() -> tuple[str, list[dict[str, object]]]:
    return blocks.run_started(
        blocks.Headline(
            repo="octo/widgets",
            issue_number=12,
            issue_title="Crash on empty config",
            issue_url="https://github.com/octo/widgets/issues/12",
            requested_by="alice",
            run_id=42,
        )
    )


async def test_thread_started_and_replies_land_in_it(
    notifier: SlackNotifier, fake_slack: FakeSlack
) -> None:
    text, root_blocks = root_message()
    thread = await notifier.start_thread(channel=None, text=text, blocks=root_blocks)
    assert thread is not None
    channel, ts = thread
    assert channel == CHANNEL_ID  # "#honk" from the settings, resolved to its id by Slack
    progress_text, progress_blocks = blocks.run_progress("Cloned octo/widgets")
    first = await notifier.reply(thread, text=progress_text, blocks=progress_blocks)
    second = await notifier.reply(thread, text="Opened PR #34")
    assert first and second and first != second

    (root,) = [m for m in fake_slack.messages(channel) if m.thread_ts is None]
    assert root.ts == ts and root.blocks == root_blocks and root.text == text
    replies = fake_slack.messages(channel, thread_ts=ts)
    assert [m.ts for m in replies] == [first, second]
    assert replies[0].blocks == progress_blocks
    assert replies[1].text == "Opened PR #34" and replies[1].blocks is None
    assert all(c.token == FAKE_TOKEN for c in fake_slack.calls)


async def test_root_is_updated_in_place(notifier: SlackNotifier, fake_slack: FakeSlack) -> None:
    text, root_blocks = root_message()
    thread = await notifier.start_thread(channel=None, text=text, blocks=root_blocks)
    assert thread is not None
    _channel, ts = thread
    headline = blocks.Headline(
        repo="octo/widgets",
        issue_number=12,
        issue_title="Crash on empty config",
        issue_url="https://github.com/octo/widgets/issues/12",
        requested_by="alice",
        run_id=42,
    )
    new_text, new_blocks = blocks.root_updated(headline, status="running")
    assert await notifier.update(thread, text=new_text, blocks=new_blocks) is True
    (root,) = fake_slack.messages()
    assert root.ts == ts and root.edits == 1
    assert root.text == new_text and root.blocks == new_blocks
    assert fake_slack.methods() == ["chat.postMessage", "chat.update"]


async def test_update_of_a_missing_message_returns_false_and_warns(
    notifier: SlackNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    ok = await notifier.update(SlackThread(CHANNEL_ID, "1.000001"), text="x", blocks=[])
    assert ok is False
    assert warnings_logged(caplog) == ["Slack chat.update failed: message_not_found (HTTP 200)"]


async def test_post_goes_to_the_given_or_the_default_channel(
    notifier: SlackNotifier, fake_slack: FakeSlack
) -> None:
    default_ts = await notifier.post(channel=None, text="installed")
    other_ts = await notifier.post(channel="C0OTHER001", text="CI passed", blocks=None)
    assert [(m.channel, m.ts, m.thread_ts) for m in fake_slack.messages()] == [
        (CHANNEL_ID, default_ts, None),
        ("C0OTHER001", other_ts, None),
    ]
    assert fake_slack.calls[0].params["unfurl_links"] is False


async def test_disabled_without_settings_logs_once_and_calls_nothing(
    base_settings: Settings, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = base_settings.with_overrides(slack_api_url=fake_slack.url)
    notifier = SlackNotifier(settings.slack)
    assert notifier.enabled is False
    assert await notifier.start_thread(channel="C0HONK0001", text="x", blocks=[]) is None
    assert await notifier.reply(SlackThread(CHANNEL_ID, "1.1"), text="x") is None
    assert await notifier.update(SlackThread(CHANNEL_ID, "1.1"), text="x", blocks=[]) is False
    assert await notifier.post(channel=CHANNEL_ID, text="x") is None
    await notifier.close()
    records = [r for r in caplog.records if r.name.startswith(("app.", "slack_sdk"))]
    assert len(records) == 1
    assert "Slack notifications are off" in records[0].getMessage()
    assert fake_slack.calls == []


async def test_slack_down_never_raises_and_warns_once_per_call(
    notifier: SlackNotifier, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.down = True
    assert await notifier.start_thread(channel=None, text="x", blocks=[]) is None
    assert warnings_logged(caplog) == ["Slack chat.postMessage failed: HTTP 503"]
    # slack_sdk's server-error handler retried once.
    assert [c.status for c in fake_slack.calls] == [503, 503]
    assert fake_slack.messages() == []


async def test_unreachable_slack_never_raises(
    base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = base_settings.with_overrides(
        slack_bot_token=FAKE_TOKEN,
        slack_channel="#honk",
        slack_api_url=f"http://127.0.0.1:{port}/api/",
    )
    notifier = SlackNotifier(settings.slack)
    try:
        assert await notifier.reply(SlackThread(CHANNEL_ID, "1.1"), text="x") is None
    finally:
        await notifier.close()
    (warning,) = warnings_logged(caplog)
    assert warning.startswith("Slack chat.postMessage failed: ClientConnectorError")


async def test_rate_limit_is_retried_after_retry_after(
    notifier: SlackNotifier, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.rate_limit_next(1, retry_after=0)
    ts = await notifier.post(channel=None, text="hello")
    assert ts is not None
    assert [c.status for c in fake_slack.calls] == [429, 200]
    assert [m.ts for m in fake_slack.messages()] == [ts]
    assert warnings_logged(caplog) == []


async def test_rate_limit_that_persists_gives_up_with_a_warning(
    notifier: SlackNotifier, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.rate_limit_next(10, retry_after=0)
    assert await notifier.update(SlackThread(CHANNEL_ID, "1.1"), text="x", blocks=[]) is False
    assert [c.status for c in fake_slack.calls] == [429, 429, 429]
    assert warnings_logged(caplog) == ["Slack chat.update failed: ratelimited (HTTP 429)"]


async def test_token_never_appears_in_logs(
    settings: Settings, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # slack_sdk logs requests and responses at DEBUG
    caplog.set_level(logging.DEBUG, logger="slack_sdk")  # even after configure_logging quietened it
    notifier = SlackNotifier(settings.slack)
    try:
        thread = await notifier.start_thread(channel=None, text="x", blocks=[])
        assert thread is not None
        await notifier.update(SlackThread(thread[0], "9.9"), text="y", blocks=[])
        fake_slack.down = True
        await notifier.reply(thread, text="z")
        fake_slack.down = False
        wrong = SlackNotifier(
            settings.with_overrides(slack_bot_token="xoxb-wrong-0000-secret").slack
        )
        assert await wrong.post(channel=None, text="x") is None
        await wrong.close()
    finally:
        await notifier.close()
    assert warnings_logged(caplog)[-1] == "Slack chat.postMessage failed: invalid_auth (HTTP 200)"
    assert any(r.name.startswith("slack_sdk") for r in caplog.records)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert FAKE_TOKEN not in logged
    assert "xoxb-wrong-0000-secret" not in logged


async def test_a_client_passed_in_is_used_and_left_open(
    base_settings: Settings, fake_slack: FakeSlack
) -> None:
    client = AsyncWebClient(token=FAKE_TOKEN, base_url=fake_slack.url)
    notifier = SlackNotifier(base_settings.slack, client=client)
    assert notifier.enabled is True
    thread = await notifier.start_thread(channel="#honk", text="x", blocks=[])
    assert thread is not None and thread[0] == CHANNEL_ID
    await notifier.close()
    assert (await client.auth_test())["user_id"] == "U0HONKBOT"


async def test_fake_speaks_the_web_api(fake_slack: FakeSlack) -> None:
    """The fake's other methods, as slack_sdk calls them (JSON, GET params and form bodies)."""
    client = AsyncWebClient(token=FAKE_TOKEN, base_url=fake_slack.url)
    posted = await client.chat_postMessage(channel="#honk", text="root")
    user = (await client.users_info(user="U0ALICE"))["user"]
    assert user["profile"]["email"] == "alice@example.com"
    found = await client.users_lookupByEmail(email="BOB@example.com")
    assert found["user"]["id"] == "U0BOB"
    link = await client.chat_getPermalink(channel=CHANNEL_ID, message_ts=posted["ts"])
    assert link["permalink"].endswith(posted["ts"].replace(".", ""))
    info = await client.conversations_info(channel=CHANNEL_ID)
    assert info["channel"]["name"] == "honk"
    ephemeral = await client.chat_postEphemeral(channel=CHANNEL_ID, user="U0ALICE", text="psst")
    assert fake_slack.ephemeral[0].ts == ephemeral["message_ts"]
    assert fake_slack.ephemeral[0].user == "U0ALICE"
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Honk"}, "blocks": []}
    opened = await client.views_open(trigger_id="123.456", view=view)
    assert opened["view"]["type"] == "modal" and fake_slack.views == [view]
    # A form body with the token in it, blocks as a JSON string, as older clients send.
    form = await AsyncWebClient(base_url=fake_slack.url).api_call(
        "chat.postMessage",
        data={"token": FAKE_TOKEN, "channel": CHANNEL_ID, "blocks": "[]", "text": "form"},
    )
    assert fake_slack.messages()[-1].ts == form["ts"]
    assert fake_slack.messages()[-1].blocks is None

    with pytest.raises(SlackApiError) as missing:
        await client.users_lookupByEmail(email="nobody@example.com")
    assert missing.value.response["error"] == "users_not_found"
    with pytest.raises(SlackApiError) as no_token:
        await AsyncWebClient(base_url=fake_slack.url).auth_test()
    assert no_token.value.response["error"] == "not_authed"
    fake_slack.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError) as injected:
        await client.chat_postMessage(channel=CHANNEL_ID, text="x")
    assert injected.value.response["error"] == "not_in_channel"
    assert (await client.chat_postMessage(channel=CHANNEL_ID, text="x"))["ok"] is True
