"""One run, phase by phase: checkout -> agent -> verify -> commit/push -> PR -> report."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic

from app.agent.loop import AgentEvent, AgentLimits, AgentResult, make_client, run_agent
from app.agent.prompts import build_task, read_repo_instructions
from app.agent.tools import ToolBox
from app.ci_report import CiReporter
from app.config import Settings
from app.follow_up import follow_up_request
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.installations import repository_active
from app.models import Run, RunKind, RunState, Usage
from app.people import co_author, write_access_check, writer_comments
from app.repo_config import ConfigCache, RepoConfig, RepoConfigError, load_repo_config
from app.report import (
    Verification,
    branch_name,
    check_run_conclusion,
    check_run_output,
    commit_message,
    follow_up_commit_message,
    no_change_comment,
    pr_body,
)
from app.slack.notify import SlackNotifier
from app.store import Store
from app.tracker import RunTracker
from app.workspace.mirror import Checkout, Workspaces
from app.workspace.sandbox import Sandbox

log = logging.getLogger(__name__)

# What a run's installation token may do, and on which repository: no more.
RUN_PERMISSIONS = {
    "contents": "write",
    "pull_requests": "write",
    "issues": "write",
    "checks": "write",
    "metadata": "read",
}
# Running tests leaves caches behind; they are never part of the change, even in a
# repository without a .gitignore. Kept in .git/info/exclude, which is not committed.
BUILD_ARTIFACTS = (
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".coverage",
    "node_modules/",
    "*.egg-info/",
)
CANCELLED_NOTE = "Cancelled on request."

T = TypeVar("T")


class RunCancelled(Exception):
    """Someone asked for the run to stop."""


@dataclass
class Outcome:
    state: RunState
    error: str | None = None


@dataclass
class Subject:
    """What a run works on: the issue, and for a follow-up the PR it continues."""

    issue: dict[str, Any] | None
    pull: dict[str, Any] | None
    title: str

    @property
    def as_issue(self) -> dict[str, Any] | None:
        """The issue, or for a follow-up without one the PR (its title and description)."""
        if self.issue is not None:
            return self.issue
        if self.pull is not None:
            return {"title": self.pull["title"], "body": self.pull.get("body"), "number": 0}
        return None


class Pipeline:
    """Executes runs; one instance serves every worker of a process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: SlackNotifier,
        *,
        workspaces: Workspaces | None = None,
        anthropic_client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.workspaces = workspaces or Workspaces(settings.data_dir)
        self._anthropic = anthropic_client
        self.config_cache = ConfigCache()
        self.ci = CiReporter(settings, store, slack, config_cache=self.config_cache)
        self._stop_requested: set[int] = set()
        self._sandbox_ok = False  # bwrap was seen to work in this process
        self._interruptible: dict[int, asyncio.Future[Any]] = {}

    @property
    def anthropic(self) -> anthropic.AsyncAnthropic:
        """Made on first use, so `honk serve` starts (and shows setup) before a key is set."""
        if self._anthropic is None:
            self._anthropic = make_client(self.settings)
        return self._anthropic

    async def close(self) -> None:
        if self._anthropic is not None:
            await self._anthropic.close()

    def request_stop(self, run_id: int) -> None:
        """Stop the run: at once while the agent, setup or verification works, else soon."""
        self._stop_requested.add(run_id)
        work = self._interruptible.get(run_id)
        if work is not None:
            work.cancel()

    def _check_stop(self, run: Run) -> None:
        if run.id in self._stop_requested:
            raise RunCancelled()

    async def _until_stopped(self, run: Run, work: Awaitable[T]) -> T:
        """Await `work`; a stop request cancels it (killing its sandboxed command)."""
        self._check_stop(run)
        task = asyncio.ensure_future(work)
        self._interruptible[run.id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if run.id in self._stop_requested and (current is None or not current.cancelling()):
                raise RunCancelled() from None
            raise
        finally:
            self._interruptible.pop(run.id, None)

    async def execute(self, run: Run) -> Outcome:
        """Run it to the end and report; the state to record. Raises only on shutdown."""
        self._stop_requested.discard(run.id)
        if not await repository_active(self.store, run.installation_id, run.repo):
            # Uninstalled or suspended since the run was queued: nothing more is sent there.
            return Outcome(RunState.CANCELLED, "Honk is no longer installed on this repository")
        repo_name = run.repo.split("/", 1)[1]
        gh = await self.github.installation_client(
            run.installation_id, repositories=[repo_name], permissions=RUN_PERMISSIONS
        )
        tracker = RunTracker(run, gh, self.store, self.slack)
        try:
            return await self._execute(run, gh, tracker)
        except RunCancelled:
            await self.store.add_step(run.id, "cancelled", "the pipeline stopped")
            await tracker.finished(
                RunState.CANCELLED, note=CANCELLED_NOTE, error="cancelled on request"
            )
            return Outcome(RunState.CANCELLED, "cancelled on request")
        except Exception as exc:
            reason = _reason(exc)
            log.exception("run %s failed: %s", run.id, reason)
            await tracker.finished(RunState.FAILED, error=reason)
            return Outcome(RunState.FAILED, reason)
        finally:
            self._stop_requested.discard(run.id)

    async def _execute(self, run: Run, gh: GitHubClient, tracker: RunTracker) -> Outcome:
        repo_info = await gh.getitem(f"/repos/{run.repo}")
        default_branch = repo_info["default_branch"]
        subject = await self._subject(gh, run)
        config_error: RepoConfigError | None = None
        try:
            config = await load_repo_config(
                await self.github.installation_client(run.installation_id),
                run.repo,
                default_branch,
                self.config_cache,
            )
        except RepoConfigError as exc:
            config, config_error = RepoConfig(), exc
        if config.slack_channel and not run.slack_ts:
            run.slack_channel = config.slack_channel  # the repository's own channel
        await tracker.started(subject.issue or subject.pull)
        if config_error is not None:
            # Running with defaults would silently drop the file's `paths:` and `network:`
            # limits: stop, and the tracking comment names the error.
            raise RuntimeError(f"`.github/honk.yml` is not valid: {config_error}")
        pull = subject.pull or {}
        branch = (
            run.branch
            or (pull.get("head") or {}).get("ref")
            or branch_name(run.issue_number or run.pr_number or run.id, subject.title)
        )
        base = run.base_branch or (pull.get("base") or {}).get("ref") or default_branch
        await self.store.update_run(run.id, branch=branch, base_branch=base)
        run.branch, run.base_branch = branch, base
        self._check_stop(run)

        await tracker.phase("checkout")
        token = await self.github.installation_token(
            run.installation_id,
            repositories=[run.repo.split("/", 1)[1]],
            permissions=RUN_PERMISSIONS,
        )
        async with self.workspaces.checkout(
            repo=run.repo,
            clone_url=repo_info["clone_url"],
            token=token.token,
            run_id=run.id,
            branch=branch,
            base=base,
        ) as checkout:
            tracker.progress.done("checkout", f"`{branch}` from `{base}`")
            await asyncio.to_thread(checkout.ignore_locally, BUILD_ARTIFACTS)
            return await self._work(run, gh, tracker, checkout, subject, config, token.token)

    async def _subject(self, gh: GitHubClient, run: Run) -> Subject:
        issue = await gh.issue(run.repo, run.issue_number) if run.issue_number else None
        pull = None
        if run.kind != RunKind.ISSUE and run.pr_number:
            pull = await gh.pull(run.repo, run.pr_number)
        request = run.instructions.strip()
        title = (
            (issue or {}).get("title")
            or (pull or {}).get("title", "").removeprefix("[unfinished] ")
            or (request.splitlines()[0][:72] if request else "")
            or "change"
        )
        return Subject(issue, pull, title)

    async def _request(self, gh: GitHubClient, run: Run, subject: Subject) -> str:
        """The run's extra instructions; a follow-up's with the context it continues from."""
        if run.kind != RunKind.ISSUE:
            return await follow_up_request(gh, self.store, run, write_access_check(gh, run.repo))
        return run.instructions if subject.issue else ""

    async def _work(
        self,
        run: Run,
        gh: GitHubClient,
        tracker: RunTracker,
        checkout: Checkout,
        subject: Subject,
        config: RepoConfig,
        token: str,
    ) -> Outcome:
        settings = self.settings
        await self._require_sandbox()
        sandbox = Sandbox(
            checkout.path,
            mode=settings.sandbox,
            ro_paths=settings.sandbox_ro_paths,
            # bwrap cannot filter by host: a repository that names any host gets the
            # network for the agent; without `network:` the agent is offline.
            network=bool(config.network),
            timeout=settings.command_timeout,
            output_limit=settings.output_limit,
            hide_paths=[settings.data_dir.resolve()],
        )
        for command in config.setup:
            # Setup (installing dependencies) may use the network; the agent may not.
            result = await self._until_stopped(run, sandbox.run(command, network=True))
            if result.exit_code != 0:
                raise RuntimeError(f"setup command `{command}` failed (exit {result.exit_code})")
        comments = (
            await writer_comments(gh, run.repo, run.issue_number, write_access_check(gh, run.repo))
            if subject.issue and run.issue_number
            else []
        )
        instructions = await asyncio.to_thread(read_repo_instructions, checkout.path)
        task_issue = subject.as_issue or {
            "title": run.instructions[:80],
            "body": run.instructions,
            "number": 0,
        }
        extra = await self._request(gh, run, subject)
        task_with = functools.partial(
            build_task,
            repo=run.repo,
            issue=task_issue,
            comments=comments,
            repo_instructions=instructions,
            verify_command=config.verify,
            visible_root=sandbox.visible_root,
        )
        task = task_with(extra_instructions=extra)
        # A repository may lower the operator's limits, never raise them (cost).
        limits = AgentLimits(
            max_turns=min(config.max_turns or settings.max_turns, settings.max_turns),
            max_seconds=min(config.max_minutes or settings.max_minutes, settings.max_minutes) * 60,
            max_tokens=settings.max_tokens,
            output_limit=settings.output_limit,
        )
        model = config.model or settings.model
        toolbox = ToolBox(sandbox)
        await tracker.phase("agent", "starting")
        result = await self._agent(run, tracker, task, toolbox, limits, model)

        await tracker.phase("verify")
        verification = await self._verify(run, config, sandbox, result)
        if verification.passed is False and not result.limit_hit and result.outcome == "done":
            # One more bounded attempt with the failure in front of the agent.
            await tracker.phase("agent", "fixing the failed verification")
            retry_task = task_with(
                extra_instructions=(
                    f"{extra}\n\nYour previous change failed verification. "
                    f"`{verification.command}` printed:\n{verification.output}"
                ).strip()
            )
            retry_limits = dataclasses.replace(
                limits,
                max_turns=max(limits.max_turns // 2, 5),
                max_seconds=limits.max_seconds / 2,
            )
            second = await self._agent(run, tracker, retry_task, toolbox, retry_limits, model)
            result = _combine(result, second)
            await tracker.phase("verify")
            verification = await self._verify(run, config, sandbox, result)
        tracker.progress.done("verify", verification.describe())
        self._check_stop(run)

        usage = (await self.store.get_run(run.id) or run).usage
        usage_text = usage.describe(model)
        if result.outcome == "error":
            raise RuntimeError(result.error or "the agent failed")
        if not await checkout.has_changes() and not await self._unpublished(run, checkout):
            if result.limit_hit:
                raise RuntimeError(f"{_limit_reason(result)} before any change was made")
            text = no_change_comment(result.summary)
            if tracker.comment_on:
                await gh.comment(run.repo, tracker.comment_on, text)
            tracker.progress.states["publish"] = "skipped"
            await tracker.finished(RunState.NO_CHANGE, note=text[:500], usage_text=usage_text)
            return Outcome(RunState.NO_CHANGE)
        disallowed = [p for p in await checkout.changed_files() if not config.path_allowed(p)]
        if disallowed:
            raise RuntimeError(
                "the change touches paths this repository does not let Honk change: "
                + ", ".join(disallowed[:10])
            )

        await tracker.phase("publish", "pushing")
        unfinished = _limit_reason(result) if result.limit_hit else None
        pr, sha = await self._publish(
            run, gh, checkout, subject, token, result, verification, usage, model, unfinished
        )
        title, summary = check_run_output(
            kind=run.kind,
            round=run.round,
            summary=result.summary,
            verification=verification,
            usage=usage,
            model=model,
            run_id=run.id,
            unfinished_reason=unfinished,
        )
        conclusion = check_run_conclusion(verification, unfinished is not None)
        await tracker.check_run(sha, conclusion, title, summary)
        await tracker.finished(
            RunState.SUCCEEDED,
            pr=pr,
            summary=result.summary,
            usage_text=usage_text,
            pushed_sha=sha,
        )
        await self._settle_ci(run, sha)
        return Outcome(RunState.SUCCEEDED)

    async def _require_sandbox(self) -> None:
        """No agent without a working sandbox, unless the operator said HONK_SANDBOX=off."""
        if self._sandbox_ok:
            return
        reason = await Sandbox.check(self.settings.sandbox)
        if reason is not None:
            raise RuntimeError(
                f"the sandbox does not work here ({reason}); Honk runs no agent without "
                "one (install bubblewrap, or set HONK_SANDBOX=off, which is unsafe)"
            )
        self._sandbox_ok = True

    async def _unpublished(self, run: Run, checkout: Checkout) -> bool:
        """An earlier attempt pushed this issue's branch but died before opening the PR."""
        return (
            run.kind == RunKind.ISSUE
            and run.pr_number is None
            and await checkout.commits_ahead_of_base() > 0
        )

    async def _settle_ci(self, run: Run, sha: str) -> None:
        """CI may have finished on the commit before the run recorded it: ask once now."""
        try:
            gh = await self.github.installation_client(run.installation_id)
            await self.ci.settle(gh, run.repo, sha)
        except Exception as exc:
            log.warning("could not look at CI on %s: %s", sha[:7], exc)

    async def _agent(
        self,
        run: Run,
        tracker: RunTracker,
        task: Any,
        toolbox: ToolBox,
        limits: AgentLimits,
        model: str,
    ) -> AgentResult:
        async def on_event(event: AgentEvent) -> None:
            if event.usage is not None:
                await self.store.add_usage(run.id, event.usage)
            if event.kind == "turn":
                await tracker.note("agent", f"turn {event.turn}")

        async def should_stop() -> bool:
            return run.id in self._stop_requested

        result = await self._until_stopped(
            run,
            run_agent(
                self.anthropic,
                model=model,
                task=task,
                tools=toolbox,
                limits=limits,
                on_event=on_event,
                should_stop=should_stop,
            ),
        )
        if result.outcome == "cancelled":
            raise RunCancelled()
        tracker.progress.done("agent", f"{result.turns} turns, {result.outcome}")
        return result

    async def _verify(
        self, run: Run, config: RepoConfig, sandbox: Sandbox, result: AgentResult
    ) -> Verification:
        if config.verify:
            outcome = await self._until_stopped(run, sandbox.run(config.verify))
            return Verification(config.verify, outcome.exit_code == 0, outcome.output, "honk")
        if result.last_test is not None:
            return Verification(
                result.last_test.command, result.last_test.exit_code == 0, "", "agent"
            )
        return Verification(None, None)

    async def _publish(
        self,
        run: Run,
        gh: GitHubClient,
        checkout: Checkout,
        subject: Subject,
        token: str,
        result: AgentResult,
        verification: Verification,
        usage: Usage,
        model: str,
        unfinished: str | None,
    ) -> tuple[dict[str, Any], str]:
        """Commit, push, and open the PR (a follow-up's open PR is left as it is): (PR, sha)."""
        bot_name, bot_email = await self.github.bot_identity()
        requester = await co_author(gh, self.github, run.requested_by)
        title = subject.title
        if run.kind == RunKind.ISSUE:
            message = commit_message(run.issue_number, title, requester)
        else:
            message = follow_up_commit_message(run.kind, run.round, title, requester)
        await checkout.commit_all(message, author_name=bot_name, author_email=bot_email)
        pushed = await checkout.push(token)
        await self.store.update_run(run.id, head_sha=pushed)
        run.head_sha = pushed
        if subject.pull is not None and subject.pull.get("state") == "open":
            pr = subject.pull
            await self.store.update_run(run.id, pr_number=pr["number"], pr_url=pr["html_url"])
            run.pr_number, run.pr_url = pr["number"], pr["html_url"]
            return pr, pushed
        body = pr_body(
            issue_number=run.issue_number,
            summary=result.summary,
            verification=verification,
            usage=usage,
            model=model,
            run_id=run.id,
            unfinished_reason=unfinished,
        )
        draft = bool(unfinished) or verification.passed is False
        pr_title = title if not unfinished else f"[unfinished] {title}"
        pr, _created = await gh.open_pull(
            run.repo,
            head=checkout.branch,
            base=checkout.base,
            title=pr_title,
            body=body,
            draft=draft,
        )
        await self.store.update_run(run.id, pr_number=pr["number"], pr_url=pr["html_url"])
        run.pr_number, run.pr_url = pr["number"], pr["html_url"]
        return pr, pushed


def _combine(first: AgentResult, second: AgentResult) -> AgentResult:
    second.turns += first.turns
    second.commands = first.commands + second.commands
    second.usage = first.usage + second.usage
    second.last_test = second.last_test or first.last_test
    return second


def _limit_reason(result: AgentResult) -> str:
    return {
        "max_turns": "the turn limit was reached",
        "timeout": "the time limit was reached",
        "max_tokens": "the token limit was reached",
    }.get(result.outcome, result.outcome)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
