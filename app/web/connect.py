"""Connecting GitHub from Slack: the "Connect GitHub" link's page, then GitHub's sign-in.

Slack's button opens HONK_URL/connect/<nonce> (single use, 15 minutes, shown to one Slack
user only). The page names the Slack account being connected and asks for a click (a POST
with the session's CSRF token). Then the OAuth web flow of app/web/signin.py runs, its
`state` bound to this link (in the session's flow marker and in the link's record), so only
that callback can finish it, and a plain sign-in in the same browser later cannot. Back from
GitHub, the token waits (sealed, server-side) while a last page names both accounts, "GitHub
<login> to Slack <name>", and only a click there (from the same browser) connects them: a
link forwarded to someone else cannot quietly tie their GitHub account to the sender's Slack.
The Slack user is then told which GitHub account they are connected as.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web
from aiohttp_session import get_session

from app.github.connections import Connection, PendingConnect
from app.github.oauth import UserToken
from app.log import describe_error
from app.models import SlackThread
from app.services import Services
from app.web.signin import (
    CONNECT_WAITING,
    CSRF_FIELD,
    OAUTH,
    ON_CONNECT,
    SIGN_IN,
    begin_oauth,
    csrf_ok,
    csrf_token,
)

log = logging.getLogger(__name__)

CONNECT_PATH = "/connect/{nonce}"
CONFIRM_PATH = "/connect/{nonce}/confirm"
CANCEL_PATH = "/connect/{nonce}/cancel"
# The app's key for its Services (the app decides which key it keeps them under).
SERVICES_KEY: web.AppKey[web.AppKey[Services]] = web.AppKey("connect_services")
GONE = "This link has expired or was used already. Ask for a new one with `/honk link` in Slack."


def add_routes(app: web.Application, services: web.AppKey[Services]) -> None:
    app[SERVICES_KEY] = services
    app[ON_CONNECT] = finish
    app.router.add_get(CONNECT_PATH, connect_page)
    app.router.add_post(CONNECT_PATH, connect_start)
    app.router.add_post(CONFIRM_PATH, connect_confirm)
    app.router.add_post(CANCEL_PATH, connect_cancel)


def _services(request: web.Request) -> Services:
    return request.app[request.app[SERVICES_KEY]]


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} · Honk</title>"
            '<link rel="stylesheet" href="/assets/honk.css"></head>'
            f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>\n"
        ),
    )


async def _pending(request: web.Request) -> PendingConnect:
    found = await _services(request).connections.pending(request.match_info["nonce"])
    if found is None:
        raise web.HTTPNotFound(text=f"{GONE}\n")
    return found


async def _slack_name(services: Services, pending: PendingConnect) -> str:
    try:
        answer = await services.slack.client.users_info(user=pending.user_id)
        user = answer.get("user") or {}
        # A real name is anyone's to choose; the handle, unique in the workspace, goes with it.
        real, handle = str(user.get("real_name") or ""), str(user.get("name") or "")
        if real and handle and real != handle:
            return f"{real} (@{handle})"
        return real or handle or pending.user_id
    except Exception as exc:
        log.info("no Slack name for %s: %s", pending.user_id, describe_error(exc))
        return pending.user_id


async def connect_page(request: web.Request) -> web.StreamResponse:
    """Whose Slack account is being connected, and one button to go on to GitHub."""
    pending = await _pending(request)
    name = await _slack_name(_services(request), pending)
    session = await get_session(request)
    token = csrf_token(session)
    body = (
        f"<p>This connects the Slack user <strong>{html.escape(name)}</strong> to the GitHub "
        "account you sign in with next. Honk then merges and approves as you, with your own "
        "GitHub permissions, when you press those buttons in Slack.</p>"
        "<p>Only go on if you are that Slack user. After GitHub, you confirm which GitHub "
        "account is connected; nothing is connected before that.</p>"
        f'<form method="post"><input type="hidden" name="{CSRF_FIELD}" '
        f'value="{html.escape(token)}"><button type="submit">Continue with GitHub</button>'
        "</form>"
    )
    return _page("Connect GitHub to Slack", body)


async def connect_start(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    form = await request.post()
    if not csrf_ok(session, form.get(CSRF_FIELD)):
        raise web.HTTPForbidden(text="This form has expired; open the link from Slack again.\n")
    flow = request.app[SIGN_IN]
    if not flow.oauth.configured:
        raise web.HTTPServiceUnavailable(text="Sign-in with GitHub is not configured.\n")
    nonce = request.match_info["nonce"]
    state = begin_oauth(session, connect=nonce)
    if await _services(request).connections.bind(nonce, state) is None:
        session.pop(OAUTH, None)
        raise web.HTTPNotFound(text=f"{GONE}\n")
    raise web.HTTPFound(
        flow.oauth.authorize_url(redirect_uri=flow.callback_url(request), state=state)
    )


async def finish(
    request: web.Request, nonce: str, state: str, token: UserToken, user: dict[str, object]
) -> web.StreamResponse:
    """GitHub signed the person in for this link: name both accounts, and wait for a click."""
    services = _services(request)
    waiting = await services.connections.authorized(nonce, state, token, dict(user))
    if waiting is None:
        await services.connections.revoke_quietly(token, "unused")
        return _page("Link expired", f"<p>{html.escape(GONE)}</p>", status=400)
    pending, key = waiting
    session = await get_session(request)
    session[CONNECT_WAITING] = {"nonce": nonce, "key": key}
    name = await _slack_name(services, pending)
    csrf = html.escape(csrf_token(session))
    login = html.escape(str(user["login"]))
    field = f'<input type="hidden" name="{CSRF_FIELD}" value="{csrf}">'
    body = (
        f"<p>Connect the GitHub account <strong>{login}</strong> to the Slack user "
        f"<strong>{html.escape(name)}</strong>?</p>"
        f"<p>Honk will then merge, approve and close pull requests as <strong>{login}</strong> "
        f"when <strong>{html.escape(name)}</strong> presses those buttons in Slack. If that "
        "Slack user is not you, cancel.</p>"
        f'<form method="post" action="/connect/{html.escape(nonce)}/confirm">{field}'
        f'<button type="submit">Connect {login}</button></form>'
        f'<form method="post" action="/connect/{html.escape(nonce)}/cancel">{field}'
        '<button type="submit">Cancel</button></form>'
    )
    return _page("Confirm the connection", body)


async def _waiting_key(request: web.Request) -> str:
    """The confirmation key this browser holds for the link in the path (taken out)."""
    session = await get_session(request)
    form = await request.post()
    if not csrf_ok(session, form.get(CSRF_FIELD)):
        raise web.HTTPForbidden(text="This form has expired; open the link from Slack again.\n")
    waiting = session.pop(CONNECT_WAITING, None)
    nonce = request.match_info["nonce"]
    if not isinstance(waiting, dict) or waiting.get("nonce") != nonce:
        raise web.HTTPNotFound(text=f"{GONE}\n")
    return str(waiting.get("key") or "")


async def connect_confirm(request: web.Request) -> web.StreamResponse:
    """The person confirmed: keep their token for the Slack user, tell them in Slack."""
    services = _services(request)
    key = await _waiting_key(request)
    before = await services.connections.pending(request.match_info["nonce"])
    previous = await services.connections.login_of(before.slack_user) if before else None
    done = await services.connections.confirm(request.match_info["nonce"], key)
    if done is None:
        return _page("Link expired", f"<p>{html.escape(GONE)}</p>", status=400)
    pending, connection = done
    back = await _tell_slack(services, pending, connection, previous)
    login = html.escape(connection.login)
    body = (
        f"<p>Slack now knows you as <strong>{login}</strong> on GitHub. "
        "You can close this page and go back to Slack.</p>" + back
    )
    return _page("Connected", body)


async def connect_cancel(request: web.Request) -> web.StreamResponse:
    services = _services(request)
    key = await _waiting_key(request)
    if await services.connections.cancel(request.match_info["nonce"], key) is None:
        return _page("Link expired", f"<p>{html.escape(GONE)}</p>", status=400)
    body = "<p>Nothing was connected, and GitHub's sign-in for it was revoked.</p>"
    return _page("Not connected", body)


async def _tell_slack(
    services: Services, pending: PendingConnect, connection: Connection, previous: str | None
) -> str:
    """The Slack user hears which GitHub account they are now connected as (and which one it
    replaced); the page's link back to the thread, if there is one."""
    login = connection.login
    text = f":link: <@{pending.user_id}> connected GitHub as `{login}`."
    if previous and previous != login:
        text += f" (It was `{previous}`.)"
    if pending.channel and pending.thread_ts:
        thread = SlackThread(pending.channel, pending.thread_ts)
        await services.slack.reply(thread, text=text + " Press the button again to go on.")
        link = await services.slack.permalink(thread)
        if link:
            return f'<p><a href="{html.escape(link)}">Back to the Slack thread</a></p>'
    elif pending.channel:
        try:
            await services.slack.client.chat_postEphemeral(
                channel=pending.channel, user=pending.user_id, text=text
            )
        except Exception as exc:
            log.info("could not tell %s in Slack: %s", pending.user_id, describe_error(exc))
    return ""
