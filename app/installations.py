"""What Honk knows of its installations: whether it may still act on an installation or repo."""

from __future__ import annotations

from app.store import Store

NAMESPACE = "installation"  # kv: "<id>" installation, "<id>/repo/<owner/name>", "<id>/announced/…"
ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"


def repo_key(installation_id: int, repo: str) -> str:
    return f"{int(installation_id)}/repo/{repo.lower()}"


async def installation_active(store: Store, installation_id: int) -> bool:
    """False once the installation was deleted or is suspended; unknown ones count as active."""
    record = await store.get_kv(NAMESPACE, str(int(installation_id)))
    return not (isinstance(record, dict) and record.get("state") in (SUSPENDED, DELETED))


async def repository_active(store: Store, installation_id: int, repo: str) -> bool:
    """installation_active, and the repository was not removed from the installation."""
    if not await installation_active(store, installation_id):
        return False
    record = await store.get_kv(NAMESPACE, repo_key(installation_id, repo))
    return not (isinstance(record, dict) and record.get("state") == "removed")
