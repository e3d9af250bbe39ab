"""Who a GitHub user is, as Honk tells them apart: a bot or a person."""

from __future__ import annotations

from collections.abc import Mapping


def is_bot(user: Mapping[str, object]) -> bool:
    """A GitHub App or another bot (Honk's own included): a bot never starts or steers a run.

    `user` is a user object of a payload or the REST API (`sender`, a comment's `user`).
    """
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")
