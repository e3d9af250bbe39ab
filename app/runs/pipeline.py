"""One run, phase by phase: prepare, checkout, sandbox, setup, agent, verify, review,
publish, report. The phases' own work lives beside it: setup_phase (environment, toolchains,
setup commands), agent_phase (the agent and verification), review_phase (no change?,
`paths:`, the review), publish, after_push (a run resumed after its push, CI asked once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anthropic

from app.agent.loop import make_client
from app.agent.tools import ToolBox
from app.ci.reporter import CiReporter
from app.config import Settings
from app.errors import RunFailure
from app.github.auth import GitHubApp
from app.github.pacing import writes_at
from app.installations import repository_active
from app.log import describe_error
from app.models import Run, RunState
from app.repo_config import ConfigCache, RepoConfigError, load_repo_config, network_plan, run_limits
from app.runs.after_push import resume_after_push, settle_ci
from app.runs.agent_phase import AgentPhase
from app.runs.attempts import instruct
from app.runs.context import LimitStop, Outcome, RunCancelled, RunContext, SetupFailed
from app.runs.network import phase_network
from app.runs.outcome import outcome_checks
from app.runs.publish import BUILD_ARTIFACTS, RUN_PERMISSIONS, ReviewedChange, publish, report
from app.runs.results import Assignment, StoppedAtLimit, Workspace
from app.runs.review import mark_unreviewed
from app.runs.review_phase import ReviewPhase, check_paths, no_change, refuse_unverified
from app.runs.setup_phase import SetupPhase
from app.runs.stops import Stops
from app.runs.subject import load_subject
from app.runs.texts import branch_name
from app.runs.tracker import RunTracker
from app.slack.notify import SlackNotifier
from app.store import Store
from app.workspace.checkout import Checkout
from app.workspace.mirror import Workspaces
from app.workspace.run_home import SandboxHome
from app.workspace.sandbox import Sandbox
from app.workspace.toolchains import start_finding

log = logging.getLogger(__name__)

CANCELLED_NOTE = "Cancelled on request."


class Pipeline:
    """Executes runs; one instance serves every worker of a process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: SlackNotifier,
        *,
        ci: CiReporter,
        config_cache: ConfigCache,
        workspaces: Workspaces | None = None,
        anthropic_client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.ci = ci
        self.config_cache = config_cache
        self.workspaces = workspaces or Workspaces.for_settings(settings)
        self._anthropic = anthropic_client
        self._stops = Stops()
        self._sandbox_ok = False  # bwrap was seen to work in this process
        self.setup = SetupPhase(settings, store, self._stops)
        self.agent = AgentPhase(store, self._stops, lambda: self.anthropic)
        # The review's outcome checks: their in-flight base runs shared by this process's runs.
        self.review = ReviewPhase(
            settings,
            self.agent,
            outcome_checks(settings, store),
            self._stops,
            lambda: self.anthropic,
        )
        start_finding(settings.sandbox)  # the host's toolchains, found once per process

    @property
    def anthropic(self) -> anthropic.AsyncAnthropic:
        """Made on first use, so `honk serve` starts (and shows setup) before a key is set."""
        if self._anthropic is None:
            self._anthropic = make_client(self.settings.agent)
        return self._anthropic

    async def close(self) -> None:
        if self._anthropic is not None:
            await self._anthropic.close()

    def request_stop(self, run_id: int) -> None:
        """Stop the run: at once while the agent, setup or verification works, else soon."""
        self._stops.request(run_id)

    async def execute(self, run: Run) -> Outcome:
        """Run it to the end and report; the state to record. Raises only on shutdown."""
        self._stops.forget(run.id)
        if not await repository_active(self.store, run.installation_id, run.repo):
            # Uninstalled or suspended since the run was queued: nothing more is sent there.
            return Outcome(RunState.CANCELLED, "Honk is no longer installed on this repository")
        gh = await self.github.installation_client(
            run.installation_id, repositories=[run.repo_ref.name], permissions=RUN_PERMISSIONS
        )
        tracker = RunTracker(
            run, gh, self.store, self.slack, run_url=self.settings.web.run_url(run.id)
        )
        ctx = RunContext(run, gh, tracker, self.store)
        ctx.fleet_url = self.settings.web.fleet_url(run.fleet_id)
        # Every GitHub request the run makes, the tasks it starts too, at its kind's priority
        # (a fleet's in bulk, so it never takes the room kept for ordinary runs and people).
        with writes_at(ctx.rules.paced_at(run)):
            outcome = await self._execute(ctx)
        await mark_unreviewed(ctx)  # not on shutdown: that run is claimed again
        return outcome

    async def _execute(self, ctx: RunContext) -> Outcome:
        run, tracker = ctx.run, ctx.tracker
        try:
            outcome = await self._phases(ctx)
        except RunCancelled:
            await self.store.runs.add_step(run.id, "cancelled", "the pipeline stopped")
            await ctx.tracker.finished(
                RunState.CANCELLED, note=CANCELLED_NOTE, error="cancelled on request"
            )
            outcome = Outcome(RunState.CANCELLED, "cancelled on request")
        except LimitStop as exc:
            reason = str(exc)
            usage, model = await ctx.stored_usage(), ctx.model or self.settings.agent.model
            await ctx.tracker.finished(
                RunState.FAILED,
                error=reason,
                summary=ctx.result.summary if ctx.result is not None else "",
                usage_text=usage.describe(model),
                stopped=StoppedAtLimit(reason, exc.turns, usage.cost_usd(model)),
            )
            outcome = Outcome(RunState.FAILED, reason)
        except Exception as exc:
            reason = describe_error(exc)
            if isinstance(exc, RunFailure):  # expected: its message says it all
                log.warning("run %s failed: %s", run.id, reason)
            else:
                log.exception("run %s failed: %s", run.id, reason)
            summary = ctx.result.summary if ctx.result is not None else ""
            details = exc.details if isinstance(exc, SetupFailed) else None
            await ctx.tracker.finished(
                RunState.FAILED, error=reason, summary=summary, details=details
            )
            outcome = Outcome(RunState.FAILED, reason)
        finally:
            self._stops.forget(run.id)
            tracker.discard()  # finished() has written the last word; on shutdown, nothing
        return outcome

    async def _phases(self, ctx: RunContext) -> Outcome:
        await self._prepare(ctx)
        if await resume_after_push(ctx, self.github):
            await settle_ci(ctx, self.github, self.ci)
            return Outcome(RunState.SUCCEEDED)
        async with self._checkout(ctx) as work:
            await self.setup.environment(ctx, work)
            await self.setup.toolchains(ctx, work)
            await self.setup.run_commands(ctx, work)
            assignment = await self._instruct(ctx, work)
            # The agent's proxy (if its list names anything) covers each of its attempts,
            # the one after a failed verification or a veto too; verification stays offline.
            async with phase_network(ctx, work.sandbox, self.settings.network.cap(), "agent"):
                attempt = await self.agent.work(ctx, work, assignment)
                ended: Outcome | ReviewedChange | None = await no_change(ctx, work, attempt)
                if ended is None:
                    refuse_unverified(ctx, attempt)
                    await check_paths(ctx, work)
                    ended = await self.review.run(ctx, work, assignment, attempt)
            if isinstance(ended, Outcome):
                return ended  # no change, or the review withheld it
            await self._publish(ctx, ended)
        await settle_ci(ctx, self.github, self.ci)
        return Outcome(RunState.SUCCEEDED)

    # -- phases ---------------------------------------------------------------------------

    async def _prepare(self, ctx: RunContext) -> None:
        """The repository, what the run is about, its `.github/honk.yml`, its branch."""
        run = ctx.run
        ctx.repo_info = await ctx.gh.getitem(f"/repos/{run.repo}")
        default_branch = ctx.repo_info["default_branch"]
        ctx.subject = await load_subject(
            run, ctx.gh, ctx.store, ctx.tracker.progress, continues_pull=ctx.rules.continues_pull
        )
        await ctx.tracker.events.subject(ctx.subject.title)  # the run page's heading
        config_error: RepoConfigError | None = None
        try:
            installation = await self.github.installation_client(run.installation_id)
            ctx.config = await load_repo_config(
                installation, run.repo, default_branch, self.config_cache
            )
            ctx.network_plan = network_plan(self.settings.network, ctx.config)
        except RepoConfigError as exc:
            config_error = exc
        subject = ctx.subject
        await ctx.tracker.started(subject.issue or subject.pull, channel=ctx.config.slack_channel)
        if config_error is not None:
            # Running with defaults would silently drop the file's `paths:` and `network:`
            # limits: stop, and the tracking comment names the error (a host or preset the
            # operator's HONK_NETWORK_ALLOW does not allow, too).
            raise RunFailure(f"`.github/honk.yml` is not valid: {config_error}")
        ctx.limits = run_limits(self.settings.agent, ctx.config)
        ctx.model = ctx.config.model or self.settings.agent.model
        pull = subject.pull or {}
        branch = (
            run.branch
            or (pull.get("head") or {}).get("ref")
            or branch_name(ctx.rules.branch_key(run), subject.title)
        )
        base = run.base_branch or (pull.get("base") or {}).get("ref") or default_branch
        await ctx.save(branch=branch, base_branch=base)
        ctx.branch, ctx.base_branch = branch, base
        self._stops.check(run)

    @contextlib.asynccontextmanager
    async def _checkout(self, ctx: RunContext) -> AsyncIterator[Workspace]:
        """A fresh clone of the run's branch and its sandbox, removed however the run ends."""
        run = ctx.run
        await ctx.tracker.phase("checkout")
        token = await self.github.installation_token(
            run.installation_id, repositories=[run.repo_ref.name], permissions=RUN_PERMISSIONS
        )
        async with self.workspaces.checkout(
            repo=run.repo,
            clone_url=ctx.repo_info["clone_url"],
            token=token.token,
            run_id=run.id,
            attempt=run.attempts,
            branch=ctx.branch,
            base=ctx.base_branch,
        ) as checkout:
            ctx.tracker.progress.done("checkout", f"`{ctx.branch}` from `{ctx.base_branch}`")
            await asyncio.to_thread(checkout.ignore_locally, BUILD_ARTIFACTS)
            yield await self._sandbox(checkout, token.token)

    async def _sandbox(self, checkout: Checkout, token: str) -> Workspace:
        """No agent without a working sandbox, unless the operator said HONK_SANDBOX=off."""
        if not self._sandbox_ok:
            reason = await Sandbox.check(self.settings.sandbox.mode)
            if reason is not None:
                raise RunFailure(
                    f"the sandbox does not work here ({reason}); Honk runs no agent without "
                    "one (install bubblewrap, or set HONK_SANDBOX=off, which is unsafe)"
                )
            self._sandbox_ok = True
        # A network namespace of its own, always: loopback, and the phase's proxy if any.
        # One HOME for the run's commands: setup, the agent, verify (the review's test runs
        # get a copy of it as setup left it: Checkout.setup_home).
        home = checkout.home
        sandbox = Sandbox.for_settings(
            self.settings, checkout.path, home=SandboxHome(home) if home else None
        )
        toolbox = ToolBox.for_settings(self.settings.agent, sandbox)
        return Workspace(checkout, sandbox, toolbox, token)

    async def _instruct(self, ctx: RunContext, work: Workspace) -> Assignment:
        """The agent's task: the issue, writers' comments, the repository's own instructions."""
        return await instruct(ctx, work, self.store, output_limit=self.settings.agent.output_limit)

    async def _publish(self, ctx: RunContext, change: ReviewedChange) -> None:
        """Commit, push, open the PR; then the `Honk` check run and the closing report."""
        await ctx.tracker.phase("publish", "pushing")
        await ctx.tracker.events.diff(await change.workspace.checkout.unified_diff())
        usage = await ctx.stored_usage()
        pr, closing = await publish(ctx, change, self.github, usage)
        await report(ctx, pr, closing)
