"""GET /runs: the recent runs this person can see, by repository, state and "mine"."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp_session import get_session

from app.models import RunState
from app.web.pages import render
from app.web.pages.access import ACCESS, NotSignedIn, viewer_or_sign_in
from app.web.pages.run_summary import STATE_LABELS
from app.web.signin import csrf_token, sign_in_url

LOOKED_AT = 300  # recent runs looked through; those the person can see are listed
SHOWN = 100


async def runs_list(request: web.Request) -> web.Response:
    viewer = await viewer_or_sign_in(request)
    access = request.app[ACCESS]
    repo = request.query.get("repo", "").strip() or None
    state = request.query.get("state", "")
    mine = request.query.get("mine") == "1"
    states = [RunState(state)] if state in set(RunState) else None
    candidates = await access.services.store.runs.find(
        repo=repo, states=states, requested_by=viewer.login if mine else None, limit=LOOKED_AT
    )
    repos = sorted({run.repo for run in candidates})
    try:
        readable = await asyncio.gather(*(access.can_read(viewer, name) for name in repos))
    except NotSignedIn:
        raise web.HTTPFound(sign_in_url(request)) from None
    visible = {name for name, ok in zip(repos, readable, strict=True) if ok}
    runs = [run for run in candidates if run.repo in visible][:SHOWN]
    session = await get_session(request)
    text = render.page(
        "runs.html",
        viewer=viewer,
        csrf=csrf_token(session) if viewer.via == "session" else "",
        runs=runs,
        repos=sorted(visible | ({repo} if repo and repo in visible else set())),
        states=[s.value for s in RunState],
        labels=STATE_LABELS,
        filters={"repo": repo or "", "state": state if states else "", "mine": mine},
    )
    return render.html(text)
