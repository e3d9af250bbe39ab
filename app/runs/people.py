"""Who is who for a run: whose words may steer the agent, and who is credited as co-author."""

from __future__ import annotations

from typing import Any

from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.github.users import is_bot
from app.runs.follow_up import MaySteer

TRACKING_MARKER = "honk:run:"  # in Honk's own tracking comments


def write_access_check(gh: GitHubClient, repo: str) -> MaySteer:
    """A check, cached per person, that someone has write access (may steer the agent)."""
    allowed: dict[str, bool] = {}

    async def may_steer(login: str) -> bool:
        if login not in allowed:
            allowed[login] = bool(login) and await gh.can_write(repo, login)
        return allowed[login]

    return may_steer


async def writer_comments(
    gh: GitHubClient, repo: str, issue_number: int, may_steer: MaySteer
) -> list[dict[str, Any]]:
    """The issue's comments by people with write access: others' text must not steer."""
    kept = []
    for comment in await gh.issue_comments(repo, issue_number):
        user = comment.get("user") or {}
        if is_bot(user) or TRACKING_MARKER in comment.get("body", ""):
            continue
        if await may_steer(user.get("login", "")):
            kept.append(comment)
    return kept


async def co_author(
    gh: GitHubClient, github: GitHubApp, login: str | None
) -> tuple[str, str] | None:
    """(name, e-mail) for the `Co-authored-by:` trailer of the person who asked."""
    if not login:
        return None
    try:
        user = await gh.getitem(f"/users/{login}")
    except Exception:
        return (login, f"{login}@users.noreply.github.com")
    return (user.get("name") or login, github.noreply_email(user["id"], login))
