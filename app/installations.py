"""What Honk knows of its installations and their repositories: the one owner of those records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from app.store import Store
from app.store.kv import Namespace, mapping


class InstallationState(StrEnum):
    """An installation's state, as its record keeps it."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class RepositoryState(StrEnum):
    """A repository's state in its installation."""

    ADDED = "added"
    REMOVED = "removed"


class LabelState(StrEnum):
    """How making sure of Honk's label in a repository went."""

    CREATED = "created"
    EXISTED = "existed"
    FAILED = "failed"


HISTORY_MAX = 50
LABEL_DONE = (LabelState.CREATED, LabelState.EXISTED)

# "<id>": the installation; "<id>/repo/<owner/name>": a repository in it;
# "<id>/announced/<delivery>": Slack heard of that delivery's installation.
_RECORDS: Namespace[dict[str, Any]] = Namespace("installation", owner=__name__, decode=mapping)


def _installation_key(installation_id: int) -> str:
    return str(int(installation_id))


def _repo_key(installation_id: int, repo: str) -> str:
    return f"{int(installation_id)}/repo/{repo.lower()}"


def _announced_key(installation_id: int, delivery_id: str | None) -> str:
    return f"{int(installation_id)}/announced/{delivery_id}"


async def installation_active(store: Store, installation_id: int) -> bool:
    """False once the installation was deleted or is suspended; unknown ones count as active."""
    record = await _RECORDS.get(store, _installation_key(installation_id))
    return not (
        record and record.get("state") in (InstallationState.SUSPENDED, InstallationState.DELETED)
    )


async def repository_active(store: Store, installation_id: int, repo: str) -> bool:
    """installation_active, and the repository was not removed from the installation."""
    if not await installation_active(store, installation_id):
        return False
    record = await repository(store, installation_id, repo)
    return not (record and record.get("state") == RepositoryState.REMOVED)


async def record_installation(
    store: Store,
    installation: Mapping[str, Any],
    state: InstallationState,
    *,
    action: str,
    sender: str | None,
    delivery_id: str | None,
) -> dict[str, Any]:
    """Keep the installation's state and a short history of what happened to it."""
    key = _installation_key(installation["id"])
    record = await _RECORDS.get(store, key) or {}
    history = list(record.get("history") or [])
    if not history or history[-1].get("delivery") != delivery_id:
        history.append(
            {"action": action, "state": state, "by": sender, "delivery": delivery_id, "at": _now()}
        )
    account = installation.get("account") or {}
    record.update(
        id=int(installation["id"]),
        account=account.get("login", record.get("account")),
        account_type=account.get("type", record.get("account_type")),
        repository_selection=installation.get("repository_selection"),
        state=state,
        changed_at=_now(),
        history=history[-HISTORY_MAX:],
    )
    await _RECORDS.put(store, key, record)
    return record


async def repository(store: Store, installation_id: int, repo: str) -> dict[str, Any] | None:
    """The repository's record: its state (added, removed) and how its label went."""
    return await _RECORDS.get(store, _repo_key(installation_id, repo))


async def record_repository(
    store: Store,
    installation_id: int,
    repo: str,
    *,
    state: RepositoryState,
    label: LabelState | None,
    **extra: Any,
) -> None:
    value = {"repo": repo, "state": state, "label": label, "changed_at": _now(), **extra}
    await _RECORDS.put(store, _repo_key(installation_id, repo), value)


async def label_done(store: Store, installation_id: int, repo: str, label: str) -> bool:
    """Whether `label` was already made sure of in that repository (by an earlier attempt)."""
    record = await repository(store, installation_id, repo)
    if not record:
        return False
    return record.get("label") in LABEL_DONE and record.get("label_name") == label


async def announced(store: Store, installation_id: int, delivery_id: str | None) -> bool:
    return bool(await _RECORDS.get(store, _announced_key(installation_id, delivery_id)))


async def mark_announced(store: Store, installation_id: int, delivery_id: str | None) -> None:
    await _RECORDS.put(store, _announced_key(installation_id, delivery_id), {"at": _now()})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
