"""CI events on Honk's commits (and on its merges): suites, runs, statuses, deployments."""

from __future__ import annotations

import logging
from typing import cast

from gidgethub import routing

from app.ci.records import record_deployment
from app.github.payloads import (
    App,
    CheckRunEvent,
    CheckSuiteEvent,
    DeploymentStatusEvent,
    StatusEvent,
    WorkflowRunEvent,
)
from app.handlers.context import Context

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("check_suite", action="completed")
async def on_check_suite_completed(context: Context) -> None:
    suite = cast(CheckSuiteEvent, context.payload)["check_suite"]
    if _app_id(suite.get("app")) == context.settings.github.app_id:
        return  # Honk's own suite (the `Honk` check) is no part of CI's verdict
    await settle(context, suite["head_sha"])


@router.register("check_run", action="completed")
async def on_check_run_completed(context: Context) -> None:
    check = cast(CheckRunEvent, context.payload)["check_run"]
    if _app_id(check.get("app")) == context.settings.github.app_id:
        return
    await settle(context, check["head_sha"])


@router.register("workflow_run", action="completed")
async def on_workflow_run_completed(context: Context) -> None:
    payload = cast(WorkflowRunEvent, context.payload)
    await settle(context, payload["workflow_run"]["head_sha"])


@router.register("status")
async def on_status(context: Context) -> None:
    payload = cast(StatusEvent, context.payload)
    if payload.get("state") == "pending":
        return
    await settle(context, payload["sha"])


@router.register("deployment_status")
async def on_deployment_status(context: Context) -> None:
    payload = cast(DeploymentStatusEvent, context.payload)
    status, deployment = payload["deployment_status"], payload["deployment"]
    if await context.ci.deployed(context.repo, deployment, status):
        return  # a merge commit followed to production in its run's thread
    url = status.get("environment_url")
    if status.get("state") != "success" or not url:
        return
    environment = status.get("environment") or deployment.get("environment") or "deployment"
    await record_deployment(context.store, context.repo, deployment["sha"], environment, url)
    await settle(context, deployment["sha"])


def _app_id(app: App | None) -> int | None:
    """The id of the App a check suite or run is of (None when the payload names none)."""
    return app.get("id") if app else None


async def settle(context: Context, sha: str) -> None:
    """Report CI's verdict on `sha` once it is complete, if Honk pushed that commit."""
    outcome = await context.ci.settle(context.gh, context.repo, sha)
    if outcome != "unknown":
        log.info("CI on %s@%s: %s (%s)", context.repo, sha[:7], outcome, context.name)
