"""Installation lifecycle: label and Slack hello on install; uninstall or suspend stops runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import gidgethub
from gidgethub import routing, sansio

from app import installations
from app.config import GitHubSettings
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.handlers.context import HandlerContext
from app.installations import ACTIVE, ADDED, DELETED, REMOVED, SUSPENDED
from app.slack import blocks
from app.store import Store

router = routing.Router()
log = logging.getLogger(__name__)

LABEL_COLOR = "fbca04"
LABEL_DESCRIPTION = "Ask Honk to turn this issue into a tested pull request"
# GitHub asks for a pause of at least a second between content-creating requests
# (secondary rate limits); tests set 0.
LABEL_WRITE_PAUSE = GitHubSettings.label_pause


@router.register("installation", action="created")
async def on_installation_created(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    installation = event.data["installation"]
    await _record(event, ctx, ACTIVE)
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
    await _record(event, ctx, ACTIVE)
    log.info("installation %s unsuspended", event.data["installation"]["id"])


@router.register("installation_repositories", action="removed")
async def on_repositories_removed(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    installation_id = int(event.data["installation"]["id"])
    repos = [r["full_name"] for r in event.data.get("repositories_removed") or []]
    for repo in repos:
        await installations.record_repository(
            ctx.store, installation_id, repo, state=REMOVED, label=None
        )
    cancelled = await ctx.store.runs.cancel_all(installation_id=installation_id, repos=repos)
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
        record = await installations.repository(ctx.store, installation_id, repo)
        if not record or record.get("state") != ADDED:
            await installations.record_repository(
                ctx.store, installation_id, repo, state=ADDED, label=None
            )
    await _announce(event, ctx, count)
    # One write per repository, maybe thousands: bulk, so people's requests and runs on the
    # installation go first.
    with writes_at(Priority.BULK):
        tally = await ensure_labels(
            client,
            ctx.store,
            installation_id,
            repos,
            ctx.settings.github.label,
            pause=ctx.settings.github.label_pause,
        )
    log.info("installation %s: label %r %s", installation_id, ctx.settings.github.label, tally)


async def _announce(event: sansio.Event, ctx: HandlerContext, count: int | None) -> None:
    installation = event.data["installation"]
    installation_id = int(installation["id"])
    if await installations.announced(ctx.store, installation_id, event.delivery_id):
        return  # this delivery is being dispatched again: Slack already heard
    text, message = blocks.installed(
        account=installation["account"]["login"], repos_count=count, label=ctx.settings.github.label
    )
    await ctx.slack.post(channel=None, text=text, blocks=message)
    await installations.mark_announced(ctx.store, installation_id, event.delivery_id)


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
        if await installations.label_done(store, installation_id, repo, label):
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
            await installations.record_repository(
                store,
                installation_id,
                repo,
                state=ADDED,
                label="failed",
                label_name=label,
                detail=str(exc)[:300],
            )
            tally.failed += 1
            continue
        await installations.record_repository(
            store,
            installation_id,
            repo,
            state=ADDED,
            label="created" if created else "existed",
            label_name=label,
        )
        if created:
            tally.created += 1
            await asyncio.sleep(pause)
        else:
            tally.existed += 1
    return tally


async def _record(event: sansio.Event, ctx: HandlerContext, state: str) -> None:
    await installations.record_installation(
        ctx.store,
        event.data["installation"],
        state,
        action=f"{event.event}.{event.data.get('action')}",
        sender=(event.data.get("sender") or {}).get("login"),
        delivery_id=event.delivery_id,
    )


async def _stop(event: sansio.Event, ctx: HandlerContext, state: str) -> None:
    installation_id = int(event.data["installation"]["id"])
    await _record(event, ctx, state)
    cancelled = await ctx.store.runs.cancel_all(installation_id=installation_id)
    ctx.github.forget(installation_id)
    log.info("installation %s %s; %d run(s) cancelled", installation_id, state, cancelled)


def _rate_limited(exc: gidgethub.BadRequest) -> bool:
    status = exc.status_code
    return status in (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS) and (
        "rate limit" in str(exc).lower()
    )
