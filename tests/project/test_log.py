"""Structured logs: JSON lines with run and delivery ids; secrets and tokens redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.log import REDACTED, configure_logging, log_context, redact


@pytest.fixture
def json_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_run_and_delivery_ids(json_stream: io.StringIO) -> None:
    with log_context(run_id=7, delivery_id="abc-123"):
        logging.getLogger("app.test").info("hello %s", "world")
    logging.getLogger("app.test").info("outside")
    first, second = lines(json_stream)
    assert first["message"] == "hello world"
    assert first["run_id"] == 7 and first["delivery_id"] == "abc-123"
    assert first["level"] == "INFO"
    assert second["run_id"] is None


def test_tokens_of_any_length_are_redacted(json_stream: io.StringIO) -> None:
    long_token = "ghs_" + "A1b2" * 30  # newer installation tokens are longer than 40 chars
    logging.getLogger("app.test").info(
        "cloning with %s and xoxb-123-456-abc and sk-ant-api03-xyz", long_token
    )
    message = str(lines(json_stream)[0]["message"])
    assert "A1b2" not in message and "xoxb-123" not in message and "sk-ant-api03" not in message
    assert message.count(REDACTED) == 3


def test_registered_secrets_and_tracebacks_are_redacted(json_stream: io.StringIO) -> None:
    redact.add("a-registered-secret-value")
    try:
        raise RuntimeError("failed with a-registered-secret-value inside")
    except RuntimeError:
        logging.getLogger("app.test").exception("boom")
    record = lines(json_stream)[0]
    assert "a-registered-secret-value" not in json.dumps(record)
    assert REDACTED in str(record.get("exc_info", "")) + str(record["message"])


def test_basic_auth_and_headers_are_redacted() -> None:
    assert "hunter2" not in redact("https://x-access-token:hunter2@github.com/o/r.git")
    assert "abc.def" not in redact("Authorization: Bearer abc.def")
