"""Structured logging: JSON off a terminal, run and delivery ids on each line, secrets redacted."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from slack_sdk.errors import SlackApiError

from app.errors import RunFailure

run_id_var: ContextVar[int | None] = ContextVar("run_id", default=None)
delivery_id_var: ContextVar[str | None] = ContextVar("delivery_id", default=None)

REDACTED = "[REDACTED]"

# Known token shapes, matched by prefix and alphabet, never by length: GitHub's
# installation tokens have grown past 40 characters and may grow again.
# TOKEN_SHAPES are secrets by their own look (the review looks for them in a change too).
TOKEN_SHAPES = [
    r"\bgh[pousr]_[A-Za-z0-9_]+",
    r"\bgithub_pat_[A-Za-z0-9_]+",
    r"\bxox[abposr]-[A-Za-z0-9-]+",
    r"\bxapp-[A-Za-z0-9-]+",
    r"\bsk-ant-[A-Za-z0-9_-]+",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",  # JWTs
]
_TOKEN_PATTERNS = [
    *TOKEN_SHAPES,
    r"(?i:(x-access-token:))[^@\s]+",
    r"(?i:(authorization:\s*(?:bearer|token|basic)\s+))\S+",
]


class Redactor:
    """Replaces registered secret values and anything shaped like a token."""

    # Tokens are minted every hour per repository; keep the newest few thousand so a
    # long-running service does not grow this forever (token shapes are caught by pattern).
    MAX_VALUES = 4096

    def __init__(self) -> None:
        self._values: dict[str, None] = {}
        self._pattern = re.compile("|".join(f"(?:{p})" for p in _TOKEN_PATTERNS))

    def add(self, *values: str | None) -> None:
        for value in values:
            # Very short values would redact ordinary words; real secrets are longer.
            for candidate in {value, value.strip()} if value else ():
                if len(candidate) >= 6:
                    self._values.pop(candidate, None)
                    self._values[candidate] = None
        while len(self._values) > self.MAX_VALUES:
            self._values.pop(next(iter(self._values)))

    def __call__(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return self._pattern.sub(_keep_prefix, text)


def _keep_prefix(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g]
    return (groups[0] if groups else "") + REDACTED


redact = Redactor()

# How long a failure described for people may be (a tracking comment line, a Slack reply).
DESCRIBE_LIMIT = 300


def describe_error(exc: BaseException) -> str:
    """A failure in a few words for people (and the store): never a secret, never long.

    A RunFailure's message is meant for people, and so are the sentences of Honk's
    RuntimeErrors, so those read as they are;
    anything else is named by its type too ("KeyError: 'issue'"). Slack's errors are its
    error code and HTTP status, never the request (which holds the message).
    """
    if isinstance(exc, SlackApiError):
        data = getattr(exc.response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        status = getattr(exc.response, "status_code", None) or getattr(exc.response, "status", "?")
        text = f"{code} (HTTP {status})" if code else f"HTTP {status}"
    elif isinstance(exc, TimeoutError):
        text = "no answer in time"
    else:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, RunFailure | RuntimeError) and message:
            text = message
        else:
            text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return redact(text)[:DESCRIBE_LIMIT]


class ContextFilter(logging.Filter):
    """Adds run_id/delivery_id and redacts the rendered message and its extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = run_id_var.get()
        if not hasattr(record, "delivery_id"):
            record.delivery_id = delivery_id_var.get()
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now so that it can be redacted too.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = []
        # ContextFilter sets both on every record it passes (None outside a run, a delivery).
        run_id = getattr(record, "run_id", None)
        delivery_id = getattr(record, "delivery_id", None)
        if run_id is not None:
            ids.append(f"run={run_id}")
        if delivery_id:
            ids.append(f"delivery={delivery_id}")
        return f"{base} [{' '.join(ids)}]" if ids else base


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Install one handler on the root logger; `fmt` auto picks JSON off a terminal."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not _isatty(stream))
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(run_id)s %(delivery_id)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_honk", False):
            root.removeHandler(old)
    handler._honk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter that would log request URLs and headers at DEBUG stays quiet.
    for noisy in ("httpx", "httpcore", "anthropic", "slack_sdk", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def log_context(run_id: int | None = None, delivery_id: str | None = None) -> Iterator[None]:
    # The stack resets what was set, last first, however the block ends.
    with contextlib.ExitStack() as stack:
        if run_id is not None:
            stack.callback(run_id_var.reset, run_id_var.set(run_id))
        if delivery_id is not None:
            stack.callback(delivery_id_var.reset, delivery_id_var.set(delivery_id))
        yield
