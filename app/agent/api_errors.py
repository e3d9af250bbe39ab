"""The Anthropic API's errors in words: what survived the SDK's retries, said clearly and
without secrets; an overload inside a streamed 200, which the loop retries itself."""

from __future__ import annotations

import anthropic

from app.log import redact


def overloaded_mid_stream(error: anthropic.APIStatusError) -> bool:
    body = error.body if isinstance(error.body, dict) else {}
    kind = (body.get("error") or {}).get("type") if isinstance(body.get("error"), dict) else None
    return error.status_code == 200 and kind in ("overloaded_error", "api_error")


_STATUS_NAMES = {
    400: "rejected the request",
    401: "rejected the API key",
    402: "needs billing set up",
    403: "refused access",
    404: "did not find the model or endpoint",
    408: "timed out",
    413: "found the request too large",
    429: "rate limited",
    500: "internal error",
    529: "overloaded",
}


def describe_api_error(error: anthropic.APIError) -> str:
    """A clear, secret-free message for an error that survived the SDK's retries."""
    attempts = _attempts(error)
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        kind, detail = _error_body(error.body)
        if status == 200:  # an error event inside a stream
            return f"Anthropic API stream failed ({kind or 'error'}): {detail}".rstrip(": ")
        name = _STATUS_NAMES.get(status) or ("server error" if status >= 500 else "request error")
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"Anthropic API {name} ({status}){tries}"
        return redact(f"{message}: {detail}" if detail and status < 500 else message)
    if isinstance(error, anthropic.APITimeoutError):
        return f"Anthropic API timed out after {_plural(attempts, 'attempt')}"
    if isinstance(error, anthropic.APIConnectionError):
        return f"could not reach the Anthropic API after {_plural(attempts, 'attempt')}"
    return f"Anthropic API error: {type(error).__name__}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _error_body(body: object) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("type") or ""), str(error.get("message") or "")[:300]
    return "", ""


def _attempts(error: anthropic.APIError) -> int:
    """How many requests were made: the SDK numbers its retries in the last one's header."""
    try:
        return int(error.request.headers.get("x-stainless-retry-count", "0")) + 1
    except (ValueError, RuntimeError, AttributeError):
        return 1
