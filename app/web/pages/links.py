"""Where a run's page points: the repository, issue, PR, the `Honk` check, the Slack thread."""

from __future__ import annotations

from typing import Any

from cachetools import TTLCache

from app.ci.records import honk_check
from app.models import Run, SlackThread
from app.services import Services

PERMALINK_TTL = 3600.0


class Links:
    """Builds a run's links; Slack permalinks are asked for once an hour at most."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._permalinks: TTLCache[SlackThread, str | None] = TTLCache(
            maxsize=4096, ttl=PERMALINK_TTL
        )

    async def of(self, run: Run) -> dict[str, Any]:
        settings, store = self.services.settings, self.services.store
        repo = f"{settings.github.url}/{run.repo}"
        check = None
        if run.head_sha:
            record = await honk_check(store, run.repo, run.head_sha)
            if record is not None and record.run in (0, run.id):
                check = f"{repo}/runs/{record.id}"
        return {
            "page": settings.web.run_url(run.id) or f"/runs/{run.id}",
            "repo": repo,
            "issue": f"{repo}/issues/{run.issue_number}" if run.issue_number else None,
            "pr": run.pr_url,
            "check": check or (f"{run.pr_url}/checks" if run.pr_url else None),
            "slack": await self._permalink(run.slack_thread),
        }

    async def _permalink(self, thread: SlackThread | None) -> str | None:
        if thread is None:
            return None
        if thread not in self._permalinks:
            self._permalinks[thread] = await self.services.slack.permalink(thread)
        return self._permalinks[thread]
