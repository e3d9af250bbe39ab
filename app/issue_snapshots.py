"""The issue as the person who started Honk on it saw it: its title and body at that moment.

An issue's author may edit it after a maintainer labelled it, and GitHub's REST API does not
say who edited an issue's body. So a run follows the text that was approved (the
`issues.labeled` payload's, a `/honk retry`'s on the issue, the issue Honk opened for a Slack
request), never what the issue says when the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.store import Store
from app.store.kv import Namespace, mapping

# "<owner/name>#<number>" -> {"title", "body", "approved_by"}
_SNAPSHOTS: Namespace[dict[str, Any]] = Namespace("issue_snapshot", owner=__name__, decode=mapping)

EDITED_NOTE = (
    "the issue was edited after it was approved; Honk works on it as it was then "
    "(add the label again to start from the new text)"
)


@dataclass(frozen=True)
class IssueSnapshot:
    title: str
    body: str
    approved_by: str


def _key(repo: str, number: int) -> str:
    return f"{repo.lower()}#{int(number)}"


async def record_approved(
    store: Store, repo: str, issue: Mapping[str, Any], approved_by: str
) -> None:
    """Keep the issue as `approved_by` (who may write to `repo`) saw it when asking for a run."""
    await _SNAPSHOTS.put(
        store,
        _key(repo, issue["number"]),
        {
            "title": str(issue.get("title") or ""),
            "body": str(issue.get("body") or ""),
            "approved_by": approved_by,
        },
    )


async def approved_snapshot(store: Store, repo: str, number: int) -> IssueSnapshot | None:
    record = await _SNAPSHOTS.get(store, _key(repo, number))
    if record is None:
        return None
    return IssueSnapshot(
        str(record.get("title") or ""),
        str(record.get("body") or ""),
        str(record.get("approved_by") or ""),
    )


def as_approved(
    issue: dict[str, Any], snapshot: IssueSnapshot | None
) -> tuple[dict[str, Any], bool]:
    """The issue with its approved title and body, and whether it was edited since."""
    if snapshot is None:
        return issue, False
    edited = (issue.get("title") or "") != snapshot.title or (
        issue.get("body") or ""
    ) != snapshot.body
    return {**issue, "title": snapshot.title, "body": snapshot.body}, edited
