"""Acting as the person, for going live: merge, approve and close a Honk PR with their own
GitHub user token (app/github/connections.py), never with the App's installation token.

Because every call is the person's own, GitHub applies exactly what it would on its website:
branch protection, required reviews and checks, their permission. A refusal is GitHub's,
in GitHub's words (`Refused`); Honk adds no rule of its own but one: the person who asked
for the change does not approve it (GitHub's coding agent holds the same line).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import gidgethub

from app.github.client import GitHubClient
from app.models import RepoRef, Run

# merge_method -> the repository setting that allows it (GET /repos/{owner}/{repo})
ALLOWED_BY = {
    "squash": "allow_squash_merge",
    "merge": "allow_merge_commit",
    "rebase": "allow_rebase_merge",
}
PREFERRED = ("squash", "merge", "rebase")  # without `merge:`: squash when the repository allows
OWN_APPROVAL = (
    "You asked Honk for this change, so your approval would not be a second pair of eyes "
    "(GitHub refuses an author's approval of their own pull request): someone else with write "
    "access has to approve it."
)


class Refused(Exception):
    """GitHub (or, for the requester's own approval, Honk) said no; the message says why.
    `status` is GitHub's HTTP status (401: the token no longer works)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def github_words(exc: gidgethub.HTTPException) -> str:
    """What GitHub said, as it said it (its `message`, and a 422's errors)."""
    text = str(exc).strip()
    return text or getattr(exc.status_code, "phrase", "") or "GitHub refused"


def allowed_methods(repo_info: Mapping[str, Any]) -> list[str]:
    """The merge methods the repository allows; a field GitHub did not send counts as allowed."""
    return [m for m in PREFERRED if repo_info.get(ALLOWED_BY[m]) is not False]


def merge_method(repo_info: Mapping[str, Any], wanted: str | None) -> str:
    """`merge:` from `.github/honk.yml` if the repository allows it; else squash when allowed,
    then a merge commit, then rebase. Refused when nothing fits."""
    allowed = allowed_methods(repo_info)
    name = repo_info.get("full_name") or "this repository"
    if wanted is not None:
        if wanted in allowed:
            return wanted
        raise Refused(
            f"`.github/honk.yml` asks for `merge: {wanted}`, which {name} does not allow "
            f"(it allows: {', '.join(allowed) or 'no merge method'})."
        )
    if not allowed:
        raise Refused(f"{name} allows no merge method.")
    return allowed[0]


async def merge_pull(
    gh: GitHubClient, run: Run, *, sha: str, method: str, wanted: str | None = None
) -> str:
    """PUT .../pulls/{n}/merge as the person; the merge commit's sha. `sha` is the head the
    person saw: GitHub refuses if the branch moved since (409)."""
    assert run.pr_number is not None
    try:
        answer = await gh.put(
            f"{_repo_path(run.repo)}/pulls/{int(run.pr_number)}/merge",
            data={"merge_method": method, "sha": sha},
        )
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None
    if not isinstance(answer, Mapping) or not answer.get("merged"):
        message = answer.get("message") if isinstance(answer, Mapping) else None
        raise Refused(str(message or "GitHub did not merge the pull request."))
    return str(answer["sha"])


async def approve_pull(gh: GitHubClient, run: Run, *, sha: str, login: str) -> dict[str, Any]:
    """A review APPROVE of the head the person saw, as them (not by the requester)."""
    assert run.pr_number is not None
    if run.requested_by and run.requested_by.lower() == login.lower():
        raise Refused(OWN_APPROVAL)
    body = "Approved from Slack with Honk."
    try:
        return cast(
            "dict[str, Any]",
            await gh.post(
                f"{_repo_path(run.repo)}/pulls/{int(run.pr_number)}/reviews",
                data={"event": "APPROVE", "commit_id": sha, "body": body},
            ),
        )
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None


async def close_pull(gh: GitHubClient, run: Run) -> dict[str, Any]:
    """Close the PR as the person (their permission, as on GitHub)."""
    assert run.pr_number is not None
    try:
        return cast(
            "dict[str, Any]",
            await gh.patch(
                f"{_repo_path(run.repo)}/pulls/{int(run.pr_number)}", data={"state": "closed"}
            ),
        )
    except gidgethub.BadRequest as exc:
        raise Refused(github_words(exc), int(exc.status_code)) from None


def _repo_path(repo: str) -> str:
    ref = RepoRef.parse(repo)
    return f"/repos/{ref.owner}/{ref.name}"
