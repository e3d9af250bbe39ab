"""One run, phase by phase: prepare, checkout, sandbox, setup, agent, verify, publish, report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import anthropic

from app import metrics
from app.agent.loop import AgentEvent, AgentLimits, AgentResult, make_client, run_agent
from app.agent.prompts import AgentTask
from app.agent.tools import ToolBox
from app.ci.reporter import CiReporter
from app.config import Settings
from app.errors import RunFailure
from app.github.auth import GitHubApp
from app.github.pacing import writes_at
from app.installations import repository_active
from app.log import describe_error, redact
from app.models import Run, RunState
from app.repo_config import (
    ConfigCache,
    RepoConfigError,
    load_repo_config,
    network_plan,
    run_limits,
)
from app.review.outcome import OutcomeReport
from app.runs.attempts import combine, instruct, second_attempt_limits, verification
from app.runs.context import LimitStop, Outcome, RunCancelled, RunContext, SetupFailed
from app.runs.environment import (
    DevcontainerError,
    find_devcontainer,
    load_devcontainer,
    plan_environment,
)
from app.runs.network import explain_refusals, phase_network
from app.runs.outcome import check_outcome, outcome_checks
from app.runs.publish import (
    BUILD_ARTIFACTS,
    RUN_PERMISSIONS,
    ReviewedChange,
    limit_reason,
    open_pull,
    publish,
    report,
    report_no_change,
    saved_closing,
    withhold,
)
from app.runs.results import Assignment, Attempt, StoppedAtLimit, Workspace
from app.runs.review import mark_unreviewed, review_change
from app.runs.stops import Stops
from app.runs.subject import load_subject
from app.runs.texts import FailureDetails, Verification, branch_name, tail
from app.runs.tracker import RunTracker
from app.slack.notify import SlackNotifier
from app.store import Store
from app.untrusted import code
from app.workspace.caches import CacheScope, PackageCaches, Restored, key_at
from app.workspace.checkout import Checkout, refuse_outside
from app.workspace.mirror import Workspaces
from app.workspace.run_home import SandboxHome, snapshot
from app.workspace.sandbox import Sandbox
from app.workspace.toolchain_versions import choose, read_declared
from app.workspace.toolchains import find_installed, start_finding

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
        # Package caches kept across runs, fed by setup only (None: HONK_CACHE_MAX_MB=0).
        self.caches = PackageCaches.for_settings(settings)
        self._anthropic = anthropic_client
        self._stops = Stops()
        self._check_stop = self._stops.check
        self._until_stopped = self._stops.until_stopped
        self._sandbox_ok = False  # bwrap was seen to work in this process
        # The review's outcome checks: their in-flight base runs shared by this process's runs.
        self.outcome = outcome_checks(settings, store)
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
        if await self._resume(ctx):
            await self._settle_ci(ctx)
            return Outcome(RunState.SUCCEEDED)
        async with self._checkout(ctx) as work:
            await self._environment(ctx, work)
            await self._toolchains(ctx, work)
            await self._setup(ctx, work)
            assignment = await self._instruct(ctx, work)
            # The agent's proxy (if its list names anything) covers each of its attempts,
            # the one after a failed verification or a veto too; verification stays offline.
            async with phase_network(ctx, work.sandbox, self.settings.network.cap(), "agent"):
                attempt = await self._work(ctx, work, assignment)
                ended: Outcome | ReviewedChange | None = await self._no_change(ctx, work, attempt)
                if ended is None:
                    self._refuse_unverified(ctx, attempt)
                    await self._check_paths(ctx, work)
                    ended = await self._review(ctx, work, assignment, attempt)
            if isinstance(ended, Outcome):
                return ended  # no change, or the review withheld it
            await self._publish(ctx, ended)
        await self._settle_ci(ctx)
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
        self._check_stop(run)

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

    async def _environment(self, ctx: RunContext, work: Workspace) -> None:
        """The repository's variables and setup commands: `env:` and `setup:` of its
        `.github/honk.yml`, or, without `setup:`, its devcontainer.json (the base commit's),
        with a note of what Honk did not do of it."""
        checkout, sandbox = work.checkout, work.sandbox
        devcontainer, unused = None, None
        if "setup" in ctx.config.fields_set:
            unused = await find_devcontainer(checkout)
        else:
            try:
                devcontainer = await load_devcontainer(checkout, sandbox.visible_root)
            except DevcontainerError as exc:
                # Its commands are the repository's setup: without them the run would fail
                # in confusing ways, so it stops here and says why, as for honk.yml.
                raise RunFailure(str(exc)) from None
        ctx.environment = plan_environment(ctx.config, devcontainer, unused=unused)
        sandbox.repository_env = dict(ctx.environment.env)
        for note in ctx.environment.notes:
            await ctx.tracker.notice(note, comment=note in ctx.environment.comment)

    async def _toolchains(self, ctx: RunContext, work: Workspace) -> None:
        """The host's toolchains the repository's declared versions choose (.nvmrc,
        rust-toolchain.toml, go.mod...), for every sandbox of the run: setup, the agent,
        `verify:`, the review's test runs. A version Honk does not have is said before the
        agent starts, on the run page and the tracking comment; the run uses the default."""
        found = await find_installed(self.settings.sandbox)
        declared = await asyncio.to_thread(read_declared, work.checkout.path)
        choice = choose(found, declared, dict(self.settings.sandbox.toolchain_defaults))
        work.sandbox.toolchains = choice.toolchains
        if choice.chosen:
            used = ", ".join(f"{t.language} {t.version} ({t.source})" for t in choice.chosen)
            await self.store.runs.add_step(ctx.run.id, "toolchains", used)
        for note in choice.notes:
            await ctx.tracker.notice(note)

    async def _setup(self, ctx: RunContext, work: Workspace) -> None:
        """The repository's setup commands (installing dependencies) reach what
        `setup_network:` allows, so they run over the base branch's files only: on a
        follow-up, whose branch the agent wrote, the work tree is the base commit's while
        they run, and what they made stays. Each command's output is a run event; what the
        work tree holds beyond the commit once setup is done is never committed."""
        checkout = work.checkout
        commands = ctx.environment.commands
        if commands:
            await self._run_setup(ctx, work)
        await checkout.record_setup_products()
        if checkout.home is not None:
            try:
                checkout.setup_home = await snapshot(checkout.home)
            except Exception as exc:  # the review's test runs then get HOME=/tmp, as before
                log.warning("run %s: no copy of the home: %s", ctx.run.id, describe_error(exc))

    async def _run_setup(self, ctx: RunContext, work: Workspace) -> None:
        checkout, sandbox = work.checkout, work.sandbox
        commands, events = ctx.environment.commands, ctx.tracker.events
        await events.phase("setup", f"{len(commands)} command{'s' if len(commands) != 1 else ''}")
        restored = await self._restore_caches(ctx, checkout)
        failed = None
        async with (
            checkout.on_base_tree() as switched,
            phase_network(ctx, sandbox, self.settings.network.cap(), "setup"),
        ):
            if switched:
                await self.store.runs.add_step(ctx.run.id, "setup", "on the base branch's files")
            for index, command in enumerate(commands):
                await events.setup_command(index, command.line, command.origin)
                result = await self._until_stopped(ctx.run, sandbox.run(command.line))
                await events.setup_command(
                    index, command.line, command.origin, exit_code=result.exit_code,
                    output=result.output, limit=result.limit, timed_out=result.timed_out,
                )  # fmt: skip
                if result.exit_code != 0:
                    failed = (command, result)
                    break
        if failed is None:
            await self._save_caches(ctx, checkout, restored)
            return
        # The phase's proxy has stopped: its refusals are summed up in ctx.network now.
        command, result = failed
        how = (
            "timed out" if result.timed_out
            else result.limit or f"exit {result.exit_code}"
        )  # fmt: skip
        shown = command.line if len(command.line) <= 200 else command.line[:199] + "…"
        where = "" if command.origin == "setup" else f" ({command.origin})"
        plan = ctx.network_plan
        details = FailureDetails(
            command=shown,
            tail=redact(tail(result.output)),
            notes=explain_refusals(
                ctx.network.get("setup"), plan.setup, self.settings.network.cap(), "setup"
            ),
        )
        raise SetupFailed(f"setup command {code(shown)}{where} failed ({how})", details)

    async def _restore_caches(self, ctx: RunContext, checkout: Checkout) -> Restored | None:
        """The repository's package caches copied into the run's home before setup: the
        entry for the base commit's lock files, else the repository's latest."""
        if self.caches is None or checkout.home is None:
            return None
        try:
            key = await key_at(checkout.path, await checkout.base_sha())
        except Exception as exc:  # a cache is an optimisation: the run goes on without one
            log.warning("run %s: no cache key: %s", ctx.run.id, describe_error(exc))
            return None
        scope = CacheScope.repository(ctx.run.installation_id, ctx.run.repo)
        restored = await self.caches.restore(scope, key, checkout.home)
        await ctx.tracker.notice(restored.describe(), comment=False)
        return restored

    async def _save_caches(
        self, ctx: RunContext, checkout: Checkout, restored: Restored | None
    ) -> None:
        """After setup succeeded, before the agent: the home's caches kept for the next run."""
        if self.caches is None or restored is None or checkout.home is None:
            return
        scope = CacheScope.repository(ctx.run.installation_id, ctx.run.repo)
        saved = await self.caches.save(scope, checkout.home, restored)
        if saved is not None:
            note = f"Package caches saved for the next run: key {restored.key[:12]}, "
            await ctx.tracker.notice(note + f"{saved / (1 << 20):,.0f} MB.", comment=False)

    async def _instruct(self, ctx: RunContext, work: Workspace) -> Assignment:
        """The agent's task: the issue, writers' comments, the repository's own instructions."""
        return await instruct(ctx, work, self.store, output_limit=self.settings.agent.output_limit)

    async def _work(self, ctx: RunContext, work: Workspace, assignment: Assignment) -> Attempt:
        """The agent, within the run's limits; then Honk's check of what it did."""
        await ctx.tracker.phase("agent", "starting")
        began = time.time()
        result = ctx.result = await self._agent(ctx, work, assignment.task(), assignment.limits)
        return await self._verify(ctx, work, assignment, result, began)

    async def _verify(
        self,
        ctx: RunContext,
        work: Workspace,
        assignment: Assignment,
        result: AgentResult,
        began: float,
    ) -> Attempt:
        """Honk's own check of the change; one more bounded attempt when it fails."""
        await ctx.tracker.phase("verify")
        checked = await self._verification(ctx, work, result)
        attempt = Attempt(result, checked, began)
        if checked.passed is False:
            attempt = (
                await self._again(
                    ctx,
                    work,
                    assignment,
                    attempt,
                    f"Your previous change failed verification. "
                    f"`{checked.command}` printed:\n{checked.output}",
                    "fixing the failed verification",
                )
                or attempt
            )
        self._verified(ctx, attempt)
        return attempt

    async def _again(
        self,
        ctx: RunContext,
        work: Workspace,
        assignment: Assignment,
        attempt: Attempt,
        feedback: str,
        note: str,
    ) -> Attempt | None:
        """The agent once more with `feedback`, within half the limits; then verify what changed.

        None when the first attempt ended at a limit or in an error: no second one then.
        """
        result = attempt.result
        if result.limit_hit or result.outcome != "done":
            return None
        await ctx.tracker.phase("agent", note)
        checkout = work.checkout
        before = await checkout.unified_diff()
        limits = second_attempt_limits(assignment.limits)
        second = await self._agent(ctx, work, assignment.task(feedback), limits)
        combined = ctx.result = combine(result, second)
        checked = attempt.verification
        if await checkout.unified_diff() != before:  # the same change keeps its verification
            await ctx.tracker.phase("verify")
            checked = await self._verification(ctx, work, combined)
        return Attempt(combined, checked, attempt.began)

    def _verified(self, ctx: RunContext, attempt: Attempt) -> None:
        ctx.tracker.progress.done("verify", attempt.verification.describe())
        self._check_stop(ctx.run)
        if attempt.result.outcome == "error":
            raise RunFailure(attempt.result.error or "the agent failed")

    def _refuse_unverified(self, ctx: RunContext, attempt: Attempt) -> None:
        """A kind that publishes only verified changes (a fleet's) fails the run when the
        verification failed after its second attempt: no draft PR, the reason first."""
        checked = attempt.verification
        if checked.passed is False and not ctx.rules.publishes_unverified:
            raise RunFailure(f"verification failed: {code(checked.command or '')} did not pass")

    async def _no_change(
        self, ctx: RunContext, work: Workspace, attempt: Attempt
    ) -> Outcome | None:
        """The agent changed nothing: say why on the issue and open no PR."""
        run, result, checkout = ctx.run, attempt.result, work.checkout
        if await checkout.has_changes():
            return None
        if ctx.rules.may_have_unpublished_work(run) and await checkout.commits_ahead_of_base():
            return None  # an earlier attempt pushed this branch but died before the PR
        if result.limit_hit:
            raise LimitStop(limit_reason(result), ctx.limits.max_turns)
        return await report_no_change(ctx, result, await ctx.stored_usage())

    async def _check_paths(self, ctx: RunContext, work: Workspace) -> None:
        """`paths:` in `.github/honk.yml`, held on exactly what is staged for the commit
        (submodule commits, mode and type changes included)."""
        refuse_outside(await work.checkout.stage(), ctx.config.path_allowed)

    async def _review(
        self, ctx: RunContext, work: Workspace, assignment: Assignment, attempt: Attempt
    ) -> Outcome | ReviewedChange:
        """The judge before the PR (runs/review.py); an objection gets the agent once more.
        The change to publish, or how the run ended (the second attempt undid the change,
        or the review withheld it)."""
        await ctx.tracker.phase("review")
        current = attempt

        async def again(feedback: str) -> Attempt | None:
            nonlocal current
            second = await self._again(
                ctx, work, assignment, current, feedback, "addressing the review"
            )
            if second is None:
                return None
            current = second
            self._verified(ctx, second)
            await self._check_paths(ctx, work)
            return second

        async def outcome() -> OutcomeReport:
            # Stoppable like verification: a stop request kills the test runs.
            checked = check_outcome(ctx, work, current, self.outcome)
            return await self._until_stopped(ctx.run, checked)

        review = await review_change(
            ctx,
            work,
            attempt,
            assignment.request,
            settings=self.settings,
            client=self.anthropic,
            again=again,
            outcome=outcome,
        )
        self._check_stop(ctx.run)
        if review.retried and (stopped := await self._no_change(ctx, work, current)) is not None:
            return stopped  # the second attempt undid the change
        change = ReviewedChange(work, current, review)
        if review.withheld:
            return await withhold(ctx, change, await ctx.stored_usage())
        return change

    async def _publish(self, ctx: RunContext, change: ReviewedChange) -> None:
        """Commit, push, open the PR; then the `Honk` check run and the closing report."""
        await ctx.tracker.phase("publish", "pushing")
        await ctx.tracker.events.diff(await change.workspace.checkout.unified_diff())
        usage = await ctx.stored_usage()
        pr, closing = await publish(ctx, change, self.github, usage)
        await report(ctx, pr, closing)

    async def _resume(self, ctx: RunContext) -> bool:
        """A run claimed again after it pushed its change (an earlier attempt died after the
        push, with or without its PR): its PR opened (or found) and its report said from what
        it kept (publish.Closing), with no checkout and no agent. False: start from the top."""
        closing = await saved_closing(ctx)
        if closing is None:
            return False
        run = ctx.run
        log.info("run %s pushed %s before it was claimed again: resuming after the push",
                 run.id, closing.sha[:7])  # fmt: skip
        await self.store.runs.add_step(run.id, "resumed", f"after pushing {closing.sha[:7]}")
        await ctx.tracker.phase("publish", "resuming after a restart")
        if run.pr_number is not None and not ctx.rules.continues_pull:
            pr = await ctx.gh.pull(run.repo, run.pr_number)
        else:
            pr = await open_pull(ctx, self.github, closing)
        await report(ctx, pr, closing)
        return True

    async def _settle_ci(self, ctx: RunContext) -> None:
        """CI may have finished on the commit before the run recorded it: ask once now."""
        sha = ctx.run.head_sha
        if not sha:
            return
        try:
            gh = await self.github.installation_client(ctx.run.installation_id)
            await self.ci.settle(gh, ctx.run.repo, sha)
        except Exception as exc:
            log.warning("could not look at CI on %s: %s", sha[:7], describe_error(exc))

    # -- the agent ------------------------------------------------------------------------

    async def _agent(
        self, ctx: RunContext, work: Workspace, task: AgentTask, limits: AgentLimits
    ) -> AgentResult:
        run, tracker = ctx.run, ctx.tracker

        async def on_event(event: AgentEvent) -> None:
            if event.usage is not None:
                await self.store.runs.add_usage(run.id, event.usage)
                usage = event.usage
                metrics.count_usage(ctx.model, usage.to_dict(), usage.cost_usd(ctx.model))
            if event.kind == "turn":
                await tracker.note("agent", f"turn {event.turn}")
            await tracker.events.agent(event)  # the run page's transcript

        async def should_stop() -> bool:
            return self._stops.requested(run.id)

        await tracker.events.agent_started(ctx.model, limits)
        result = await self._until_stopped(
            run,
            run_agent(
                self.anthropic,
                model=ctx.model,
                task=task,
                tools=work.toolbox,
                limits=limits,
                on_event=on_event,
                should_stop=should_stop,
            ),
        )
        if result.outcome == "cancelled":
            raise RunCancelled()
        tracker.progress.done("agent", f"{result.turns} turns, {result.outcome}")
        return result

    async def _verification(
        self, ctx: RunContext, work: Workspace, result: AgentResult
    ) -> Verification:
        sandbox = work.sandbox
        checked = await verification(
            ctx.config.verify,
            result,
            # Offline whatever `network:` says: it runs the code the agent wrote.
            lambda cmd: self._until_stopped(ctx.run, sandbox.run(cmd, offline=True)),
        )
        await ctx.tracker.events.verification(checked)  # for the run page
        return checked
