"""How the kinds of run differ (an issue, a retry, a CI repair, a continuation, one repository
of a fleet change), in one place."""

from __future__ import annotations

from app.github.pacing import Priority
from app.models import Run, RunKind, RunState
from app.runs import follow_up
from app.runs.follow_up import RequestContext, RetryParts
from app.slack.blocks import PullRef

CoAuthor = tuple[str, str] | None  # (name, e-mail) for a Co-authored-by trailer


class IssueRun:
    """A run on an issue: a new branch from the base, a new PR that fixes the issue."""

    kind = RunKind.ISSUE
    continues_pull = False  # works on an existing PR's branch, and reports on that PR
    finishes_draft = False  # a draft PR it completes is made ready for review
    # A change that failed Honk's verification is still published, as a draft that says so.
    publishes_unverified = True

    def root_shows(self, state: RunState) -> bool:
        """Whether the thread root (at the channel's top level) takes this ending as its
        status; everything else the run says goes into the thread only."""
        return True

    def comment_on(self, run: Run) -> int | None:
        """Where the tracking comment goes."""
        return run.issue_number

    def paced_at(self, run: Run) -> Priority:
        """The priority of every GitHub request the run makes (`pacing.writes_at`)."""
        return Priority.NORMAL

    def reports_in_slack(self, run: Run) -> bool:
        """Whether the run starts (or replies in) a Slack thread of its own. A fleet's runs
        and their follow-ups never do: the fleet reports in its own thread, never one per
        repository."""
        return run.fleet_id is None

    def branch_key(self, run: Run) -> int | str:
        """What the run's new branch is named by (`honk/<key>-<slug>`)."""
        return run.issue_number or run.pr_number or run.id

    def check_title_note(self, run_round: int) -> str | None:
        """What the `Honk` check run's title says of the kind (a follow-up's)."""
        return None

    def commit_message(self, run: Run, title: str, requester: CoAuthor) -> str:
        subject = title.strip().splitlines()[0][:72] if title.strip() else "Honk change"
        lines = [subject, ""]
        if run.issue_number:
            lines.append(f"Fixes #{run.issue_number}")
        return _with_trailer(lines, requester)

    def started_again(self, run: Run) -> str:
        """The Slack thread's note when a run starts in a thread that already exists."""
        if run.attempts > 1:  # claimed again after a worker died
            return f"Honk is working on it again (run {run.id}, attempt {run.attempts})."
        return f"Honk is on it (run {run.id})."

    def published(self, pr: PullRef, sha: str | None, cost: str, summary: str) -> str:
        """The tracking comment's closing line once the change is on GitHub (`summary`: the
        model's, already made inert by the tracker)."""
        return f"Opened {pr.url}{cost}"

    def may_have_unpublished_work(self, run: Run) -> bool:
        """An earlier attempt may have pushed the branch and died before opening the PR."""
        return run.pr_number is None

    async def request(self, run: Run, context: RequestContext) -> str:
        """The run's extra instructions (a Slack request has them; a labelled issue none)."""
        return run.instructions if context.issue else ""

    def compose(self, run: Run, parts: RetryParts) -> str:
        return parts.instructions or ""


class RetryRun(IssueRun):
    """`/honk retry` (or Retry in Slack): the agent again on the PR's branch, new commit on top."""

    kind = RunKind.RETRY
    continues_pull = True
    commit_prefix = "Address review"

    def comment_on(self, run: Run) -> int | None:
        return run.pr_number or run.issue_number

    def check_title_note(self, run_round: int) -> str | None:
        return "retry"

    def commit_message(self, run: Run, title: str, requester: CoAuthor) -> str:
        subject = title.strip().splitlines()[0] if title.strip() else "Honk change"
        return _with_trailer([f"{self._prefix(run.round)}: {subject}"[:72]], requester)

    def _prefix(self, run_round: int) -> str:
        return self.commit_prefix

    def root_shows(self, state: RunState) -> bool:
        # The PR stands whatever a follow-up found: "No change needed" or a failure stays in
        # the thread, and the root keeps showing the pull request.
        return state == RunState.SUCCEEDED

    def started_again(self, run: Run) -> str:
        who = f" at @{run.requested_by}'s request" if run.requested_by else ""
        return f"Honk is working on it again{who} (run {run.id})."

    def published(self, pr: PullRef, sha: str | None, cost: str, summary: str) -> str:
        if not sha:
            return super().published(pr, sha, cost, summary)
        line = f"Pushed {sha[:7]} to {pr.url}{cost}"
        return line + ("\n\n" + summary if summary else "")

    def may_have_unpublished_work(self, run: Run) -> bool:
        return False  # the PR exists already

    async def request(self, run: Run, context: RequestContext) -> str:
        """The request with the review comments and the last CI failure it continues from."""
        return follow_up.retry_request(run, await follow_up.retry_context(run, context))

    def compose(self, run: Run, parts: RetryParts) -> str:
        return follow_up.retry_request(run, parts)


class CiRepairRun(RetryRun):
    """Automatic repair after red CI on a Honk PR, within the repository's rounds."""

    kind = RunKind.CI_FIX

    def check_title_note(self, run_round: int) -> str | None:
        return f"CI repair, round {run_round}"

    def paced_at(self, run: Run) -> Priority:
        # Repairs of a fleet's PRs come in bulk, as the fleet's runs did: they never take
        # the room kept for ordinary runs and people's requests.
        return Priority.BULK if run.fleet_id is not None else Priority.NORMAL

    def _prefix(self, run_round: int) -> str:
        return f"Fix CI (round {run_round})"

    def started_again(self, run: Run) -> str:
        return f"Honk is fixing the CI failure: round {run.round} (run {run.id})."

    async def request(self, run: Run, context: RequestContext) -> str:
        return follow_up.ci_repair_request(run, failure_text=run.instructions)

    def compose(self, run: Run, parts: RetryParts) -> str:
        return follow_up.ci_repair_request(run, failure_text=parts.failure_text or "")


class ContinueRun(RetryRun):
    """Continue (from Slack) after a run stopped at its turn, token or time limit: the agent
    carries on on the same branch with a fresh budget (the repository's, within the
    operator's HONK_MAX_TURNS); a draft it completes is made ready for review."""

    kind = RunKind.CONTINUE
    commit_prefix = "Continue"
    finishes_draft = True
    stopped_because = "its turn, token or time limit"

    def check_title_note(self, run_round: int) -> str | None:
        return "continued"

    def commit_message(self, run: Run, title: str, requester: CoAuthor) -> str:
        if not run.pr_number:  # nothing was pushed before: a first commit, as an issue run's
            return IssueRun.commit_message(self, run, title, requester)
        return super().commit_message(run, title, requester)

    def started_again(self, run: Run) -> str:
        who = f" at @{run.requested_by}'s request" if run.requested_by else ""
        return f"Honk carries on where it stopped{who} (run {run.id})."

    def may_have_unpublished_work(self, run: Run) -> bool:
        return run.pr_number is None

    async def request(self, run: Run, context: RequestContext) -> str:
        parts = await follow_up.retry_context(run, context)
        return follow_up.continue_request(run, reason=self.stopped_because, parts=parts)

    def compose(self, run: Run, parts: RetryParts) -> str:
        return follow_up.continue_request(run, reason=self.stopped_because, parts=parts)


FLEET_TASK = (
    "This repository is one of many that a fleet change takes the same request to: the "
    "task above is that request, not an issue of this repository. Make the change here as "
    "this repository's own code, tests and conventions need it. If the request does not "
    "apply to this repository or it is already done, change nothing and say why."
)


class FleetRun(IssueRun):
    """One repository of a fleet change (`run.fleet_id`): the fleet's request, no issue. It
    writes only what the repository needs (its PR and the `Honk` check), in bulk: no
    tracking comment, reaction, label or Slack thread; the fleet reports on its own page,
    issue and thread."""

    kind = RunKind.FLEET
    # A fleet takes only verified changes: a draft per repository whose verification failed
    # would be a PR no one asked for (and counted as opened); the run fails and says why, the
    # fleet shows the repository failed, and its bulk retry takes it up again.
    publishes_unverified = False

    def comment_on(self, run: Run) -> int | None:
        return None

    def paced_at(self, run: Run) -> Priority:
        return Priority.BULK

    def reports_in_slack(self, run: Run) -> bool:
        return False

    def branch_key(self, run: Run) -> int | str:
        return f"fleet-{run.fleet_id}"

    def check_title_note(self, run_round: int) -> str | None:
        return "fleet change"

    def commit_message(self, run: Run, title: str, requester: CoAuthor) -> str:
        subject = title.strip().splitlines()[0][:72] if title.strip() else "Honk change"
        return _with_trailer([subject, "", f"Part of Honk fleet change {run.fleet_id}."], requester)

    async def request(self, run: Run, context: RequestContext) -> str:
        return FLEET_TASK


RULES: dict[RunKind, IssueRun] = {
    RunKind.ISSUE: IssueRun(),
    RunKind.RETRY: RetryRun(),
    RunKind.CI_FIX: CiRepairRun(),
    RunKind.CONTINUE: ContinueRun(),
    RunKind.FLEET: FleetRun(),
}


def rules_for(kind: RunKind | str) -> IssueRun:
    return RULES[RunKind(kind)]


def compose_request(run: Run, parts: RetryParts) -> str:
    """What a follow-up run is told, from its parts (instructions, reviews, the failure)."""
    return rules_for(run.kind).compose(run, parts)


def _with_trailer(lines: list[str], requester: CoAuthor) -> str:
    if requester:
        lines += ["", f"Co-authored-by: {requester[0]} <{requester[1]}>"]
    return "\n".join(lines).strip() + "\n"
