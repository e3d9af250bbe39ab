"""The fleet conductor: takes each fleet from its plan through its canary to every repository,
as ordinary runs, and keeps what people see of it current.

It is store-driven and idempotent, so a restart or a second process loses nothing and queues
nothing twice. Each pass it leases its fleets (`store.fleets.claim`, as workers lease runs),
then for each:

1. follows every repository in flight from its run (a PR opened, vetoed, failed, nothing to
   change, cancelled), its PR, head and cost;
2. acts on the fleet's state: runs the canary, waits for Continue, fans out within the caps
   (per fleet, and per installation so ordinary runs keep workers), pauses itself after
   failures in a row, ends the fleet when every repository has; on Stop it cancels what
   still runs; on Roll back it closes the fleet's unmerged PRs (installation token, BULK);
3. when the fleet changed since its summaries last showed it (`version > reported_version`),
   edits the fleet issue's summary comment and the Slack summary message in place (at most
   once every few seconds), and says each milestone once (canary, half, done, paused).

Runs are queued only through `store.runs.enqueue`, which refuses a second active run for one
fleet repository; a run queued before a crash that kept no note of it is found and adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from statistics import mean

import gidgethub

from app import metrics
from app.config import Settings
from app.fleet import summary
from app.fleet.requests import CANARY_DONE, ROLLBACK_REQUESTED
from app.fleet_models import Fleet, FleetRepo, FleetRepoState, FleetState
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.log import describe_error
from app.models import ACTIVE_STATES, ReviewVerdict, Run, RunKind, RunState, SlackThread
from app.slack.blocks import Message
from app.slack.notify import SlackNotifier
from app.store import Store
from app.store.queue import NewRun

log = logging.getLogger(__name__)

Wake = Callable[[], None]

REPORT_EVERY = 5.0  # seconds: the fewest between two edits of one fleet's summaries
METRICS_EVERY = 15.0  # seconds between readings of the store for the fleet gauges
FLEETS_PER_PASS = 100
RUN_LIMIT = 10_000  # active runs read at once (an installation's, a fleet's)
REASON_LIMIT = 200

# Milestones said once each (besides requests.CANARY_DONE and ROLLBACK_REQUESTED).
HALF = "half"
DONE = "done"
PAUSED = "paused"  # the first pause by itself; later ones are "paused 2", "paused 3"...
ROLLED_BACK = "rolled-back"

NOTHING_TO_CHANGE = "nothing to change"
PAUSED_ITSELF = "paused by itself"
STOPPED_BEFORE = "not run: the fleet was stopped"
ROLLED_BACK_REASON = "rolled back"


def _no_wake() -> None:
    return None


class FleetConductor:
    """One per process with workers; fleets are shared with other processes by lease."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: SlackNotifier,
        *,
        wake_workers: Wake = _no_wake,
        workers: int | None = None,
        owner: str | None = None,
        report_every: float = REPORT_EVERY,
        fleets_per_pass: int = FLEETS_PER_PASS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.wake_workers = wake_workers
        self.owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}:fleets"
        count = settings.store.workers if workers is None else workers
        self.run_cap = settings.fleet.run_cap(count)
        self.report_every = report_every
        self.fleets_per_pass = fleets_per_pass
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._held: set[int] = set()
        self._reported_at: dict[int, float] = {}
        # What each fleet's summaries last said, so a pass that changes nothing edits nothing.
        self._shown_issue: dict[int, str] = {}
        self._shown_slack: dict[int, str] = {}
        self._metrics_at = -math.inf

    @property
    def lease_seconds(self) -> float:
        # Renewed at every pass: a lease outlives a few missed polls.
        return max(self.settings.store.lease_seconds, 3 * self.settings.fleet.poll_seconds)

    def wake(self) -> None:
        """Look at the fleets now: a fleet was started or steered, a run ended."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="honk-fleet-conductor")

    async def stop(self) -> None:
        """Stop conducting and give the fleets' leases back, for another process at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for fleet_id in sorted(self._held):
            with contextlib.suppress(Exception):
                await self.store.fleets.release(fleet_id, self.owner)
        self._held.clear()

    async def _loop(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except Exception:
                log.exception("the fleet conductor's pass failed; it tries again")
                delay = self.settings.fleet.poll_seconds
            # asyncio.timeout, not wait_for: see WorkerPool._loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> float:
        """One pass over every fleet this process may conduct; seconds until one is due."""
        fleets = await self.store.fleets.claim(
            self.owner, self.lease_seconds, limit=self.fleets_per_pass
        )
        self._held |= {fleet.id for fleet in fleets}
        due = self.settings.fleet.poll_seconds
        for fleet in fleets:
            try:
                due = min(due, await self.conduct(fleet))
            except Exception:
                log.exception("fleet %s: the conductor's pass failed", fleet.id)
        await self._refresh_metrics()
        return max(due, 0.01)

    async def conduct(self, fleet: Fleet) -> float:
        """Follow, act on and report one fleet; seconds until its summaries may be edited."""
        repos = await self.store.fleets.repos(fleet.id)
        settled = await self._follow_runs(fleet, repos)
        current = await self.store.fleets.get(fleet.id)
        if current is None:
            return self.settings.fleet.poll_seconds
        await self._act(current, repos, settled)
        return await self._report(fleet.id)

    # -- 1. following runs ---------------------------------------------------------------

    async def _follow_runs(self, fleet: Fleet, repos: list[FleetRepo]) -> list[FleetRepo]:
        """Each repository in flight takes its run's state; those that ended, in order."""
        settled: list[FleetRepo] = []
        for index, repo in enumerate(repos):
            if not repo.state.in_flight or repo.run_id is None:
                continue
            run = await self.store.runs.get(repo.run_id)
            if run is None:
                continue
            moved = await self._take_outcome(fleet, repo, run)
            if moved is not None:
                repos[index] = moved
                if moved.state.settled:
                    settled.append(moved)
        return settled

    async def _take_outcome(
        self, fleet: Fleet, repo: FleetRepo, run: Run, *, adopted: bool = False
    ) -> FleetRepo | None:
        """Set the repository from `run` (None if nothing changed or another moved it)."""
        state, reason = outcome_of(run)
        fields: dict[str, object] = {}
        if reason != repo.reason:
            fields["reason"] = reason
        for name in ("pr_number", "pr_url", "head_sha"):
            value = getattr(run, name)
            if value is not None and value != getattr(repo, name):
                fields[name] = value
        if adopted:
            fields["run_id"] = run.id
        if state == repo.state and not fields:
            return None
        if state != repo.state and state.settled:
            fields["cost_usd"] = await self._cost(fleet.id, repo.repo)
        return await self.store.fleets.set_repo(
            fleet.id, repo.repo, state, expect=[repo.state], queued=adopted, **fields
        )

    async def _cost(self, fleet_id: int, repo: str) -> float:
        """What every run of the fleet took in the repository (retries and repairs too)."""
        model = self.settings.agent.model
        runs = await self.store.runs.find(fleet_id=fleet_id, repo=repo, limit=100)
        return round(sum(run.usage.cost_usd(model) for run in runs), 6)

    # -- 2. acting on the fleet's state --------------------------------------------------

    async def _act(self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]) -> None:
        if ROLLBACK_REQUESTED in fleet.milestones:
            await self._roll_back(fleet, repos)
        if fleet.state is FleetState.PLANNED:
            canary = canary_of(repos, fleet.canary_size)
            moved = await self.store.fleets.set_state(
                fleet.id,
                FleetState.CANARY,
                f"trying {len(canary)} of {len(planned_ones(repos))} repositories first",
                expect=[FleetState.PLANNED],
            )
            if moved is None:
                return
            fleet = moved
        if fleet.state is FleetState.CANARY:
            await self._canary(fleet, repos)
        elif fleet.state is FleetState.RUNNING:
            await self._fan_out(fleet, repos, settled)
        elif fleet.state is FleetState.STOPPED:
            await self._stopped(fleet, repos)
        if fleet.state in (FleetState.WAITING, FleetState.RUNNING):
            await self._canary_milestone(fleet, repos)

    async def _canary(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        canary = canary_of(repos, fleet.canary_size)
        if all(repo.state.settled for repo in canary):
            rest = [repo for repo in repos if repo.state.waiting]
            if not rest:  # the canary was all of it
                await self._finish(fleet, repos)
                return
            moved = await self.store.fleets.set_state(
                fleet.id,
                FleetState.WAITING,
                f"the canary is done: Continue to run the other {len(rest)}",
                expect=[FleetState.CANARY],
            )
            if moved is not None:
                await self._canary_milestone(moved, repos)
            return
        await self._queue(fleet, repos, [repo for repo in canary if repo.state.waiting])

    async def _canary_milestone(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """Say once that the canary is done: its PRs, verdicts, cost, and an estimate."""
        canary = canary_of(repos, fleet.canary_size)
        if CANARY_DONE in fleet.milestones or not all(r.state.settled for r in canary):
            return
        results = []
        durations = []
        for repo in canary:
            run = await self.store.runs.get(repo.run_id) if repo.run_id else None
            results.append(summary.CanaryResult(repo, run.review if run else None))
            if run is not None and run.started_at and run.finished_at:
                durations.append((run.finished_at - run.started_at).total_seconds() / 60)
        left = sum(repo.state.waiting for repo in repos)
        at_once = max(1, min(self.settings.fleet.concurrency, self.run_cap))
        estimate = summary.Estimate(
            repos=left,
            cost_usd=mean(r.cost_usd for r in canary) * left if canary else None,
            minutes=mean(durations) * math.ceil(left / at_once) if durations else None,
        )
        await self._milestone(
            fleet, CANARY_DONE, summary.canary_done(fleet, results, estimate, self.settings.web)
        )

    async def _fan_out(
        self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]
    ) -> None:
        if any(repo.state.failed for repo in settled) and await self._pause_if_failing(
            fleet, repos, settled
        ):
            return
        waiting = [repo for repo in repos if repo.state.waiting]
        if waiting:
            await self._queue(fleet, repos, waiting)
        elif not any(repo.state.in_flight for repo in repos):
            await self._finish(fleet, repos)
            return
        ran = planned_ones(repos)
        if ran and 2 * sum(repo.state.settled for repo in ran) >= len(ran):
            await self._milestone(fleet, HALF, summary.half_way(fleet, repos))

    async def _finish(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        counts = summary.counts_of(repos)
        moved = await self.store.fleets.set_state(
            fleet.id,
            FleetState.DONE,
            f"every repository has an end: {summary.counts_line(counts)}",
            expect=[fleet.state],
        )
        if moved is not None:
            await self._milestone(moved, DONE, summary.done(moved, repos))

    async def _pause_if_failing(
        self, fleet: Fleet, repos: list[FleetRepo], settled: list[FleetRepo]
    ) -> bool:
        """Pause the fleet when this pass's failures make HONK_FLEET_PAUSE_AFTER in a row
        (and again at each further multiple: a resumed fleet gets as many more)."""
        limit = self.settings.fleet.pause_after
        streak = await self._failures_in_a_row(fleet.id)
        before = max(0, len(streak) - sum(repo.state.failed for repo in settled))
        if len(streak) // limit <= before // limit:
            return False
        by_name = {repo.repo: repo for repo in repos}
        named = [
            f"{name} ({summary.reason_text(by_name[name]) or by_name[name].state.value})"
            for name in streak[-limit:]
        ]
        reason = f"{PAUSED_ITSELF} after {len(streak)} failures in a row: " + "; ".join(named)
        moved = await self.store.fleets.set_state(
            fleet.id, FleetState.PAUSED, clip(reason, 1000), expect=[FleetState.RUNNING]
        )
        if moved is None:
            return False
        pauses = sum(m == PAUSED or m.startswith(f"{PAUSED} ") for m in moved.milestones)
        name = PAUSED if pauses == 0 else f"{PAUSED} {pauses + 1}"
        await self._milestone(moved, name, summary.paused(moved))
        log.info("fleet %s: %s", fleet.id, reason)
        return True

    async def _failures_in_a_row(self, fleet_id: int) -> list[str]:
        """The repositories whose runs ended in failure last, in a row, in the order they
        ended (a run's end is a repository's move from in flight to an end)."""
        last: dict[str, FleetRepoState] = {}
        ends: list[tuple[str, bool]] = []
        for step in await self.store.fleets.transitions(fleet_id):
            before = last.get(step.repo)
            if before is not None and before.in_flight and step.state.settled:
                ends.append((step.repo, step.state.failed))
            last[step.repo] = step.state
        streak: list[str] = []
        for repo, failed in reversed(ends):
            if not failed:
                break
            streak.append(repo)
        return streak[::-1]

    async def _queue(
        self, fleet: Fleet, repos: list[FleetRepo], candidates: Sequence[FleetRepo]
    ) -> None:
        """Queue runs for `candidates` in order, within the fleet's and the installation's caps."""
        room = self.settings.fleet.concurrency - sum(repo.state.in_flight for repo in repos)
        if room <= 0 or not candidates:
            return
        active = await self.store.runs.find(
            installation_id=fleet.installation_id, states=list(ACTIVE_STATES), limit=RUN_LIMIT
        )
        room = min(room, self.run_cap - sum(run.fleet_id is not None for run in active))
        queued = 0
        for repo in candidates:
            if queued >= room:
                break
            moved = await self._queue_one(fleet, repo)
            if moved is not None and moved.state.in_flight:
                queued += 1
        if queued:
            self.wake_workers()

    async def _queue_one(self, fleet: Fleet, repo: FleetRepo) -> FleetRepo | None:
        """Queue one repository's run, or adopt the run a crash left without its note."""
        for _ in range(2):
            earlier = await self._newest_fleet_run(fleet.id, repo)
            if earlier is not None:
                log.info("fleet %s: %s adopts run %s", fleet.id, repo.repo, earlier.id)
                return await self._take_outcome(fleet, repo, earlier, adopted=True)
            run = await self.store.runs.enqueue(
                NewRun(
                    repo=repo.repo,
                    installation_id=fleet.installation_id,
                    kind=RunKind.FLEET,
                    fleet_id=fleet.id,
                    requested_by=fleet.requested_by,
                    instructions=fleet.request,
                )
            )
            if run is not None:
                return await self.store.fleets.set_repo(
                    fleet.id,
                    repo.repo,
                    FleetRepoState.QUEUED,
                    expect=[FleetRepoState.PLANNED],
                    queued=True,
                    run_id=run.id,
                    reason=None,
                )
            # Refused: another process queued it between our look and the insert.
        return None

    async def _newest_fleet_run(self, fleet_id: int, repo: FleetRepo) -> Run | None:
        """The fleet's run in the repository newer than the one it knows of, if any."""
        runs = await self.store.runs.find(fleet_id=fleet_id, repo=repo.repo, limit=20)
        for run in runs:  # newest first
            if run.kind is RunKind.FLEET:
                return run if repo.run_id is None or run.id > repo.run_id else None
        return None

    async def _stopped(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """A stopped fleet: what still runs is cancelled, what never ran is told so."""
        for repo in repos:
            if repo.state.in_flight and repo.run_id is not None:
                run = await self.store.runs.get(repo.run_id)
                if run is not None and run.state.active and not run.cancel_requested:
                    await self.store.runs.request_cancel(run.id)
            elif repo.state.waiting:
                await self.store.fleets.set_repo(
                    fleet.id,
                    repo.repo,
                    FleetRepoState.SKIPPED,
                    expect=[FleetRepoState.PLANNED],
                    reason=STOPPED_BEFORE,
                )

    async def _roll_back(self, fleet: Fleet, repos: list[FleetRepo]) -> None:
        """Close every unmerged PR of the fleet, as the installation, at BULK priority."""
        open_prs = [repo for repo in repos if has_open_pr(repo)]
        if not open_prs:
            if not any(repo.state.in_flight for repo in repos):
                closed = sum(
                    r.state is FleetRepoState.CLOSED and r.reason == ROLLED_BACK_REASON
                    for r in repos
                )
                await self._milestone(fleet, ROLLED_BACK, summary.rolled_back(fleet, closed))
            return
        gh = await self.github.installation_client(fleet.installation_id)
        with writes_at(Priority.BULK):
            for repo in open_prs:
                await self._close_pr(gh, fleet, repo)

    async def _close_pr(self, gh: GitHubClient, fleet: Fleet, repo: FleetRepo) -> None:
        assert repo.pr_number is not None
        state, reason = FleetRepoState.CLOSED, ROLLED_BACK_REASON
        try:
            pr = await gh.patch(
                f"/repos/{repo.repo}/pulls/{repo.pr_number}", data={"state": "closed"}
            )
            if isinstance(pr, dict) and pr.get("merged"):
                state, reason = FleetRepoState.MERGED, "merged before the roll back"
        except gidgethub.BadRequest as exc:
            # Refused: merged or closed meanwhile (its webhook may not have come yet), or gone.
            try:
                pr = await gh.pull(repo.repo, repo.pr_number)
            except Exception:
                log.warning("fleet %s: %s: cannot close its PR: %s", fleet.id, repo.repo, exc)
                return
            if pr.get("merged"):
                state, reason = FleetRepoState.MERGED, "merged before the roll back"
            elif pr.get("state") != "closed":
                log.warning("fleet %s: %s: cannot close its PR: %s", fleet.id, repo.repo, exc)
                return
        except Exception as exc:
            log.warning(
                "fleet %s: %s: cannot close its PR yet: %s",
                fleet.id,
                repo.repo,
                describe_error(exc),
            )
            return
        await self.store.fleets.set_repo(
            fleet.id, repo.repo, state, expect=[repo.state], reason=reason
        )

    # -- 3. reporting ---------------------------------------------------------------------

    async def _report(self, fleet_id: int) -> float:
        """Show the fleet as it is now, when it changed since last shown; seconds until the
        next edit is allowed (or the poll interval)."""
        poll = self.settings.fleet.poll_seconds
        fleet = await self.store.fleets.get(fleet_id)
        if fleet is None:
            return poll
        if fleet.version <= fleet.reported_version:
            if fleet.state.ended:
                await self._let_go(fleet.id)
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
            await self._let_go(fleet.id)
        return poll

    async def _let_go(self, fleet_id: int) -> None:
        """An ended fleet fully shown is nobody's work: its lease goes back."""
        if fleet_id in self._held:
            await self.store.fleets.release(fleet_id, self.owner)
            self._held.discard(fleet_id)
            self._shown_issue.pop(fleet_id, None)
            self._shown_slack.pop(fleet_id, None)
            self._reported_at.pop(fleet_id, None)

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

    async def _milestone(self, fleet: Fleet, name: str, message: Message) -> None:
        """Say `message` in the fleet's thread, once ever for `name` (whichever process)."""
        if not await self.store.fleets.announce(fleet.id, name):
            return
        fleet.milestones.append(name)
        log.info("fleet %s: milestone %s", fleet.id, name)
        if fleet.slack_thread is None or not self.slack.enabled:
            return
        text, blocks = message
        await self.slack.reply(fleet.slack_thread, text=text, blocks=blocks)

    # -- metrics --------------------------------------------------------------------------

    async def _refresh_metrics(self) -> None:
        """The fleet gauges: a reading of the store (every process reads the same)."""
        now = self._clock()
        if now - self._metrics_at < METRICS_EVERY:
            return
        self._metrics_at = now
        try:
            by_state = await self.store.fleets.count_by_state()
            open_states = [state for state in FleetState if not state.ended]
            repos = dict.fromkeys(FleetRepoState, 0)
            for fleet in await self.store.fleets.find(states=open_states, limit=1000):
                for state, n in (await self.store.fleets.counts(fleet.id)).items():
                    repos[state] += n
        except Exception as exc:
            log.warning("the fleet gauges were not refreshed: %s", describe_error(exc))
            return
        for fleet_state, count in by_state.items():
            metrics.fleets.labels(fleet_state.value).set(count)
        for repo_state, n in repos.items():
            metrics.fleet_repos.labels(repo_state.value).set(n)


# -- pure rules -------------------------------------------------------------------------------


def outcome_of(run: Run) -> tuple[FleetRepoState, str | None]:
    """The fleet repository's state for its run, and why (for people) when it did not work."""
    if run.state is RunState.QUEUED:
        return FleetRepoState.QUEUED, None
    if run.state is RunState.RUNNING:
        return FleetRepoState.RUNNING, None
    if run.state is RunState.CANCELLED:
        return FleetRepoState.FAILED, "cancelled"
    verdict = _verdict(run.review)
    if verdict is not None and verdict.stopped and run.state is not RunState.NO_CHANGE:
        why = "the review stopped the change"
        return FleetRepoState.VETOED, f"{why}: {short(run.error)}" if run.error else why
    if run.state is RunState.SUCCEEDED:
        if run.pr_number is None:
            return FleetRepoState.FAILED, "ended without a pull request"
        return FleetRepoState.PR_OPEN, None
    if run.state is RunState.NO_CHANGE:
        return FleetRepoState.SKIPPED, NOTHING_TO_CHANGE
    return FleetRepoState.FAILED, short(run.error) or "failed"


def _verdict(value: str | None) -> ReviewVerdict | None:
    try:
        return ReviewVerdict(value) if value else None
    except ValueError:
        return None


def short(text: str | None, limit: int = REASON_LIMIT) -> str:
    """A run's error as a short reason: its first line, cut."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return clip(line, limit)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def planned_ones(repos: Sequence[FleetRepo]) -> list[FleetRepo]:
    """The repositories the fleet runs: all but those the selection left out (never run)."""
    return [repo for repo in repos if not (repo.state is FleetRepoState.SKIPPED and not repo.runs)]


def canary_of(repos: Sequence[FleetRepo], size: int) -> list[FleetRepo]:
    """The canary: the first `size` repositories the fleet runs, in the selection's order
    (stable across restarts: the ones left out never run)."""
    return planned_ones(repos)[: max(size, 1)]


def has_open_pr(repo: FleetRepo) -> bool:
    """Its PR is open: one with CI and review to come, or a vetoed change's draft."""
    return repo.pr_number is not None and (repo.state.has_pr or repo.state is FleetRepoState.VETOED)


def has_work_left(fleet: Fleet, repos: Sequence[FleetRepo]) -> bool:
    """An ended fleet whose runs still end or whose roll back is not done."""
    if any(repo.state.in_flight for repo in repos):
        return True
    if ROLLBACK_REQUESTED in fleet.milestones:
        return any(has_open_pr(repo) for repo in repos) or ROLLED_BACK not in fleet.milestones
    return False
