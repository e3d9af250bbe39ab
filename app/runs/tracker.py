"""Keeps the people who asked informed: the tracking comment, the Slack thread, the `Honk` check."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app import metrics
from app.ci.records import HonkCheck, record_honk_check
from app.ci.verdict import HONK_CHECK
from app.github.client import GitHubClient
from app.log import describe_error
from app.models import Run, RunState
from app.progress import Progress
from app.runs.events import RunEvents
from app.runs.kinds import rules_for
from app.runs.results import StoppedAtLimit
from app.runs.texts import FailureDetails
from app.slack import blocks, card
from app.slack.blocks import Headline, PullRef
from app.slack.notify import SlackNotifier
from app.slack.threads import is_user_root
from app.store import Store
from app.untrusted import inert

log = logging.getLogger(__name__)

NOTE_INTERVAL = 5.0  # seconds between throttled tracking-comment updates
# Edits of the tracking comment that land within a second of each other (phases that
# start and end at once) go out as one; a change waits no longer than LONGEST.
QUIET = 1.0
LONGEST = 5.0


class Coalesced:
    """Writes the latest state once for changes that land close together, one write at a
    time: `changed()` after each change, `flush()` to write what is pending now."""

    def __init__(
        self,
        write: Callable[[], Awaitable[None]],
        *,
        quiet: float = QUIET,
        longest: float = LONGEST,
    ) -> None:
        self._write = write
        self.quiet = quiet
        self.longest = longest
        self._first: float | None = None  # when the oldest change not yet written came
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # writes in order: a later body never lands first

    @property
    def pending(self) -> bool:
        return self._first is not None

    def changed(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._first is None:
            self._first = now
        self._last = now
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._when_quiet())

    async def flush(self) -> None:
        async with self._lock:
            if self._first is None:
                return
            self._first = None
            await self._write()

    def discard(self) -> None:
        """Drop what is pending (the run is being handed back, not finished)."""
        self._first = None
        if self._task is not None:
            self._task.cancel()

    async def _when_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        while self._first is not None:
            due = min(self._last + self.quiet, self._first + self.longest)
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
                continue
            await self.flush()


class RunTracker:
    """One per run. Failures to report are logged, never raised: reporting must not fail a run."""

    def __init__(
        self,
        run: Run,
        gh: GitHubClient,
        store: Store,
        slack: SlackNotifier,
        *,
        run_url: str | None = None,
    ) -> None:
        self.run = run
        self.gh = gh
        self.store = store
        self.slack = slack
        self.rules = rules_for(run.kind)
        self.run_url = run_url  # the run's page, linked from everything the run leaves
        self.events = RunEvents(store, run.id)
        self.progress = Progress(run.id, run_url=run_url)
        self._last_update = 0.0
        self._phase: tuple[str, float] | None = None  # the phase under way, since when
        self.issue: dict[str, Any] | None = None
        self._edits = Coalesced(self._write_comment)

    async def started(self, issue: dict[str, Any] | None, *, channel: str | None = None) -> None:
        """Post (or reuse) the Slack thread and show the tracking comment as working.

        A new thread goes to `channel` (the repository's own) or Honk's default channel.
        A run whose kind reports elsewhere (a fleet's) starts none.
        """
        self.issue = issue
        if self.rules.reports_in_slack(self.run):
            await self._slack_started(issue, channel)
        await self.update(force=True)

    async def _slack_started(self, issue: dict[str, Any] | None, channel: str | None) -> None:
        run = self.run
        if self.slack.enabled and run.slack_thread is None:
            # The root names someone asking, whoever it was (the later roots may name nobody).
            headline = dataclasses.replace(
                self.headline, requested_by=run.requested_by or "someone"
            )
            text, blks = blocks.run_started(headline)
            thread = await self.slack.start_thread(channel=channel, text=text, blocks=blks)
            if thread is not None:
                await self.store.runs.save(run, slack_thread=thread)
        elif run.slack_thread is not None:
            text, blks = blocks.run_progress(self.rules.started_again(run), run_url=self.run_url)
            await self.slack.reply(run.slack_thread, text=text, blocks=blks)

    @property
    def headline(self) -> Headline:
        """What the run's Slack thread root shows whatever its status."""
        return Headline(
            repo=self.run.repo,
            issue_number=self.run.issue_number or self.run.pr_number,
            issue_title=(self.issue or {}).get("title", ""),
            issue_url=(self.issue or {}).get("html_url"),
            requested_by=self.run.requested_by,
            run_id=self.run.id,
            run_url=self.run_url,
        )

    @property
    def comment_on(self) -> int | None:
        """Where the tracking comment goes: a follow-up's PR, else the issue."""
        return self.rules.comment_on(self.run)

    def _phase_ended(self) -> None:
        """How long the phase that just ended took, for /metrics."""
        now = time.monotonic()
        if self._phase is not None:
            metrics.phase_seconds.labels(self._phase[0]).observe(now - self._phase[1])
        self._phase = None

    async def phase(self, name: str, note: str = "") -> None:
        if self._phase is None or self._phase[0] != name:
            self._phase_ended()
            self._phase = (name, time.monotonic())
        self.progress.start(name, note)
        await self.store.runs.add_step(self.run.id, name, note)
        await self.events.phase(name, note)
        await self.update(force=True)

    async def note(self, phase: str, note: str) -> None:
        """A minor change (the agent's turn count): throttled so GitHub is not flooded."""
        self.progress.notes[phase] = note
        await self.update()

    async def network(self, phase: str, summary: str) -> None:
        """A sandbox phase's connections through the proxy: a run step and a comment line.

        Host names come from the sandbox's requests: shown inert, like model text.
        """
        self.progress.network[phase] = inert(summary[:1000])
        await self.store.runs.add_step(self.run.id, "network", f"{phase}: {summary}")
        await self.update(force=True)

    async def notice(self, text: str, *, comment: bool = True) -> None:
        """Something about the repository's own environment people should know (what Honk did
        not do of its devcontainer.json): a run event, and a line of the tracking comment."""
        await self.events.note(text)
        if comment:
            self.progress.notices.append(text[:2000])
            await self.update(force=True)

    async def update(self, *, force: bool = False) -> None:
        """Show the progress in the tracking comment: made now if there is none yet, else
        edited once changes stop landing for a moment (`Coalesced`)."""
        if not force and time.monotonic() - self._last_update < NOTE_INTERVAL:
            return
        self._last_update = time.monotonic()
        if self.run.tracking_comment_id:
            self._edits.changed()
        else:
            await self._write_comment()

    async def flush(self) -> None:
        """Write a pending edit of the tracking comment now."""
        await self._edits.flush()

    def discard(self) -> None:
        """The run stops without finishing (shutdown): drop a pending edit."""
        self._edits.discard()

    async def _write_comment(self) -> None:
        body = self.progress.render()  # the latest, however many changes it carries
        try:
            if self.run.tracking_comment_id:
                await self.gh.edit_comment(self.run.repo, self.run.tracking_comment_id, body)
            elif self.comment_on:
                comment = await self.gh.comment(self.run.repo, self.comment_on, body)
                await self.store.runs.save(self.run, tracking_comment_id=comment["id"])
        except Exception as exc:
            log.warning("could not update the tracking comment: %s", describe_error(exc))

    async def check_run(self, sha: str, conclusion: str, title: str, summary: str) -> None:
        """The `Honk` check run on the pushed commit; remembered so CI's verdict can join it."""
        if self.run.slack_thread is not None:
            link = await self.slack.permalink(self.run.slack_thread)
            if link:
                summary += f"\n\n[The run's Slack thread]({link})"
        try:
            check = await self.gh.create_check_run(
                self.run.repo,
                name=HONK_CHECK,
                head_sha=sha,
                status="completed",
                conclusion=conclusion,
                details_url=self.run_url or self.run.pr_url,
                external_id=str(self.run.id),
                output={"title": title, "summary": summary},
            )
            await record_honk_check(
                self.store, self.run.repo, sha, HonkCheck(check["id"], title, summary, self.run.id)
            )
        except Exception as exc:
            log.warning("could not create the Honk check run: %s", describe_error(exc))

    async def finished(
        self,
        state: RunState,
        *,
        note: str = "",
        pr: PullRef | None = None,
        summary: str = "",
        usage_text: str = "",
        error: str | None = None,
        pushed_sha: str | None = None,
        review: str | None = None,
        stopped: StoppedAtLimit | None = None,
        details: FailureDetails | None = None,
    ) -> None:
        """The closing report: tracking comment, then Slack (thread reply and root status).

        `summary` is the model's: the tracking comment and Slack show it inert (with a PR;
        the run page shows it however the run ended). `review` is
        the review's verdict in one line (app/runs/review.py Review.status). `stopped` says
        why, the turns and dollars so far when a limit stopped the agent: Slack says so and
        offers to continue. `details` explain a failed setup: its last lines and the
        network's refusals, on the comment and in Slack.
        """
        self._phase_ended()
        if pr is not None:
            kind = "draft pull request" if pr.draft else "pull request"
            self.progress.done("publish", f"[{kind} #{pr.number}]({pr.url})")
            cost = f" ({usage_text})" if usage_text else ""
            # Cut before it is made inert: a cut through an inert code span would undo it.
            shown = inert(summary.strip()[:3000])
            self.progress.outcome = self.rules.published(pr, pushed_sha, cost, shown)
        elif error:
            self.progress.fail(f"Failed: {error}" if state == RunState.FAILED else (note or error))
            if details is not None and (explained := details.markdown()):
                self.progress.outcome = f"{self.progress.outcome}\n\n{explained}"
        else:
            self.progress.outcome = note or state.value
        if review and pr is not None:
            self.progress.outcome = f"{self.progress.outcome}\n\n{review}"
        await self.events.finished(state, error=error, note=note, summary=summary)
        await self.update(force=True)
        await self.flush()  # the run's last word is on GitHub before it is recorded as over
        thread = self.run.slack_thread
        if thread is None:
            return
        if stopped is not None:
            text, blks = card.stopped_at_limit(
                reason=stopped.reason,
                cost=f"${stopped.cost_usd:.2f}" + (f" ({usage_text})" if usage_text else ""),
                turns=stopped.turns,
                run_id=self.run.id,
                pr_url=pr.url if pr is not None else None,
                pr_number=pr.number if pr is not None else None,
                run_url=self.run_url,
            )
        else:
            ending = blocks.RunEnding(
                outcome=state,
                pr=pr,
                summary=summary,
                usage_text=usage_text,
                error=error,
                review=review,
                output_tail=details.tail if details is not None else "",
                notes=details.notes if details is not None else (),
            )
            text, blks = blocks.run_finished(ending, run_id=self.run.id, run_url=self.run_url)
        await self.slack.reply(thread, text=text, blocks=blks)
        # The thread root shows the latest status too, so the channel view is current;
        # unless it is a person's own message (a mention or DM), which only they can edit,
        # or a follow-up's ending that is no news for the PR (it stays in the thread).
        if not self.rules.root_shows(state) or await is_user_root(self.store, thread):
            return
        root_text, root_blocks = blocks.root_updated(
            self.headline, status=state, pr=pr, error=error
        )
        await self.slack.update(thread, text=root_text, blocks=root_blocks)
