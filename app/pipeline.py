"""One run, phase by phase: checkout -> agent -> verify -> commit/push -> PR -> report."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic

from app.agent.loop import AgentEvent, AgentLimits, AgentResult, make_client, run_agent
from app.agent.prompts import build_task, read_repo_instructions
from app.agent.tools import ToolBox
from app.config import Settings
from app.github.auth import GitHubApp
from app.github.client import GitHubClient
from app.models import Run, RunState, Usage
from app.repo_config import ConfigCache, RepoConfig, RepoConfigError, load_repo_config
from app.report import (
    Verification,
    branch_name,
    commit_message,
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
WRITE_LEVELS = ("admin", "maintain", "write")


class RunCancelled(Exception):
    """Someone asked for the run to stop."""


@dataclass
class Outcome:
    state: RunState
    error: str | None = None


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
        self.anthropic = anthropic_client or make_client(settings)
        self.config_cache = ConfigCache()
        self._stop_requested: set[int] = set()

    def request_stop(self, run_id: int) -> None:
        self._stop_requested.add(run_id)

    def _check_stop(self, run: Run) -> None:
        if run.id in self._stop_requested:
            raise RunCancelled()

    async def execute(self, run: Run) -> Outcome:
        """Run it to the end and report; the state to record. Raises only on shutdown."""
        self._stop_requested.discard(run.id)
        repo_name = run.repo.split("/", 1)[1]
        gh = await self.github.installation_client(
            run.installation_id, repositories=[repo_name], permissions=RUN_PERMISSIONS
        )
        tracker = RunTracker(run, gh, self.store, self.slack)
        try:
            return await self._execute(run, gh, tracker)
        except RunCancelled:
            await tracker.finished(RunState.CANCELLED, error="cancelled on request")
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
        issue = await gh.issue(run.repo, run.issue_number) if run.issue_number else None
        await tracker.started(issue)
        try:
            config = await load_repo_config(
                await self.github.installation_client(run.installation_id),
                run.repo,
                default_branch,
                self.config_cache,
            )
        except RepoConfigError as exc:
            # A broken config must not silently change behaviour: say so, use defaults.
            await gh.comment(
                run.repo,
                run.issue_number or run.pr_number or 0,
                f"Honk could not read `.github/honk.yml`: {exc}. This run uses the defaults.",
            )
            config = RepoConfig()
        title = (issue or {}).get("title") or run.instructions.splitlines()[0][:60] or "change"
        branch = run.branch or branch_name(run.issue_number or run.pr_number or run.id, title)
        base = run.base_branch or default_branch
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
            _exclude_build_artifacts(checkout.path)
            return await self._work(run, gh, tracker, checkout, issue, config, token.token)

    async def _work(
        self,
        run: Run,
        gh: GitHubClient,
        tracker: RunTracker,
        checkout: Checkout,
        issue: dict[str, Any] | None,
        config: RepoConfig,
        token: str,
    ) -> Outcome:
        settings = self.settings
        sandbox = Sandbox(
            checkout.path,
            mode=settings.sandbox,
            ro_paths=settings.sandbox_ro_paths,
            network=False,
            timeout=settings.command_timeout,
            output_limit=settings.output_limit,
        )
        for command in config.setup:
            # Setup (installing dependencies) may use the network; the agent may not.
            result = await sandbox.run(command, network=True)
            if result.exit_code != 0:
                raise RuntimeError(f"setup command `{command}` failed (exit {result.exit_code})")
        comments = await self._writer_comments(gh, run, issue)
        instructions = await asyncio.to_thread(read_repo_instructions, checkout.path)
        task = build_task(
            repo=run.repo,
            issue=issue or {"title": run.instructions[:80], "body": run.instructions, "number": 0},
            comments=comments,
            repo_instructions=instructions,
            extra_instructions=run.instructions if issue else "",
            verify_command=config.verify,
            visible_root=sandbox.visible_root,
        )
        limits = AgentLimits(
            max_turns=config.max_turns or settings.max_turns,
            max_seconds=(config.max_minutes or settings.max_minutes) * 60,
            max_tokens=settings.max_tokens,
            output_limit=settings.output_limit,
        )
        model = config.model or settings.model
        toolbox = ToolBox(sandbox)
        await tracker.phase("agent", "starting")
        result = await self._agent(run, tracker, task, toolbox, limits, model)

        await tracker.phase("verify")
        verification = await self._verify(config, sandbox, result)
        if verification.passed is False and not result.limit_hit and result.outcome == "done":
            # One more bounded attempt with the failure in front of the agent.
            await tracker.phase("agent", "fixing the failed verification")
            retry_task = build_task(
                repo=run.repo,
                issue=issue or {"title": run.instructions[:80], "body": run.instructions},
                comments=comments,
                repo_instructions=instructions,
                extra_instructions=(
                    f"{run.instructions}\n\nYour previous change failed verification. "
                    f"`{verification.command}` printed:\n{verification.output}"
                ).strip(),
                verify_command=config.verify,
                visible_root=sandbox.visible_root,
            )
            retry_limits = AgentLimits(
                max_turns=max(limits.max_turns // 2, 5),
                max_seconds=limits.max_seconds / 2,
                max_tokens=limits.max_tokens,
                output_limit=limits.output_limit,
            )
            second = await self._agent(run, tracker, retry_task, toolbox, retry_limits, model)
            result = _combine(result, second)
            await tracker.phase("verify")
            verification = await self._verify(config, sandbox, result)
        tracker.progress.done("verify", verification.describe())
        self._check_stop(run)

        usage = (await self.store.get_run(run.id) or run).usage
        usage_text = usage.describe(model)
        if result.outcome == "error":
            raise RuntimeError(result.error or "the agent failed")
        if not await checkout.has_changes():
            if result.limit_hit:
                raise RuntimeError(f"{_limit_reason(result)} before any change was made")
            text = no_change_comment(result.summary)
            if run.issue_number:
                await gh.comment(run.repo, run.issue_number, text)
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
        pr = await self._publish(
            run, gh, checkout, issue, token, result, verification, usage, model, unfinished
        )
        await tracker.finished(
            RunState.SUCCEEDED,
            pr=pr,
            summary=result.summary,
            usage_text=usage_text,
        )
        return Outcome(RunState.SUCCEEDED)

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

        result = await run_agent(
            self.anthropic,
            model=model,
            task=task,
            tools=toolbox,
            limits=limits,
            on_event=on_event,
            should_stop=should_stop,
        )
        if result.outcome == "cancelled":
            raise RunCancelled()
        tracker.progress.done("agent", f"{result.turns} turns, {result.outcome}")
        return result

    async def _verify(
        self, config: RepoConfig, sandbox: Sandbox, result: AgentResult
    ) -> Verification:
        if config.verify:
            outcome = await sandbox.run(config.verify)
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
        issue: dict[str, Any] | None,
        token: str,
        result: AgentResult,
        verification: Verification,
        usage: Usage,
        model: str,
        unfinished: str | None,
    ) -> dict[str, Any]:
        bot_name, bot_email = await self.github.bot_identity()
        requester = await self._requester(gh, run.requested_by)
        title = (issue or {}).get("title") or run.instructions.splitlines()[0][:72]
        sha = await checkout.commit_all(
            commit_message(run.issue_number, title, requester),
            author_name=bot_name,
            author_email=bot_email,
        )
        pushed = await checkout.push(token)
        await self.store.update_run(run.id, head_sha=pushed or sha)
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
        return pr

    async def _requester(self, gh: GitHubClient, login: str | None) -> tuple[str, str] | None:
        if not login:
            return None
        try:
            user = await gh.getitem(f"/users/{login}")
        except Exception:
            return (login, f"{login}@users.noreply.github.com")
        host = _noreply_host(self.settings.github_url)
        return (user.get("name") or login, f"{user['id']}+{login}@{host}")

    async def _writer_comments(
        self, gh: GitHubClient, run: Run, issue: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Issue comments by people with write access: others' text must not steer the agent."""
        if not issue or not run.issue_number:
            return []
        comments = await gh.issue_comments(run.repo, run.issue_number)
        allowed: dict[str, bool] = {}
        kept = []
        for comment in comments:
            login = (comment.get("user") or {}).get("login", "")
            if comment.get("user", {}).get("type") == "Bot" or "honk:run:" in comment.get(
                "body", ""
            ):
                continue
            if login not in allowed:
                allowed[login] = (await gh.permission(run.repo, login)) in WRITE_LEVELS
            if allowed[login]:
                kept.append(comment)
        return kept


def _exclude_build_artifacts(root: Path) -> None:
    exclude = root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as handle:
        handle.write("\n# Honk: test and build caches\n" + "\n".join(BUILD_ARTIFACTS) + "\n")


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


def _noreply_host(github_url: str) -> str:
    host = github_url.split("://", 1)[-1].split("/", 1)[0]
    return "users.noreply.github.com" if host == "github.com" else f"users.noreply.{host}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
