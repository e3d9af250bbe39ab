"""JSON: GET /api/runs/<id> and /api/runs/<id>/events?after=N, with the run page's access rule
(the session cookie, or the person's GitHub token as a bearer)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.models import Run
from app.web.pages import run_summary
from app.web.pages.access import ACCESS, visible_run
from app.web.pages.run_page import LINKS

MAX_EVENTS = 1000  # a page of events; ask again with after=<last>


async def run_json(request: web.Request) -> web.Response:
    _viewer, run = await visible_run(request, api=True)
    services = request.app[ACCESS].services
    agents = await services.store.events.read(run.id, kinds=("agent",))
    model = run_summary.model_of(agents, services.settings.agent.model)
    return _json(describe(run, model) | {"links": await request.app[LINKS].of(run)})


async def events_json(request: web.Request) -> web.Response:
    _viewer, run = await visible_run(request, api=True)
    try:
        after = max(int(request.query.get("after", "0")), 0)
        limit = min(max(int(request.query.get("limit", str(MAX_EVENTS))), 1), MAX_EVENTS)
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "after and limit are whole numbers"}', content_type="application/json"
        ) from None
    events = await request.app[ACCESS].services.store.events.read(run.id, after=after, limit=limit)
    return _json(
        {
            "run": run.id,
            "events": [
                {"seq": e.seq, "kind": e.kind, "at": e.at.isoformat(), "data": e.data}
                for e in events
            ],
            "last": events[-1].seq if events else after,
            "more": len(events) == limit,
            "active": run.state.active,
        }
    )


def describe(run: Run, model: str) -> dict[str, Any]:
    usage = run.usage
    return {
        "id": run.id,
        "repo": run.repo,
        "kind": run.kind.value,
        "state": run.state.value,
        "issue_number": run.issue_number,
        "pr_number": run.pr_number,
        "pr_url": run.pr_url,
        "branch": run.branch,
        "base_branch": run.base_branch,
        "head_sha": run.head_sha,
        "requested_by": run.requested_by,
        "round": run.round,
        "attempts": run.attempts,
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "model": model,
        "usage": usage.to_dict(),
        "cost_usd": round(usage.cost_usd(model), 4),
        "created_at": _when(run.created_at),
        "started_at": _when(run.started_at),
        "finished_at": _when(run.finished_at),
        "steps": [{"name": s.name, "detail": s.detail, "at": _when(s.at)} for s in run.steps],
    }


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})
