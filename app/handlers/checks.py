"""CI events on Honk's commits (and on its merges): suites, runs, statuses, deployments."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from app.ci.records import record_deployment
from app.github.client import GitHubClient
from app.handlers.context import HandlerContext

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("check_suite", action="completed")
async def on_check_suite_completed(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    suite = event.data["check_suite"]
    if (suite.get("app") or {}).get("id") == ctx.settings.github.app_id:
        return  # Honk's own suite (the `Honk` check) is no part of CI's verdict
    await settle(event, gh, ctx, suite["head_sha"])


@router.register("check_run", action="completed")
async def on_check_run_completed(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    check = event.data["check_run"]
    if (check.get("app") or {}).get("id") == ctx.settings.github.app_id:
        return
    await settle(event, gh, ctx, check["head_sha"])


@router.register("workflow_run", action="completed")
async def on_workflow_run_completed(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    await settle(event, gh, ctx, event.data["workflow_run"]["head_sha"])


@router.register("status")
async def on_status(event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any) -> None:
    if event.data.get("state") == "pending":
        return
    await settle(event, gh, ctx, event.data["sha"])


@router.register("deployment_status")
async def on_deployment_status(
    event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, **_: Any
) -> None:
    status = event.data["deployment_status"]
    deployment = event.data["deployment"]
    repo = event.data["repository"]["full_name"]
    if await ctx.ci.deployed(repo, deployment, status):
        return  # a merge commit followed to production in its run's thread
    url = status.get("environment_url")
    if status.get("state") != "success" or not url:
        return
    environment = status.get("environment") or deployment.get("environment") or "deployment"
    await record_deployment(ctx.store, repo, deployment["sha"], environment, url)
    await settle(event, gh, ctx, deployment["sha"])


async def settle(event: sansio.Event, gh: GitHubClient, ctx: HandlerContext, sha: str) -> None:
    """Report CI's verdict on `sha` once it is complete, if Honk pushed that commit."""
    repo = event.data["repository"]["full_name"]
    outcome = await ctx.ci.settle(gh, repo, sha)
    if outcome != "unknown":
        log.info("CI on %s@%s: %s (%s)", repo, sha[:7], outcome, event.event)
