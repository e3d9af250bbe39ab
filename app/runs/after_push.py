"""After the push: a run claimed again once it had pushed its change resumes there (its PR
opened or found, its report said from what it kept), and CI is asked once for a verdict it
may have given before the run recorded the commit."""

from __future__ import annotations

import logging

from app.ci.reporter import CiReporter
from app.github.auth import GitHubApp
from app.log import describe_error
from app.runs.context import RunContext
from app.runs.publish import open_pull, report, saved_closing

log = logging.getLogger(__name__)


async def resume_after_push(ctx: RunContext, github: GitHubApp) -> bool:
    """A run claimed again after it pushed its change (an earlier attempt died after the
    push, with or without its PR): its PR opened (or found) and its report said from what
    it kept (publish.Closing), with no checkout and no agent. False: start from the top."""
    closing = await saved_closing(ctx)
    if closing is None:
        return False
    run = ctx.run
    log.info("run %s pushed %s before it was claimed again: resuming after the push",
             run.id, closing.sha[:7])  # fmt: skip
    await ctx.store.runs.add_step(run.id, "resumed", f"after pushing {closing.sha[:7]}")
    await ctx.tracker.phase("publish", "resuming after a restart")
    if run.pr_number is not None and not ctx.rules.continues_pull:
        pr = await ctx.gh.pull(run.repo, run.pr_number)
    else:
        pr = await open_pull(ctx, github, closing)
    await report(ctx, pr, closing)
    return True


async def settle_ci(ctx: RunContext, github: GitHubApp, ci: CiReporter) -> None:
    """CI may have finished on the commit before the run recorded it: ask once now."""
    sha = ctx.run.head_sha
    if not sha:
        return
    try:
        gh = await github.installation_client(ctx.run.installation_id)
        await ci.settle(gh, ctx.run.repo, sha)
    except Exception as exc:
        log.warning("could not look at CI on %s: %s", sha[:7], describe_error(exc))
