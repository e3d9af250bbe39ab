"""Connecting GitHub from Slack: the "Connect GitHub" link's page, then GitHub's sign-in.

Slack's button opens HONK_URL/connect/<nonce> (single use, 15 minutes, shown to one Slack
user only). The page names the Slack account being connected and asks for a click (a POST
with the session's CSRF token): a link forwarded to someone else cannot quietly tie their
GitHub account to the sender's Slack. Then the OAuth web flow of app/web/signin.py runs
with this nonce in the session; its callback hands the token here, it is kept encrypted
(app/github/connections.py), and the Slack thread hears that the person is connected.
"""

from __future__ import annotations

import html
import logging
import secrets

from aiohttp import web
from aiohttp_session import get_session

from app.github.connections import PendingConnect
from app.github.oauth import UserToken
from app.log import describe_error
from app.models import SlackThread
from app.services import Services
from app.web.signin import CSRF_FIELD, ON_CONNECT, SIGN_IN, csrf_ok, csrf_token

log = logging.getLogger(__name__)

CONNECT_PATH = "/connect/{nonce}"
SERVICES_KEY = web.AppKey("connect_services", web.AppKey)  # the app's Services key
GONE = "This link has expired or was used already. Ask for a new one with `/honk link` in Slack."


def add_routes(app: web.Application, services: web.AppKey[Services]) -> None:
    app[SERVICES_KEY] = services
    app[ON_CONNECT] = finish
    app.router.add_get(CONNECT_PATH, connect_page)
    app.router.add_post(CONNECT_PATH, connect_start)


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
        return str(user.get("real_name") or user.get("name") or pending.user_id)
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
        "<p>Only go on if you are that Slack user.</p>"
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
    pending = await _pending(request)
    flow = request.app[SIGN_IN]
    if not flow.oauth.configured:
        raise web.HTTPServiceUnavailable(text="Sign-in with GitHub is not configured.\n")
    state = secrets.token_urlsafe(24)
    session["oauth_state"] = state
    session["connect"] = pending.nonce
    raise web.HTTPFound(
        flow.oauth.authorize_url(redirect_uri=flow.callback_url(request), state=state)
    )


async def finish(
    request: web.Request, nonce: str, token: UserToken, user: dict[str, object]
) -> web.StreamResponse:
    """GitHub signed the person in: keep their token for the Slack user, tell the thread."""
    services = _services(request)
    pending = await services.connections.take(nonce)
    if pending is None:
        return _page("Link expired", f"<p>{html.escape(GONE)}</p>", status=400)
    connection = await services.connections.connect(pending.slack_user, token, dict(user))
    login = connection.login
    text = f":link: <@{pending.user_id}> connected GitHub as `{login}`."
    back = ""
    if pending.channel and pending.thread_ts:
        thread = SlackThread(pending.channel, pending.thread_ts)
        await services.slack.reply(thread, text=text + " Press the button again to go on.")
        link = await services.slack.permalink(thread)
        if link:
            back = f'<p><a href="{html.escape(link)}">Back to the Slack thread</a></p>'
    elif pending.channel:
        try:
            await services.slack.client.chat_postEphemeral(
                channel=pending.channel, user=pending.user_id, text=text
            )
        except Exception as exc:
            log.info("could not tell %s in Slack: %s", pending.user_id, describe_error(exc))
    body = (
        f"<p>Slack now knows you as <strong>{html.escape(login)}</strong> on GitHub. "
        "You can close this page and go back to Slack.</p>" + back
    )
    return _page("Connected", body)
