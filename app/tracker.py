"""Keeps the people who asked informed: the issue's tracking comment and the run's Slack thread."""

from __future__ import annotations

import logging
import time
from typing import Any

from app.ci import HONK_CHECK
from app.ci_report import CHECK_NAMESPACE
from app.github.client import GitHubClient
from app.models import Run, RunKind, RunState
from app.progress import Progress
from app.slack import blocks
from app.slack.notify import USER_ROOTS, SlackNotifier
from app.store import Store

log = logging.getLogger(__name__)


class RunTracker:
    """One per run. Failures to report are logged, never raised: reporting must not fail a run."""

    def __init__(self, run: Run, gh: GitHubClient, store: Store, slack: SlackNotifier) -> None:
        self.run = run
        self.gh = gh
        self.store = store
        self.slack = slack
        self.progress = Progress(run.id)
        self._last_update = 0.0
        self.issue: dict[str, Any] | None = None

    async def started(self, issue: dict[str, Any] | None) -> None:
        """Post (or reuse) the Slack thread and show the tracking comment as working."""
        run = self.run
        self.issue = issue
        if self.slack.enabled and not run.slack_ts:
            text, blks = blocks.run_started(
                repo=run.repo,
                issue_number=run.issue_number or run.pr_number,
                issue_title=(issue or {}).get("title", ""),
                issue_url=(issue or {}).get("html_url"),
                requested_by=run.requested_by or "someone",
                run_id=run.id,
            )
            posted = await self.slack.start_thread(
                channel=run.slack_channel, text=text, blocks=blks
            )
            if posted:
                run.slack_channel, run.slack_ts = posted
                await self.store.update_run(run.id, slack_channel=posted[0], slack_ts=posted[1])
        elif run.slack_ts and run.slack_channel:
            await self.slack.reply(run.slack_channel, run.slack_ts, text=_again(run))
        await self.update(force=True)

    @property
    def comment_on(self) -> int | None:
        """Where the tracking comment goes: a follow-up's PR, else the issue."""
        if self.run.kind != RunKind.ISSUE and self.run.pr_number:
            return self.run.pr_number
        return self.run.issue_number

    async def phase(self, name: str, note: str = "") -> None:
        self.progress.start(name, note)
        await self.store.add_step(self.run.id, name, note)
        await self.update(force=True)

    async def note(self, phase: str, note: str) -> None:
        """A minor change (the agent's turn count): throttled so GitHub is not flooded."""
        self.progress.notes[phase] = note
        await self.update()

    async def update(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_update < 5:
            return
        self._last_update = time.monotonic()
        body = self.progress.render()
        try:
            if not self.run.tracking_comment_id:
                # The handler that queued the run may have posted one since it was claimed.
                stored = await self.store.get_run(self.run.id)
                self.run.tracking_comment_id = stored.tracking_comment_id if stored else None
            if self.run.tracking_comment_id:
                await self.gh.edit_comment(self.run.repo, self.run.tracking_comment_id, body)
            elif self.comment_on:
                comment = await self.gh.comment(self.run.repo, self.comment_on, body)
                self.run.tracking_comment_id = comment["id"]
                await self.store.update_run(self.run.id, tracking_comment_id=comment["id"])
        except Exception as exc:
            log.warning("could not update the tracking comment: %s", exc)

    async def check_run(self, sha: str, conclusion: str, title: str, summary: str) -> None:
        """The `Honk` check run on the pushed commit; remembered so CI's verdict can join it."""
        if self.run.slack_channel and self.run.slack_ts:
            link = await self.slack.permalink(self.run.slack_channel, self.run.slack_ts)
            if link:
                summary += f"\n\n[The run's Slack thread]({link})"
        try:
            check = await self.gh.create_check_run(
                self.run.repo,
                name=HONK_CHECK,
                head_sha=sha,
                status="completed",
                conclusion=conclusion,
                details_url=self.run.pr_url,
                external_id=str(self.run.id),
                output={"title": title, "summary": summary},
            )
            await self.store.put_kv(
                CHECK_NAMESPACE,
                f"{self.run.repo}@{sha}",
                {"id": check["id"], "title": title, "summary": summary, "run": self.run.id},
            )
        except Exception as exc:
            log.warning("could not create the Honk check run: %s", exc)

    async def slack_reply(self, text: str, blks: list[dict[str, Any]] | None = None) -> None:
        if self.run.slack_channel and self.run.slack_ts:
            await self.slack.reply(
                self.run.slack_channel, self.run.slack_ts, text=text, blocks=blks
            )

    async def finished(
        self,
        state: RunState,
        *,
        note: str = "",
        pr: dict[str, Any] | None = None,
        summary: str = "",
        usage_text: str = "",
        error: str | None = None,
        pushed_sha: str | None = None,
    ) -> None:
        """The closing report: tracking comment, then Slack (thread reply and root status)."""
        if pr is not None:
            kind = "draft pull request" if pr.get("draft") else "pull request"
            self.progress.done("publish", f"[{kind} #{pr['number']}]({pr['html_url']})")
            cost = f" ({usage_text})" if usage_text else ""
            if self.run.kind != RunKind.ISSUE and pushed_sha:
                self.progress.outcome = f"Pushed {pushed_sha[:7]} to {pr['html_url']}{cost}"
                if summary.strip():
                    self.progress.outcome += "\n\n" + summary.strip()[:3000]
            else:
                self.progress.outcome = f"Opened {pr['html_url']}{cost}"
        elif error:
            self.progress.fail(f"Failed: {error}" if state == RunState.FAILED else (note or error))
        else:
            self.progress.outcome = note or state.value
        await self.update(force=True)
        if not (self.run.slack_channel and self.run.slack_ts):
            return
        text, blks = blocks.run_finished(
            outcome=state,
            pr_url=(pr or {}).get("html_url"),
            pr_number=(pr or {}).get("number"),
            draft=bool((pr or {}).get("draft")),
            summary=summary,
            usage_text=usage_text,
            error=error,
            run_id=self.run.id,
        )
        await self.slack_reply(text, blks)
        # The thread root shows the latest status too, so the channel view is current;
        # unless it is a person's own message (a mention or DM), which only they can edit.
        if await self.store.get_kv(USER_ROOTS, f"{self.run.slack_channel}:{self.run.slack_ts}"):
            return
        root_text, root_blocks = blocks.root_updated(
            repo=self.run.repo,
            issue_number=self.run.issue_number or self.run.pr_number,
            issue_title=(self.issue or {}).get("title", ""),
            issue_url=(self.issue or {}).get("html_url"),
            requested_by=self.run.requested_by,
            run_id=self.run.id,
            status=state,
            pr_url=(pr or {}).get("html_url"),
            pr_number=(pr or {}).get("number"),
            draft=bool((pr or {}).get("draft")),
            error=error,
        )
        await self.slack.update(
            self.run.slack_channel, self.run.slack_ts, text=root_text, blocks=root_blocks
        )


def _again(run: Run) -> str:
    if run.kind == RunKind.CI_FIX:
        return f"Honk is fixing the CI failure: round {run.round} (run {run.id})."
    if run.kind == RunKind.RETRY:
        who = f" at @{run.requested_by}'s request" if run.requested_by else ""
        return f"Honk is working on it again{who} (run {run.id})."
    if run.attempts > 1:  # claimed again after a worker died
        return f"Honk is working on it again (run {run.id}, attempt {run.attempts})."
    return f"Honk is on it (run {run.id})."
