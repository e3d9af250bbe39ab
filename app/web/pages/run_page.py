"""GET /runs/<id> (live over Server-Sent Events) and steering it: Cancel, Retry with text."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from aiohttp_sse import sse_response

from app.issue_snapshots import approved_snapshot
from app.models import Run
from app.run_requests import cancel_run, queue_follow_up
from app.store import RunEvent, Store
from app.web.pages import render, run_summary, view
from app.web.pages.access import ACCESS, visible_run
from app.web.pages.links import Links
from app.web.signin import CSRF_FIELD, Viewer, csrf_ok, csrf_token

log = logging.getLogger(__name__)

REFRESH_SECONDS = 10  # without JavaScript an active run's page reloads this often
LIVE_POLL = 0.5  # seconds between looks at the store for new events (any process wrote them)
PAGE_EVENTS = 20_000  # more than a run may store (app/runs/events.py bounds them)
PRIMING = 200  # events before the live stream's start read to know what the page shows
MAX_INSTRUCTIONS = 3000  # as Slack's Retry form
LINKS = web.AppKey("links", Links)
# The live streams open (their tasks), cancelled at shutdown.
STREAMS: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("streams")


async def run_page(request: web.Request) -> web.Response:
    viewer, run = await visible_run(request)
    store = request.app[ACCESS].services.store
    events = await store.events.read(run.id, limit=PAGE_EVENTS)
    highlights = run_summary.Highlights().feed(events)
    context = await _context(request, viewer, run, highlights)
    made = view.entries(events)
    context |= {
        "title": highlights.title or await _approved_title(store, run),
        "transcript": [e for e in made if e.section == "transcript"],
        "verification": next((e for e in reversed(made) if e.section == "verification"), None),
        "diff": next((e for e in reversed(made) if e.section == "diff"), None),
        "reviews": [e for e in made if e.section == "review"],
        "network": run_summary.network_summary(events),
        "last_seq": events[-1].seq if events else 0,
        "refresh": REFRESH_SECONDS,
    }
    return render.html(await asyncio.to_thread(render.page, "run.html", **context))


async def _context(
    request: web.Request, viewer: Viewer, run: Run, highlights: run_summary.Highlights
) -> dict[str, Any]:
    access = request.app[ACCESS]
    session = await get_session(request)
    permission = await access.can_write(viewer, run)
    model = highlights.model or access.services.settings.agent.model
    return {
        "viewer": viewer,
        "csrf": csrf_token(session) if viewer.via == "session" else "",
        "run": run,
        "s": run_summary.summary(run, model),
        # Markdown takes a while on a long summary: off the loop.
        "o": await asyncio.to_thread(run_summary.outcome, run, highlights),
        "links": await request.app[LINKS].of(run),
        "steer": permission is not None and permission.allowed,
    }


async def _approved_title(store: Store, run: Run) -> str | None:
    """A run that has not started yet (or started before titles were recorded): the issue's
    title as the person who asked for the run approved it."""
    if not run.issue_number:
        return None
    snapshot = await approved_snapshot(store, run.repo, run.issue_number)
    return snapshot.title if snapshot is not None and snapshot.title else None


async def stream(request: web.Request) -> web.StreamResponse:
    """New entries as they are stored, and the summary when it changes; ends with the run."""
    viewer, run = await visible_run(request)
    store = request.app[ACCESS].services.store
    after = _number(request.headers.get("Last-Event-ID")) or _number(request.query.get("after"))
    # What the page already shows, for what comes next: a tool's result renders with its
    # call, a phase heading left empty is taken off, the last phase says how the run ended.
    transcript = view.Transcript()
    recent = await store.events.read(run.id, after=max(after - PRIMING, 0), limit=PRIMING)
    for event in recent:
        if event.seq <= after:
            transcript.feed(event)
    highlights = run_summary.Highlights().feed(
        await store.events.read(run.id, kinds=run_summary.OUTCOME_KINDS, limit=PAGE_EVENTS)
    )
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)
    shown: Any = None
    response: web.StreamResponse = web.Response(status=204)
    try:
        async with sse_response(request, ping_interval=15) as stream:
            response = stream
            while stream.is_connected():
                if not await request.app[ACCESS].can_read(viewer, run.repo):
                    break
                batch = await store.events.read(run.id, after=after, limit=200)
                highlights.feed([e for e in batch if e.kind in run_summary.OUTCOME_KINDS])
                for message in await asyncio.to_thread(_messages, batch, transcript):
                    await stream.send(json.dumps(message), id=str(message["seq"]), event="entry")
                after = batch[-1].seq if batch else after
                if any(e.kind == "network" for e in batch):
                    await stream.send(json.dumps(await _network(store, run, after)), event="entry")
                current = await store.runs.get(run.id) or run
                context = await _context(request, viewer, current, highlights)
                changed = _changes(context)
                if changed != shown:
                    shown = changed
                    summary = render.fragment("summary.html", **context)
                    await stream.send(json.dumps({"html": str(summary)}), event="summary")
                if not current.state.active and not batch:
                    await stream.send("{}", event="end")
                    break
                await asyncio.sleep(LIVE_POLL)
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        streams.discard(task)
    return response


def _messages(batch: list[RunEvent], transcript: view.Transcript) -> list[dict[str, Any]]:
    """Rendered entries (blocking: Pygments on a diff): {seq, key, section, html}; an
    entry taken off the page comes with empty html (run.js replaces it with nothing)."""
    messages = []
    for event in batch:
        for made in transcript.feed(event):
            html = "" if made.kind == view.GONE else render.entry_html(made)
            messages.append(
                {"seq": event.seq, "key": made.key, "section": made.section, "html": html}
            )
    return messages


async def _network(store: Any, run: Run, seq: int) -> dict[str, Any]:
    events = await store.events.read(run.id, kinds=("network",), limit=PAGE_EVENTS)
    html = render.fragment("network.html", network=run_summary.network_summary(events))
    return {"seq": seq, "key": "network", "section": "network", "html": str(html)}


def _changes(context: dict[str, Any]) -> Any:
    """What the summary shows, less the clock: it is sent again only when this changes."""
    s = context["s"]
    return (
        {k: v for k, v in s.items() if k != "duration"},
        context["o"],
        context["links"],
        context["steer"],
        context["run"].error,
        context["run"].branch,
    )


async def cancel(request: web.Request) -> web.StreamResponse:
    viewer, run = await _steering(request)
    await _allowed(request, viewer, run, "Cancelling a run")
    cancelled = await cancel_run(request.app[ACCESS].services.store, run, requested_by=viewer.login)
    log.info("%s cancelled run(s) %s from the run page", viewer.login, [r.id for r in cancelled])
    raise web.HTTPSeeOther(f"/runs/{run.id}")


async def retry(request: web.Request) -> web.StreamResponse:
    viewer, run = await _steering(request)
    await _allowed(request, viewer, run, "Retrying a run")
    if run.state.active:
        raise web.HTTPConflict(text="The run is still working: cancel it first, or wait.\n")
    form = await request.post()
    instructions = str(form.get("instructions") or "").strip()[:MAX_INSTRUCTIONS]
    services = request.app[ACCESS].services
    follow_up = await queue_follow_up(
        services.store,
        run,
        requested_by=viewer.login,
        instructions=instructions,
        wake_workers=services.workers.wake,
    )
    note = f"run {follow_up.id} asked for by @{viewer.login} on the run page"
    await services.store.runs.add_step(run.id, "retry", note)
    raise web.HTTPSeeOther(f"/runs/{follow_up.id}")


async def _steering(request: web.Request) -> tuple[Viewer, Run]:
    """The run, if this person may see it, and a form that carries this session's token."""
    viewer, run = await visible_run(request)
    form = await request.post()
    if viewer.via == "session" and not csrf_ok(await get_session(request), form.get(CSRF_FIELD)):
        raise web.HTTPForbidden(text="This form has expired: reload the page and try again.\n")
    return viewer, run


async def _allowed(request: web.Request, viewer: Viewer, run: Run, asked: str) -> None:
    permission = await request.app[ACCESS].can_write(viewer, run, cached=False)
    if permission is None or not permission.allowed:
        why = permission.refusal(asked, mention=False) if permission else "GitHub did not say."
        raise web.HTTPForbidden(text=why + "\n")


def _number(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
