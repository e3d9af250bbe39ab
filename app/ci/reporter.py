"""CI's verdict on a Honk commit, reported once (Slack, PR, Honk check); repair within bounds."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from app.ci import fleet_prs, records
from app.ci.after_merge import follow_deployment, follow_merge_ci
from app.ci.ready import ready_to_go_live
from app.ci.records import CiFailure
from app.ci.verdict import Verdict, artifact_links, gather_verdict, summarize_failures
from app.config import Settings
from app.github.client import GitHubClient
from app.github.pacing import Priority, writes_at
from app.github.payloads import Deployment, DeploymentStatus
from app.log import describe_error
from app.models import Run, RunKind
from app.repo_config import ConfigCache, RepoConfigError, load_repo_config, run_limits
from app.slack import blocks
from app.slack.notify import SlackNotifier
from app.store import NewRun, Store

log = logging.getLogger(__name__)

HONK_TITLE = "Honk's run"

REPAIRING = (
    "CI failed on {sha} ({names}). Honk is trying to fix it: round {round} of {bound} "
    "(run {run_id}); the new commit will land on this branch."
)
ASK_A_PERSON = (
    "{mention}CI still fails on {sha} ({names}) after {rounds} automatic repair round(s), "
    "the most this repository allows. Honk stopped here: a person needs to look. "
    "Comment `/honk retry <what to do>` to have Honk try again with your guidance."
)
NOT_REPAIRED = (
    "CI finished on {sha} with `{conclusion}` ({names}). Honk does not repair that on its own; "
    "comment `/honk retry <what to do>` to run it again."
)


@dataclass
class Plan:
    """What to do about a red CI: repair (a CI_FIX run), ask a person, or only report."""

    action: str  # "repair" | "ask" | "report" | "none"
    round: int = 0
    bound: int = 0


@dataclass
class CiReporter:
    """Shared by the CI handlers and the pipeline (which asks once after it pushes)."""

    settings: Settings
    store: Store
    slack: SlackNotifier
    wake_workers: Callable[[], None] = lambda: None
    config_cache: ConfigCache = field(default_factory=ConfigCache)

    async def settle(self, gh: GitHubClient, repo: str, sha: str) -> str:
        """Report CI's verdict on `sha` if it is complete and not yet reported; what happened.

        Safe to call for every event, twice, in any order: the verdict is claimed in the
        store before anything is said, so exactly one caller reports it (once per commit and
        conclusion: failed jobs re-run and passed are news). A call made before the run
        recorded the commit and its PR does nothing: the pipeline calls again then. A merge
        commit of a Honk PR merged from Slack is followed in its run's thread.
        """
        run = await self.store.runs.newest(repo=repo, head_sha=sha)
        if run is None:
            merge = await records.merge_of(self.store, repo, sha)
            if merge is None:
                return "unknown"
            return await follow_merge_ci(
                gh, self.store, self.slack, self.settings, repo, sha, merge
            )
        if run.pr_number is None:
            return "unknown"
        # A fleet's PRs are CI's in bulk, as the fleet's runs wrote them.
        paced = writes_at(Priority.BULK) if run.fleet_id is not None else contextlib.nullcontext()
        with paced:
            return await self._settle(gh, run, sha)

    async def _settle(self, gh: GitHubClient, run: Run, sha: str) -> str:
        repo = run.repo
        verdict = await gather_verdict(gh, repo, sha, self.settings.github.app_id)
        if verdict is None:
            return "pending"
        if await records.verdict_reported(self.store, repo, sha, verdict.conclusion):
            return "reported"
        failure = await summarize_failures(gh, repo, verdict) if verdict.failed else ""
        links = await self._links(gh, repo, verdict)
        plan = await self._plan(gh, run, verdict)
        claimed = await records.claim_verdict(
            self.store, repo, sha, conclusion=verdict.conclusion, run_id=run.id
        )
        if not claimed:
            return "reported"
        await self._act(gh, run, verdict, failure, links, plan)
        return "sent"

    async def deployed(self, repo: str, deployment: Deployment, status: DeploymentStatus) -> bool:
        """A deployment of a merge commit Honk follows, told in its thread; False otherwise."""
        return await follow_deployment(self.store, self.slack, repo, deployment, status)

    async def _links(
        self, gh: GitHubClient, repo: str, verdict: Verdict
    ) -> list[tuple[str, str | None]]:
        found = await records.deployments(self.store, repo, verdict.sha)
        links: list[tuple[str, str | None]] = [
            (f"{environment} (deployment)", url) for environment, url in sorted(found.items())
        ]
        return links + list(await artifact_links(gh, repo, verdict))

    async def _plan(self, gh: GitHubClient, run: Run, verdict: Verdict) -> Plan:
        if not verdict.failed:
            return Plan("none")
        if not verdict.fixable:
            return Plan("report")
        assert run.pr_number is not None
        pr = await gh.pull(run.repo, run.pr_number)
        newest = await self.store.runs.newest(repo=run.repo, pr_number=run.pr_number)
        if pr.get("state") != "open" or pr["head"]["sha"] != verdict.sha:
            return Plan("report")  # closed, or the branch moved on: this commit is history
        if newest is not None and newest.id != run.id:
            return Plan("report")  # a newer run (a retry) is already on its way
        bound = await self._bound(gh, run.repo)
        if run.round + 1 > bound:
            return Plan("ask", round=run.round, bound=bound)
        return Plan("repair", round=run.round + 1, bound=bound)

    async def _bound(self, gh: GitHubClient, repo: str) -> int:
        try:
            config = await load_repo_config(gh, repo, None, self.config_cache)
        except RepoConfigError:
            return self.settings.agent.ci_repair_rounds
        return run_limits(self.settings.agent, config).ci_repair_rounds

    async def _act(
        self,
        gh: GitHubClient,
        run: Run,
        verdict: Verdict,
        failure: str,
        links: list[tuple[str, str | None]],
        plan: Plan,
    ) -> None:
        """Queue the repair first (it matters most), then tell people; reporting never raises."""
        repair: Run | None = None
        if plan.action == "repair":
            repair = await self.store.runs.enqueue(
                NewRun.follow_up(
                    run,
                    kind=RunKind.CI_FIX,
                    requested_by=run.requested_by,
                    instructions=failure,
                    round=plan.round,
                )
            )
            self.wake_workers()
        names = ", ".join(c.name for c in verdict.failed) or "all checks passed"
        note = _repair_note(plan, repair)
        assert run.pr_number is not None
        if verdict.failed:
            found = CiFailure(verdict.sha, names, failure, repair.id if repair else None)
            await records.record_failure(self.store, run.repo, run.pr_number, found)
        else:
            before = await records.last_failure(self.store, run.repo, run.pr_number)
            await records.clear_failure(self.store, run.repo, run.pr_number)
            note = await self._stop_repair(before, verdict.sha)
        await self.store.runs.add_step(
            run.id, "ci", f"{verdict.conclusion} on {verdict.sha[:7]}: {names}. {note or ''}"[:500]
        )
        await self._tell_fleet(run, verdict)
        await self._tell_slack(gh, run, verdict, links, note)
        await self._tell_pr(gh, run, verdict, plan, repair, names)
        await self._update_check(gh, run.repo, verdict, note)

    async def _stop_repair(self, failure: CiFailure | None, sha: str) -> str | None:
        """CI passed on a commit whose failure started a repair (its failed jobs were re-run):
        the repair still working on that commit is not needed any more."""
        if failure is None or failure.sha != sha or failure.repair is None:
            return None
        repair = await self.store.runs.get(failure.repair)
        if repair is None or not repair.state.active:
            return None
        await self.store.runs.add_step(repair.id, "cancel", f"CI passed on a re-run of {sha[:7]}")
        await self.store.runs.request_cancel(repair.id)
        log.info("CI passed on a re-run of %s: stopped repair run %s", sha[:7], repair.id)
        return f"CI passed on a re-run of {sha[:7]}: Honk stopped its repair (run {repair.id})."

    async def _tell_fleet(self, run: Run, verdict: Verdict) -> None:
        """A fleet PR's repository goes CI_GREEN or CI_RED (the fleet's summaries say it;
        no Slack message per repository)."""
        if run.fleet_id is None:
            return
        try:
            await fleet_prs.ci_verdict(self.store, run, verdict.sha, passed=not verdict.failed)
        except Exception as exc:
            log.warning("could not tell fleet %s of CI on %s: %s",
                        run.fleet_id, verdict.sha[:7], describe_error(exc))  # fmt: skip

    async def _tell_slack(
        self,
        gh: GitHubClient,
        run: Run,
        verdict: Verdict,
        links: list[tuple[str, str | None]],
        note: str | None,
    ) -> None:
        if run.slack_thread is None or run.fleet_id is not None:
            return  # a fleet's PRs: the fleet's own thread sums them up
        if not verdict.failed:
            try:
                ready = await ready_to_go_live(
                    gh, self.store, self.settings, run, verdict, links, note=note
                )
            except Exception as exc:  # the plain message still goes out
                log.warning("could not make the go-live card: %s", describe_error(exc))
                ready = None
            if ready is not None:
                await self.slack.reply(run.slack_thread, text=ready[0], blocks=ready[1])
                return
        text, message = blocks.ci_result(
            conclusion=verdict.conclusion,
            pr_url=run.pr_url,
            pr_number=run.pr_number,
            failed_checks=[(c.name, c.url) for c in verdict.failed],
            links=links,
            repair_note=note,
            run_url=self.settings.web.run_url(run.id),
        )
        await self.slack.reply(run.slack_thread, text=text, blocks=message)

    async def _tell_pr(
        self,
        gh: GitHubClient,
        run: Run,
        verdict: Verdict,
        plan: Plan,
        repair: Run | None,
        names: str,
    ) -> None:
        sha = verdict.sha[:7]
        if plan.action == "repair" and repair is not None:
            body = REPAIRING.format(
                sha=sha, names=names, round=plan.round, bound=plan.bound, run_id=repair.id
            )
        elif plan.action == "ask":
            mention = f"@{run.requested_by} " if run.requested_by else ""
            body = ASK_A_PERSON.format(mention=mention, sha=sha, names=names, rounds=plan.round)
        elif plan.action == "report" and not verdict.fixable:
            body = NOT_REPAIRED.format(sha=sha, conclusion=verdict.conclusion, names=names)
        else:
            return  # green, or a commit the branch has moved past: the checks say enough
        assert run.pr_number is not None
        try:
            await gh.comment(run.repo, run.pr_number, body)
        except Exception as exc:
            log.warning("could not comment on %s#%s: %s", run.repo, run.pr_number, exc)

    async def _update_check(
        self, gh: GitHubClient, repo: str, verdict: Verdict, note: str | None
    ) -> None:
        """Honk's check run on the commit gets CI's verdict appended."""
        check = await records.honk_check(self.store, repo, verdict.sha)
        if check is None:
            return
        label = blocks.CI_CONCLUSIONS.get(verdict.conclusion, ("", verdict.conclusion))[1]
        lines = [f"**CI:** {label}"]
        lines += [f"- [{c.name}]({c.url})" if c.url else f"- {c.name}" for c in verdict.failed]
        if note:
            lines.append(note)
        summary = f"{check.summary}\n\n" + "\n".join(lines)
        try:
            await gh.update_check_run(
                repo,
                check.id,
                output={"title": check.title or HONK_TITLE, "summary": summary[:60_000]},
            )
        except Exception as exc:
            log.warning("could not update the Honk check run on %s: %s", verdict.sha[:7], exc)


def _repair_note(plan: Plan, repair: Run | None) -> str | None:
    if plan.action == "repair" and repair is not None:
        return f"Honk is fixing it: round {plan.round} of {plan.bound} (run {repair.id})."
    if plan.action == "ask":
        return (
            f"Honk stopped after {plan.round} repair round(s): a person needs to look. "
            "`/honk retry` on the PR runs it again."
        )
    return None
