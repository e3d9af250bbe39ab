"""What a Slack request says: commands, repositories, Slack's markup, titles."""

from __future__ import annotations

import pytest

from app.handlers.slack.parsing import (
    Command,
    issue_body,
    issue_title,
    parse_command,
    slack_to_plain,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("octo-org/calc fix the crash", Command("ask", "octo-org/calc", "fix the crash")),
        ("fix the crash in octo-org/calc.", Command("ask", "octo-org/calc", "fix the crash")),
        ("Fix it on octo-org/my.repo", Command("ask", "octo-org/my.repo", "Fix it")),
        (
            "https://github.com/octo-org/calc.git make add() add",
            Command("ask", "octo-org/calc", "make add() add"),
        ),
        ("fix the login crash", Command("ask", None, "fix the login crash")),
        ("octo-org/calc", Command("ask", "octo-org/calc", "")),
        ("repo octo-org/calc", Command("repo", "octo-org/calc", action="set")),
        ("repo", Command("repo", action="show")),
        ("repo clear", Command("repo", action="clear")),
        ("repo is broken, fix it", Command("ask", None, "repo is broken, fix it")),
        # Connecting GitHub is signing in with GitHub: whatever follows `link` is ignored.
        ("link", Command("link")),
        ("link @carol", Command("link")),
        ("connect", Command("link")),
        ("unlink", Command("unlink")),
        ("disconnect", Command("unlink")),
        ("", Command("help")),
        ("help", Command("help")),
    ],
)
def test_parse_command(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


def test_slack_markup_becomes_plain_text() -> None:
    raw = (
        "<@U0HONKBOT> fix <https://github.com/o/r|o/r> &amp; tell <@U0BOB|bob> in "
        "<#C0HONK0001|honk>, <!here> <https://example.com/a|the docs> &lt;3"
    )
    assert slack_to_plain(raw, "U0HONKBOT") == (
        "fix o/r & tell @bob in #honk, @here the docs (https://example.com/a) <3"
    )
    assert slack_to_plain("hey <@U0HONKBOT> please fix it", "U0HONKBOT") == "hey please fix it"


def test_issue_title_and_body() -> None:
    assert issue_title("fix the crash\nmore detail") == "fix the crash"
    long = issue_title("x" * 200)
    assert len(long) == 80 and long.endswith("…")
    body = issue_body("fix it", "alice", "https://t.slack.com/archives/C1/p1")
    assert body.startswith("fix it") and "[in Slack](https://t.slack.com/archives/C1/p1)" in body
    assert "@alice" in body
