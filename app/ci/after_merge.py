"""After a merge from Slack, the run's thread follows the merge commit to production: CI on
the base branch, then each deployment of that commit (success in production: "live")."""

from __future__ import annotations

import logging

from app.ci import records
from app.ci.verdict import gather_verdict
from app.config import Settings
from app.github.client import GitHubClient
from app.github.payloads import Deployment, DeploymentStatus
from app.slack import card
from app.slack.notify import SlackNotifier
from app.store import Store

log = logging.getLogger(__name__)

REPORTED_STATES = frozenset({"success", "failure", "error"})


async def follow_merge_ci(
    gh: GitHubClient,
    store: Store,
    slack: SlackNotifier,
    settings: Settings,
    repo: str,
    sha: str,
    merge: records.Merge,
) -> str:
    """CI's verdict on the merge commit, told in the run's thread once per conclusion."""
    run = await store.runs.get(merge.run)
    if run is None:
        return "unknown"
    verdict = await gather_verdict(gh, repo, sha, settings.github.app_id)
    if verdict is None:
        return "pending"
    if not await records.claim_verdict(
        store, repo, sha, conclusion=verdict.conclusion, run_id=run.id
    ):
        return "reported"
    base = merge.base or "the base branch"
    await store.runs.add_step(run.id, "ci", f"{verdict.conclusion} on {base} after the merge")
    if run.slack_thread is not None:
        text, blocks = card.base_ci(
            conclusion=verdict.conclusion,
            base=base,
            sha=sha,
            failed_checks=[(c.name, c.url) for c in verdict.failed],
            run_url=settings.web.run_url(run.id),
        )
        await slack.reply(run.slack_thread, text=text, blocks=blocks)
    return "sent"


async def follow_deployment(
    store: Store,
    slack: SlackNotifier,
    repo: str,
    deployment: Deployment,
    status: DeploymentStatus,
) -> bool:
    """A deployment_status of a merge commit Honk follows: said in its thread (each
    environment and outcome once). False when the commit is no merge Honk made."""
    sha = str(deployment.get("sha") or "")
    merge = await records.merge_of(store, repo, sha) if sha else None
    if merge is None:
        return False
    state = str(status.get("state") or "")
    if state not in REPORTED_STATES:
        return True  # queued, in progress: the outcome is what people wait for
    environment = str(status.get("environment") or deployment.get("environment") or "deployment")
    run = await store.runs.get(merge.run)
    if run is None or not await records.claim_deployment(
        store, repo, sha, environment=environment, state=state, run_id=run.id
    ):
        return True
    if state == "success":
        url = status.get("environment_url") or status.get("target_url")
    else:
        url = status.get("log_url") or status.get("target_url")
    production = bool(deployment.get("production_environment")) or (
        environment.lower() in card.PRODUCTION
    )
    await store.runs.add_step(run.id, "deploy", f"{environment}: {state}")
    log.info("deployment of %s@%s to %s: %s", repo, sha[:7], environment, state)
    if run.slack_thread is not None:
        text, blocks = card.deployed(
            environment=environment,
            state=state,
            url=str(url) if url else None,
            production=production,
        )
        await slack.reply(run.slack_thread, text=text, blocks=blocks)
    return True
