"""Reporting a fleet: its issue's summary comment and its Slack summary message, made once
and edited in place when the fleet changed since they last showed it (at most once every few
seconds); each milestone said once in its thread."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import gidgethub

from app.config import Settings
from app.fleet import summary
from app.fleet.rules import has_work_left
from app.fleet_models import Fleet, FleetRepo
from app.github.auth import GitHubApp
from app.github.pacing import Priority, writes_at
from app.log import describe_error
from app.models import SlackThread
from app.slack.blocks import Message
from app.slack.notify import SlackNotifier
from app.store import Store

log = logging.getLogger(__name__)

REPORT_EVERY = 5.0  # seconds: the fewest between two edits of one fleet's summaries

# Gives an ended fleet, fully shown, back: its lease, and what is remembered of it.
LetGo = Callable[[int], Awaitable[None]]


class FleetReporter:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: SlackNotifier,
        *,
        let_go: LetGo,
        report_every: float = REPORT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.let_go = let_go
        self.report_every = report_every
        self._clock = clock
        self._reported_at: dict[int, float] = {}
        # What each fleet's summaries last said, so a pass that changes nothing edits nothing.
        self._shown_issue: dict[int, str] = {}
        self._shown_slack: dict[int, str] = {}

    def forget(self, fleet_id: int) -> None:
        """The fleet is no longer this process's to show."""
        self._shown_issue.pop(fleet_id, None)
        self._shown_slack.pop(fleet_id, None)
        self._reported_at.pop(fleet_id, None)

    async def report(self, fleet_id: int) -> float:
        """Show the fleet as it is now, when it changed since last shown; seconds until the
        next edit is allowed (or the poll interval)."""
        poll = self.settings.fleet.poll_seconds
        fleet = await self.store.fleets.get(fleet_id)
        if fleet is None:
            return poll
        if fleet.version <= fleet.reported_version:
            if fleet.state.ended:
                await self.let_go(fleet.id)
            return poll
        since = self._clock() - self._reported_at.get(fleet.id, -math.inf)
        if since < self.report_every:
            return self.report_every - since
        self._reported_at[fleet.id] = self._clock()
        repos = await self.store.fleets.repos(fleet.id)
        fleet = await self._show_in_slack(fleet, repos)
        await self._show_on_issue(fleet, repos)
        if fleet.state.ended and has_work_left(fleet, repos):
            # Not marked shown: the lease holds it until its last runs end and PRs close.
            return poll
        await self.store.fleets.update(fleet.id, reported_version=fleet.version)
        if fleet.state.ended:
            await self.let_go(fleet.id)
        return poll

    async def _show_on_issue(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """The fleet issue's one summary comment, made once and edited in place."""
        if not fleet.issue_repo or not fleet.issue_number:
            return
        body = summary.issue_summary(fleet, repos, self.settings.web)
        if self._shown_issue.get(fleet.id) == body:
            return
        try:
            gh = await self.github.installation_client(fleet.installation_id)
            with writes_at(Priority.BULK):
                if fleet.summary_comment_id is not None:
                    try:
                        await gh.edit_comment(fleet.issue_repo, fleet.summary_comment_id, body)
                        self._shown_issue[fleet.id] = body
                        return
                    except gidgethub.BadRequest as exc:
                        if exc.status_code != 404:
                            raise
                        # Deleted by someone: the summary starts again in a new comment.
                comment = await gh.comment(fleet.issue_repo, fleet.issue_number, body)
            await self.store.fleets.update(fleet.id, summary_comment_id=int(comment["id"]))
            self._shown_issue[fleet.id] = body
        except Exception as exc:
            log.warning(
                "fleet %s: the issue's summary was not updated: %s", fleet.id, describe_error(exc)
            )

    async def _show_in_slack(self, fleet: Fleet, repos: list[FleetRepo]) -> Fleet:
        """The thread's one summary message, posted once and edited in place; a fleet with
        no thread yet (asked for on an issue or the command line) gets one in Honk's channel,
        whose root is the summary."""
        if not self.slack.enabled:
            return fleet
        text, blocks = summary.slack_summary(fleet, repos, self.settings.web)
        shown = f"{text}\n{blocks}"
        if self._shown_slack.get(fleet.id) == shown:
            return fleet
        if fleet.slack_thread is None:
            root = await self.slack.start_thread(channel=None, text=text, blocks=blocks)
            if root is None:
                return fleet
            self._shown_slack[fleet.id] = shown
            return await self.store.fleets.update(
                fleet.id, slack_thread=root, slack_summary_ts=root.ts
            )
        if fleet.slack_summary_ts is None:
            ts = await self.slack.reply(fleet.slack_thread, text=text, blocks=blocks)
            if ts is None:
                return fleet
            self._shown_slack[fleet.id] = shown
            return await self.store.fleets.update(fleet.id, slack_summary_ts=ts)
        message = SlackThread(fleet.slack_thread.channel, fleet.slack_summary_ts)
        if await self.slack.update(message, text=text, blocks=blocks):
            self._shown_slack[fleet.id] = shown
        return fleet

    async def milestone(self, fleet: Fleet, name: str, message: Message) -> None:
        """Say `message` in the fleet's thread, once ever for `name` (whichever process)."""
        if not await self.store.fleets.announce(fleet.id, name):
            return
        fleet.milestones.append(name)
        log.info("fleet %s: milestone %s", fleet.id, name)
        if fleet.slack_thread is None or not self.slack.enabled:
            return
        text, blocks = message
        await self.slack.reply(fleet.slack_thread, text=text, blocks=blocks)
