"""Pull request events that move a fleet's repository: a PR approved, merged or closed.

Honk's other PRs need nothing from these events (CI's events follow their commits); a fleet
PR's state is what the fleet's page, summaries and "Merge all green" read. GitHub is not
asked anything: the event says it all, and the store keeps the state (app/ci/fleet_prs.py).
"""

from __future__ import annotations

import logging
from typing import cast

from gidgethub import routing

from app.ci import fleet_prs
from app.github.payloads import PullRequestEvent, PullRequestReviewEvent
from app.github.users import is_bot
from app.handlers.context import Context

router = routing.Router()
log = logging.getLogger(__name__)


@router.register("pull_request", action="closed")
async def on_pull_request_closed(context: Context) -> None:
    pull = cast(PullRequestEvent, context.payload)["pull_request"]
    merged = bool(pull.get("merged"))
    await fleet_prs.closed(context.store, context.repo, int(pull["number"]), merged=merged)


@router.register("pull_request_review", action="submitted")
async def on_review_submitted(context: Context) -> None:
    payload = cast(PullRequestReviewEvent, context.payload)
    review = payload["review"]
    if (review.get("state") or "").lower() != "approved":
        return
    if is_bot(review.get("user") or {}):
        return  # a bot's approval is no person's
    await fleet_prs.reviewed(context.store, context.repo, int(payload["pull_request"]["number"]))
