"""What a Slack request says: who asked and where (Origin), and what (Command); pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.handlers.slack.identity import SlackUser

TITLE_LIMIT = 80

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}?"
_REPO = rf"(?:https?://[^/\s]+/)?(?P<repo>{_OWNER}/{_NAME})(?:\.git)?/?"
_LEADING_REPO = re.compile(rf"^{_REPO}(?=\s|$)")
_TRAILING_REPO = re.compile(rf"\s+(?:in|on|for)\s+{_REPO}\s*[.!?]?\s*$", re.IGNORECASE)
_ONLY_REPO = re.compile(rf"^{_REPO}$")
_SLACK_TOKEN = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_CLEAR_WORDS = {"clear", "none", "off", "unset"}


@dataclass(frozen=True)
class Origin:
    """Who asked, and where the answer goes."""

    user: SlackUser
    channel: str
    request_id: str = ""  # event:<event_id>, command:<trigger_id>, …
    response_url: str | None = None  # slash commands and buttons
    message_ts: str | None = None  # the message that asked (mention, DM)
    thread_ts: str | None = None  # the thread that message is in, if any
    is_dm: bool = False

    @property
    def thread_root(self) -> str | None:
        return self.thread_ts or self.message_ts


@dataclass(frozen=True)
class Command:
    """What someone asked: ask | repo | link | unlink | fleet | help, with its arguments."""

    kind: str
    repo: str | None = None
    text: str = ""
    action: str = ""  # repo: show|set|clear


def slack_to_plain(text: str, bot_user_id: str | None = None) -> str:
    """Slack's wire format as plain text: Honk's mentions dropped, links and entities undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = re.sub(r"^\s*(?:<@[UW][A-Z0-9]+(?:\|[^>]*)?>\s*)+", "", text)

    def token(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target[:1] in "@#!":  # <@U…|name>, <#C…|channel>, <!here>
            return target[0].replace("!", "@") + (label or target[1:].split("^")[0])
        if label and label not in target:
            return f"{label} ({target})"
        return label or target

    text = _SLACK_TOKEN.sub(token, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]+", " ", text).strip()


def parse_command(text: str) -> Command:
    """`/honk …` or a mention's text (already plain) as a Command."""
    text = text.strip()
    word, _, rest = text.partition(" ")
    word, rest = word.lower(), rest.strip()
    if word in ("", "help", "?"):
        return Command("help")
    if word == "repo":
        if not rest:
            return Command("repo", action="show")
        if rest.lower() in _CLEAR_WORDS:
            return Command("repo", action="clear")
        if match := _ONLY_REPO.match(rest):
            return Command("repo", repo=match["repo"], action="set")
    if word in ("link", "connect", "login"):
        # Connecting GitHub is signing in with GitHub: there is nothing to type after it.
        return Command("link")
    if word in ("unlink", "disconnect", "logout") and not rest:
        return Command("unlink")
    if word == "fleet":
        # A form, opened at once: what follows the word, if anything, is its request.
        return Command("fleet", text=rest)
    return parse_request(text)


def parse_request(text: str) -> Command:
    """`owner/repo <what>`, `<what> in owner/repo`, or `<what>` for the channel's default."""
    if match := _LEADING_REPO.match(text):
        return Command("ask", repo=match["repo"], text=text[match.end() :].strip())
    if match := _TRAILING_REPO.search(text):
        return Command("ask", repo=match["repo"], text=text[: match.start()].strip())
    return Command("ask", text=text)


def issue_title(request: str) -> str:
    lines = request.strip().splitlines()
    first = lines[0].strip() if lines else "Request from Slack"
    return first if len(first) <= TITLE_LIMIT else first[: TITLE_LIMIT - 1].rstrip() + "…"


def issue_body(request: str, login: str, permalink: str | None) -> str:
    where = f"[in Slack]({permalink})" if permalink else "in Slack"
    return f"{request.strip()}\n\n---\nAsked {where} by @{login}."


def command_request(form: Mapping[str, Any]) -> tuple[Origin, Command]:
    """A slash command's form: who asked where, and what."""
    origin = Origin(
        SlackUser(form.get("team_id", ""), form.get("user_id", "")),
        channel=form.get("channel_id", ""),
        request_id=f"command:{form.get('trigger_id', '')}",
        response_url=form.get("response_url") or None,
        is_dm=form.get("channel_name") == "directmessage",
    )
    return origin, parse_command(slack_to_plain(form.get("text", "")))


def event_request(payload: Mapping[str, Any]) -> tuple[Origin, Command] | None:
    """An Events API callback as a request (a mention, a DM); None for anything else."""
    event = payload.get("event") or {}
    if event.get("bot_id") or event.get("subtype") or not event.get("user"):
        return None  # Honk's own messages, edits, joins: not requests
    if event.get("type") == "message" and event.get("channel_type") == "im":
        is_dm = True
    elif event.get("type") == "app_mention":
        is_dm = False
    else:
        return None
    bot = _bot_user_id(payload)
    if event["user"] == bot:
        return None
    origin = Origin(
        SlackUser(str(payload.get("team_id") or event.get("team") or ""), event["user"]),
        channel=str(event.get("channel") or ""),
        request_id=f"event:{payload.get('event_id', '')}",
        message_ts=event.get("ts"),
        thread_ts=event.get("thread_ts"),
        is_dm=is_dm,
    )
    return origin, parse_command(slack_to_plain(str(event.get("text") or ""), bot))


def interaction_user(payload: Mapping[str, Any]) -> SlackUser:
    user = payload.get("user") or {}
    team = user.get("team_id") or (payload.get("team") or {}).get("id") or ""
    return SlackUser(str(team), str(user.get("id") or ""))


def interaction_origin(payload: Mapping[str, Any]) -> Origin:
    """Who clicked a button, where, and the thread of the clicked message."""
    container = payload.get("container") or {}
    message = payload.get("message") or {}
    channel = (payload.get("channel") or {}).get("id") or container.get("channel_id") or ""
    return Origin(
        interaction_user(payload),
        str(channel),
        request_id=f"action:{payload.get('trigger_id', '')}",
        response_url=payload.get("response_url") or None,
        thread_ts=message.get("thread_ts") or container.get("message_ts"),
    )


def _bot_user_id(payload: Mapping[str, Any]) -> str | None:
    for authorization in payload.get("authorizations") or []:
        if authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return None
