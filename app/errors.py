"""Honk's own errors: one root, and the failure of a run whose message people are shown."""

from __future__ import annotations


class HonkError(Exception):
    """The root of the errors Honk raises on purpose (never a library's)."""


class RunFailure(HonkError):
    """An expected end of a run: a setup that failed, a sandbox that does not work, a
    `.github/honk.yml` that is not valid, an agent that gave up.

    `user_message` is what people are shown (the tracking comment, Slack, the run page) as it
    is written; `details` say more where there is more (what a failed setup printed). Nothing
    in Honk is broken, so the worker logs it without a traceback.
    """

    def __init__(self, user_message: str, *, details: object | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.details = details
