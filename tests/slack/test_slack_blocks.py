"""Block Kit builders: facts, links, buttons, escaping and Slack's size limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.models import RunState
from app.slack import blocks

ISSUE_URL = "https://github.com/octo/widgets/issues/12"
PR_URL = "https://github.com/octo/widgets/pull/34"


def texts(value: Any) -> Iterator[str]:
    """Every text string a Block Kit structure shows (button urls and values excluded)."""
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text"):
            yield value["text"]
        for key, item in value.items():
            if key not in ("url", "value"):
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def shown(message: tuple[str, list[dict[str, Any]]]) -> str:
    text, block_list = message
    return "\n".join([text, *texts(block_list)])


def buttons(block_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in block_list
        if block["type"] == "actions"
        for element in block["elements"]
    }


def started(buttons: bool = True, **changes: Any) -> tuple[str, list[dict[str, Any]]]:
    args: dict[str, Any] = {
        "repo": "octo/widgets",
        "issue_number": 12,
        "issue_title": "Crash on empty config",
        "issue_url": ISSUE_URL,
        "requested_by": "alice",
        "run_id": 42,
    }
    return blocks.run_started(blocks.Headline(**{**args, **changes}), buttons=buttons)


def test_run_started_shows_repo_issue_link_requester_and_status() -> None:
    text, block_list = started()
    everything = shown((text, block_list))
    assert f"<{ISSUE_URL}|octo/widgets#12>" in everything
    assert "Crash on empty config" in everything
    assert "*alice*" in everything
    assert "`octo/widgets`" in everything
    assert "*Queued*" in everything
    assert "octo/widgets#12" in text and "Queued" in text


def test_run_started_has_a_cancel_button_carrying_the_run_id() -> None:
    _, block_list = started()
    found = buttons(block_list)
    assert set(found) == {blocks.CANCEL_ACTION}
    assert found["honk_cancel"]["value"] == "42"
    assert found["honk_cancel"]["confirm"]["confirm"]["text"] == "Cancel run"


def test_buttons_can_be_left_out() -> None:
    _, block_list = started(buttons=False)
    assert buttons(block_list) == {}
    _, finished = blocks.run_finished(
        blocks.RunEnding(RunState.FAILED, error="boom"), run_id=42, buttons=False
    )
    assert all(block["type"] != "actions" for block in finished)


def test_user_text_is_escaped_everywhere() -> None:
    message = started(
        issue_title="Fix <script> & <!channel> <@U123|x>",
        requested_by="mallory <!here>",
    )
    everything = shown(message)
    assert "&lt;script&gt; &amp; &lt;!channel&gt; &lt;@U123|x&gt;" in everything
    assert "mallory &lt;!here&gt;" in everything
    for raw in ("<script>", "<!channel>", "<!here>", "<@U123", " & "):
        assert raw not in everything


def test_root_updated_shows_the_current_status_pr_and_reason() -> None:
    common = blocks.Headline(
        repo="octo/widgets",
        issue_number=12,
        issue_title="Crash",
        issue_url=ISSUE_URL,
        requested_by="alice",
        run_id=7,
    )
    working = shown(blocks.root_updated(common, status=RunState.RUNNING))
    assert "*Working*" in working
    text, done = blocks.root_updated(
        common, status=RunState.SUCCEEDED, pr=blocks.PullRef(PR_URL, 34, draft=True)
    )
    assert f"Draft pull request: <{PR_URL}|PR #34>" in shown((text, done))
    assert buttons(done)["honk_open_pr"]["url"] == PR_URL
    assert blocks.CANCEL_ACTION not in buttons(done)
    text, failed = blocks.root_updated(common, status="failed", error="tests <failed>")
    assert "*Failed*" in shown((text, failed))
    assert "*Reason:* tests &lt;failed&gt;" in shown((text, failed))
    assert buttons(failed)["honk_retry"]["value"] == "7"


def test_run_finished_success_links_the_pr_with_summary_and_usage() -> None:
    text, block_list = blocks.run_finished(
        blocks.RunEnding(
            RunState.SUCCEEDED,
            pr=blocks.PullRef(PR_URL, 34),
            summary="Guarded `load()` against an empty file & added a test.",
            usage_text="1,000 in / 200 out, $0.01",
        ),
        run_id=42,
    )
    assert f"<{PR_URL}|PR #34>" in text
    everything = shown((text, block_list))
    assert "*PR opened*" in everything
    assert "empty file &amp; added a test" in everything
    assert "1,000 in / 200 out" in everything
    found = buttons(block_list)
    assert set(found) == {blocks.OPEN_PR_ACTION}
    assert found["honk_open_pr"]["url"] == PR_URL
    assert found["honk_open_pr"]["value"] == "42"


def test_run_finished_failure_gives_the_reason_and_a_retry_button() -> None:
    text, block_list = blocks.run_finished(
        blocks.RunEnding("failed", error="Agent ran out of turns (40)"), run_id=9
    )
    assert "Failed" in text and "Agent ran out of turns (40)" in text
    assert "*Reason:* Agent ran out of turns (40)" in shown((text, block_list))
    assert buttons(block_list) == {
        "honk_retry": {
            "type": "button",
            "action_id": "honk_retry",
            "text": {"type": "plain_text", "text": "Retry", "emoji": True},
            "value": "9",
            "style": "primary",
        }
    }


def test_draft_pr_is_called_a_draft() -> None:
    text, _ = blocks.run_finished(
        blocks.RunEnding("succeeded", pr=blocks.PullRef(PR_URL, 34, draft=True))
    )
    assert "Draft PR opened" in text


def test_ci_result_lists_each_failed_check_with_its_link() -> None:
    text, block_list = blocks.ci_result(
        conclusion="failure",
        pr_url=PR_URL,
        pr_number=34,
        failed_checks=[
            ("lint", "https://github.com/octo/widgets/runs/1"),
            ("tests (3.11) <unit>", "https://github.com/octo/widgets/runs/2?a=1&b=2"),
        ],
        links=[("Build", "https://ci.example.com/b/5"), ("Preview", "https://pr-34.example.com")],
        repair_note="Honk will try a fix (round 1 of 2).",
    )
    everything = shown((text, block_list))
    assert ":x: *CI failed* on <https://github.com/octo/widgets/pull/34|PR #34>" in everything
    assert "• <https://github.com/octo/widgets/runs/1|lint>" in everything
    assert (
        "• <https://github.com/octo/widgets/runs/2?a=1&amp;b=2|tests (3.11) &lt;unit&gt;>"
        in everything
    )
    assert "<https://ci.example.com/b/5|Build> · <https://pr-34.example.com|Preview>" in everything
    assert ":wrench: Honk will try a fix (round 1 of 2)." in everything
    assert "lint" in text and "PR #34" in text


def test_ci_result_success_has_no_failed_section() -> None:
    text, block_list = blocks.ci_result(
        conclusion="success",
        pr_url=PR_URL,
        pr_number=34,
        failed_checks=[],
        links=[],
        repair_note=None,
    )
    assert text.startswith(":white_check_mark: CI passed")
    assert len(block_list) == 1
    assert "Failed checks" not in shown((text, block_list))


def test_ci_result_caps_a_long_list_of_failed_checks() -> None:
    checks = [(f"check-{i}-" + "x" * 200, f"https://ci.example.com/{i}") for i in range(40)]
    _, block_list = blocks.ci_result(
        conclusion="timed_out",
        pr_url=PR_URL,
        pr_number=34,
        failed_checks=checks,
        links=[],
        repair_note=None,
    )
    failed = block_list[1]["text"]["text"]
    assert len(failed) <= blocks.SECTION_LIMIT
    assert failed.splitlines()[-1].startswith("…and ")
    shown_count = failed.count("• <https://")
    assert failed.endswith(f"…and {40 - shown_count} more")
    assert block_list[0]["text"]["text"].startswith(":hourglass: *CI timed out*")


def test_unknown_ci_conclusion_is_named_not_dropped() -> None:
    text, _ = blocks.ci_result(
        conclusion="weird<state>",
        pr_url=None,
        pr_number=None,
        failed_checks=[],
        links=[],
        repair_note=None,
    )
    assert "CI: weird&lt;state&gt;" in text


def test_long_texts_stay_within_slack_limits_without_broken_entities() -> None:
    text, block_list = blocks.run_finished(
        blocks.RunEnding(
            "failed",
            pr=blocks.PullRef(PR_URL, 34),
            summary="&" * 5000,
            usage_text="u" * 4000,
            error="<" * 4000,
        ),
        run_id=1,
    )
    for shown_text in [text, *texts(block_list)]:
        assert len(shown_text) <= blocks.SECTION_LIMIT
    summary = block_list[1]["text"]["text"]
    assert summary.endswith("&amp;…")
    assert summary[:-1].replace("&amp;", "") == ""
    headline = block_list[0]["text"]["text"]
    assert f"<{PR_URL}|PR #34>" in headline  # the link survives clipping of the reason


def test_links_only_to_http_urls_and_never_break_the_link_syntax() -> None:
    assert blocks.link("javascript:alert(1)", "click") == "click"
    assert blocks.link(None, "a<b") == "a&lt;b"
    assert blocks.link("https://x.example/a|b>c", "l|m") == "<https://x.example/a%7Cb&gt;c|l¦m>"


def test_progress_is_one_escaped_line() -> None:
    text, block_list = blocks.run_progress("Running `pytest` <3 & more")
    assert text == "Running `pytest` &lt;3 &amp; more"
    assert block_list == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": ":small_blue_diamond: Running `pytest` &lt;3 &amp; more",
            },
        }
    ]


def test_installed_names_the_account_and_the_label() -> None:
    text, block_list = blocks.installed(account="octo <org>", repos_count=1, label="honk")
    everything = shown((text, block_list))
    assert "*octo &lt;org&gt;* (1 repository)" in everything
    assert "`honk` label" in everything
    text, _ = blocks.installed(account="octo", repos_count=None, label="honk")
    assert "all repositories" in text
