"""app/errors.py: one root for Honk's errors; a run's expected failures carry their message."""

from __future__ import annotations

from app.errors import HonkError, RunFailure
from app.log import describe_error
from app.runs.context import LimitStop, SetupFailed
from app.runs.texts import FailureDetails
from app.store.database import StoreError
from app.workspace.checkout import ChangeRefused, PushRefused
from app.workspace.git import GitError
from app.workspace.sandbox import SandboxUnavailable


def test_a_run_failure_is_shown_as_written_and_others_by_their_type() -> None:
    failure = RunFailure("the sandbox does not work here (no bwrap)\nmore for the log")
    assert failure.user_message.startswith("the sandbox does not work here")
    assert describe_error(failure) == "the sandbox does not work here (no bwrap)"
    assert describe_error(KeyError("issue")) == "KeyError: 'issue'"


def test_the_expected_failures_of_a_run_are_run_failures() -> None:
    details = FailureDetails("npm ci", "npm ERR! 404")
    setup = SetupFailed("setup command `npm ci` failed (exit 1)", details)
    assert isinstance(setup, RunFailure) and setup.details is details
    assert describe_error(setup) == "setup command `npm ci` failed (exit 1)"
    stop = LimitStop("the agent reached its 40 turns", 40)
    assert isinstance(stop, RunFailure) and stop.turns == 40
    assert stop.user_message == "the agent reached its 40 turns before any change was made"
    assert issubclass(ChangeRefused, RunFailure)


def test_honks_own_errors_share_a_root_and_stay_what_callers_catch() -> None:
    for error in (StoreError, GitError, SandboxUnavailable, PushRefused, RunFailure):
        assert issubclass(error, HonkError)
    for error in (StoreError, GitError, SandboxUnavailable, PushRefused):
        assert issubclass(error, RuntimeError)
    assert not issubclass(KeyError, HonkError)
