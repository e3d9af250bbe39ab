"""Installation lifecycle: label and Slack hello on install; uninstall or suspend stops runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import gidgethub
from gidgethub import routing, sansio

from app.github.client import GitHubClient
from app.handlers.context import HandlerContext
from app.installations import ACTIVE, DELETED, NAMESPACE, SUSPENDED, repo_key
from app.slack import blocks
from app.store import Store

router = routing.Router()
log = logging.getLogger(__name__)

LABEL_COLOR = "fbca04"
LABEL_DESCRIPTION = "Ask Honk to turn this issue into a tested pull request"
# GitHub asks for a pause of at least a second between content-creating requests
# (secondary rate limits); tests set 0.
LABEL_WRITE_PAUSE = 1.0
HISTORY_MAX = 50
LABEL_DONE = ("created", "existed")


@router.register("installation", action="created")
async def on_installation_created(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    installation = event.data["installation"]
    await record_installation(ctx.store, event, ACTIVE)
    client = await ctx.github.installation_client(int(installation["id"]))
    if installation.get("repository_selection") == "all":
        # The payload's list is not the whole account: ask GitHub for every repository.
        listed = await client.installation_repositories()
        repos = [r["full_name"] for r in listed if not r.get("archived")]
        count: int | None = None
    else:
        repos = [r["full_name"] for r in event.data.get("repositories") or []]
        count = len(repos)
    await _welcome(event, ctx, client, repos, count)


@router.register("installation_repositories", action="added")
async def on_repositories_added(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    repos = [r["full_name"] for r in event.data.get("repositories_added") or []]
    await _welcome(event, ctx, gh, repos, len(repos))


@router.register("installation", action="deleted")
async def on_installation_deleted(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    await _stop(event, ctx, DELETED)


@router.register("installation", action="suspend")
async def on_installation_suspended(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    await _stop(event, ctx, SUSPENDED)


@router.register("installation", action="unsuspend")
async def on_installation_unsuspended(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    await record_installation(ctx.store, event, ACTIVE)
    log.info("installation %s unsuspended", event.data["installation"]["id"])


@router.register("installation_repositories", action="removed")
async def on_repositories_removed(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    installation_id = int(event.data["installation"]["id"])
    repos = [r["full_name"] for r in event.data.get("repositories_removed") or []]
    for repo in repos:
        await _put_repo(ctx.store, installation_id, repo, state="removed", label=None)
    cancelled = await ctx.store.cancel_runs(installation_id=installation_id, repos=repos)
    # Cached tokens may be scoped to the removed repositories; new ones are minted on demand.
    ctx.github.forget(installation_id)
    log.info(
        "installation %s lost %d repositories; %d run(s) cancelled",
        installation_id,
        len(repos),
        cancelled,
    )


async def _welcome(
    event: sansio.Event,
    ctx: HandlerContext,
    client: GitHubClient,
    repos: Sequence[str],
    count: int | None,
) -> None:
    """Say hello in Slack once per delivery, then make sure every repository has the label."""
    installation_id = int(event.data["installation"]["id"])
    for repo in repos:
        record = await ctx.store.get_kv(NAMESPACE, repo_key(installation_id, repo))
        if not isinstance(record, dict) or record.get("state") != "added":
            await _put_repo(ctx.store, installation_id, repo, state="added", label=None)
    await _announce(event, ctx, count)
    tally = await ensure_labels(
        client,
        ctx.store,
        installation_id,
        repos,
        ctx.settings.label,
        pause=ctx.settings.label_pause,
    )
    log.info("installation %s: label %r %s", installation_id, ctx.settings.label, tally)


async def _announce(event: sansio.Event, ctx: HandlerContext, count: int | None) -> None:
    installation = event.data["installation"]
    key = f"{int(installation['id'])}/announced/{event.delivery_id}"
    if await ctx.store.get_kv(NAMESPACE, key):
        return  # this delivery is being dispatched again: Slack already heard
    text, message = blocks.installed(
        account=installation["account"]["login"], repos_count=count, label=ctx.settings.label
    )
    await ctx.slack.post(channel=None, text=text, blocks=message)
    await ctx.store.put_kv(NAMESPACE, key, {"at": _now()})


@dataclass
class LabelTally:
    created: int = 0
    existed: int = 0
    skipped: int = 0  # done by an earlier attempt at this delivery
    failed: int = 0

    def __str__(self) -> str:
        return (
            f"created in {self.created}, already in {self.existed}, "
            f"done before in {self.skipped}, failed in {self.failed} repositories"
        )


async def ensure_labels(
    client: GitHubClient,
    store: Store,
    installation_id: int,
    repos: Sequence[str],
    label: str,
    *,
    pause: float | None = None,
) -> LabelTally:
    """The label in each repository, one at a time, pausing after each write.

    Progress is kept per repository in the store, so a delivery dispatched again (after a
    crash or a rate limit) goes on where it stopped. A repository that refuses (archived,
    gone) is recorded and skipped; a rate limit GitHub keeps up stops the work as transient.
    """
    pause = LABEL_WRITE_PAUSE if pause is None else pause
    tally = LabelTally()
    for repo in repos:
        key = repo_key(installation_id, repo)
        record = await store.get_kv(NAMESPACE, key)
        if (
            isinstance(record, dict)
            and record.get("label") in LABEL_DONE
            and record.get("label_name") == label
        ):
            tally.skipped += 1
            continue
        try:
            created = await client.ensure_label(repo, label, LABEL_COLOR, LABEL_DESCRIPTION)
        except gidgethub.BadRequest as exc:
            if _rate_limited(exc):
                raise gidgethub.RateLimitExceeded(
                    sansio.RateLimit(limit=0, remaining=0, reset_epoch=time.time() + 60),
                    f"secondary rate limit while labelling {repo}; resumes on retry",
                ) from exc
            log.warning("cannot create the %r label in %s: %s", label, repo, exc)
            await _put_repo(
                store,
                installation_id,
                repo,
                state="added",
                label="failed",
                label_name=label,
                detail=str(exc)[:300],
            )
            tally.failed += 1
            continue
        await _put_repo(
            store,
            installation_id,
            repo,
            state="added",
            label="created" if created else "existed",
            label_name=label,
        )
        if created:
            tally.created += 1
            await asyncio.sleep(pause)
        else:
            tally.existed += 1
    return tally


async def record_installation(store: Store, event: sansio.Event, state: str) -> dict[str, Any]:
    """Keep the installation's state and a short history of what happened to it."""
    installation = event.data["installation"]
    key = str(int(installation["id"]))
    record = await store.get_kv(NAMESPACE, key)
    record = dict(record) if isinstance(record, dict) else {}
    history = list(record.get("history") or [])
    if not history or history[-1].get("delivery") != event.delivery_id:
        history.append(
            {
                "action": f"{event.event}.{event.data.get('action')}",
                "state": state,
                "by": (event.data.get("sender") or {}).get("login"),
                "delivery": event.delivery_id,
                "at": _now(),
            }
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
    await store.put_kv(NAMESPACE, key, record)
    return record


async def _stop(event: sansio.Event, ctx: HandlerContext, state: str) -> None:
    installation_id = int(event.data["installation"]["id"])
    await record_installation(ctx.store, event, state)
    cancelled = await ctx.store.cancel_runs(installation_id=installation_id)
    ctx.github.forget(installation_id)
    log.info("installation %s %s; %d run(s) cancelled", installation_id, state, cancelled)


async def _put_repo(
    store: Store, installation_id: int, repo: str, *, state: str, label: str | None, **extra: Any
) -> None:
    value = {"repo": repo, "state": state, "label": label, "changed_at": _now(), **extra}
    await store.put_kv(NAMESPACE, repo_key(installation_id, repo), value)


def _rate_limited(exc: gidgethub.BadRequest) -> bool:
    status = exc.status_code
    return status in (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS) and (
        "rate limit" in str(exc).lower()
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
