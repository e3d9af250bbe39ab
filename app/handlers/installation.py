"""Installation lifecycle: label and Slack hello on install; uninstall or suspend stops runs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import NamedTuple, cast

import gidgethub
from gidgethub import routing, sansio

from app import installations
from app.config import GitHubSettings
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.github.payloads import InstallationEvent, InstallationRepositoriesEvent
from app.handlers.context import Context
from app.handlers.fleet import FLEET_LABEL, FLEET_LABEL_COLOR, FLEET_LABEL_DESCRIPTION
from app.installations import InstallationState, LabelState, RepositoryState
from app.slack import blocks
from app.store import Store

router = routing.Router()
log = logging.getLogger(__name__)

LABEL_COLOR = "fbca04"
LABEL_DESCRIPTION = "Ask Honk to turn this issue into a tested pull request"
# GitHub asks for a pause of at least a second between content-creating requests
# (secondary rate limits); tests set 0.
LABEL_WRITE_PAUSE = GitHubSettings.label_pause


class Label(NamedTuple):
    name: str
    color: str
    description: str


# Made beside Honk's own label: an issue labelled so in any repository asks for a fleet.
FLEET = Label(FLEET_LABEL, FLEET_LABEL_COLOR, FLEET_LABEL_DESCRIPTION)


@router.register("installation", action="created")
async def on_installation_created(context: Context) -> None:
    payload = cast(InstallationEvent, context.payload)
    installation = payload["installation"]
    await _record(context, InstallationState.ACTIVE)
    client = await context.github.installation_client(context.installation_id)
    if installation.get("repository_selection") == "all":
        # The payload's list is not the whole account: ask GitHub for every repository.
        listed = await client.installation_repositories()
        repos = [r["full_name"] for r in listed if not r.get("archived")]
        count: int | None = None
    else:
        repos = [r["full_name"] for r in payload.get("repositories") or []]
        count = len(repos)
    await _welcome(context, client, repos, count)


@router.register("installation_repositories", action="added")
async def on_repositories_added(context: Context) -> None:
    payload = cast(InstallationRepositoriesEvent, context.payload)
    repos = [r["full_name"] for r in payload.get("repositories_added") or []]
    await _welcome(context, context.gh, repos, len(repos))


@router.register("installation", action="deleted")
async def on_installation_deleted(context: Context) -> None:
    await _stop(context, InstallationState.DELETED)


@router.register("installation", action="suspend")
async def on_installation_suspended(context: Context) -> None:
    await _stop(context, InstallationState.SUSPENDED)


@router.register("installation", action="unsuspend")
async def on_installation_unsuspended(context: Context) -> None:
    await _record(context, InstallationState.ACTIVE)
    log.info("installation %s unsuspended", context.installation_id)


@router.register("installation_repositories", action="removed")
async def on_repositories_removed(context: Context) -> None:
    installation_id = context.installation_id
    payload = cast(InstallationRepositoriesEvent, context.payload)
    repos = [r["full_name"] for r in payload.get("repositories_removed") or []]
    for repo in repos:
        await installations.record_repository(
            context.store, installation_id, repo, state=RepositoryState.REMOVED, label=None
        )
    cancelled = await context.store.runs.cancel_all(installation_id=installation_id, repos=repos)
    # Cached tokens may be scoped to the removed repositories; new ones are minted on demand.
    context.github.forget(installation_id)
    log.info(
        "installation %s lost %d repositories; %d run(s) cancelled",
        installation_id,
        len(repos),
        cancelled,
    )


async def _welcome(
    context: Context, client: GitHubClient, repos: Sequence[str], count: int | None
) -> None:
    """Say hello in Slack once per delivery, then make sure every repository has the label."""
    installation_id, store, settings = context.installation_id, context.store, context.settings
    for repo in repos:
        record = await installations.repository(store, installation_id, repo)
        if not record or record.get("state") != RepositoryState.ADDED:
            await installations.record_repository(
                store, installation_id, repo, state=RepositoryState.ADDED, label=None
            )
    await _announce(context, count)
    # One write per repository, maybe thousands: bulk, so people's requests and runs on the
    # installation go first.
    with writes_at(Priority.BULK):
        tally = await ensure_labels(
            client,
            store,
            installation_id,
            repos,
            settings.github.label,
            pause=settings.github.label_pause,
            also=[FLEET],
        )
    log.info("installation %s: label %r %s", installation_id, settings.github.label, tally)


async def _announce(context: Context, count: int | None) -> None:
    installation = _installation_event(context)["installation"]
    installation_id, store = context.installation_id, context.store
    if await installations.announced(store, installation_id, context.delivery_id):
        return  # this delivery is being dispatched again: Slack already heard
    text, message = blocks.installed(
        account=installation["account"]["login"],
        repos_count=count,
        label=context.settings.github.label,
    )
    await context.slack.post(channel=None, text=text, blocks=message)
    await installations.mark_announced(store, installation_id, context.delivery_id)


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
    also: Sequence[Label] = (),
) -> LabelTally:
    """The label (and the labels `also`) in each repository, one at a time, pausing after
    each write.

    Progress is kept per repository in the store (under `label`, done once all are), so a
    delivery dispatched again (after a crash or a rate limit) goes on where it stopped. A
    repository that refuses (archived, gone) is recorded and skipped; a rate limit GitHub
    keeps up stops the work as transient.
    """
    pause = LABEL_WRITE_PAUSE if pause is None else pause
    tally = LabelTally()
    wanted = [Label(label, LABEL_COLOR, LABEL_DESCRIPTION), *also]
    for repo in repos:
        if await installations.label_done(store, installation_id, repo, label):
            tally.skipped += 1
            continue
        try:
            created = False
            for one in wanted:
                if await client.ensure_label(repo, *one):
                    created = True
                    await asyncio.sleep(pause)
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
                state=RepositoryState.ADDED,
                label=LabelState.FAILED,
                label_name=label,
                detail=str(exc)[:300],
            )
            tally.failed += 1
            continue
        await installations.record_repository(
            store,
            installation_id,
            repo,
            state=RepositoryState.ADDED,
            label=LabelState.CREATED if created else LabelState.EXISTED,
            label_name=label,
        )
        if created:
            tally.created += 1
        else:
            tally.existed += 1
    return tally


def _installation_event(context: Context) -> InstallationEvent | InstallationRepositoriesEvent:
    """The delivery as the installation event it is (both kinds carry the installation)."""
    return cast(InstallationEvent | InstallationRepositoriesEvent, context.payload)


async def _record(context: Context, state: InstallationState) -> None:
    payload = _installation_event(context)
    await installations.record_installation(
        context.store,
        payload["installation"],
        state,
        action=f"{context.name}.{payload.get('action')}",
        sender=context.sender.get("login"),
        delivery_id=context.delivery_id,
    )


async def _stop(context: Context, state: InstallationState) -> None:
    installation_id = context.installation_id
    await _record(context, state)
    cancelled = await context.store.runs.cancel_all(installation_id=installation_id)
    context.github.forget(installation_id)
    log.info("installation %s %s; %d run(s) cancelled", installation_id, state, cancelled)


def _rate_limited(exc: gidgethub.BadRequest) -> bool:
    status = exc.status_code
    return status in (HTTPStatus.FORBIDDEN, HTTPStatus.TOO_MANY_REQUESTS) and (
        "rate limit" in str(exc).lower()
    )
