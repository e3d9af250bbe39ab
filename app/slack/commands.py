"""Slack as the front door: slash commands, mentions and DMs ask Honk; answers go in place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import aiohttp
import gidgethub
from cachetools import TTLCache
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import MarkdownTextObject, SectionBlock
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from app.config import Settings
from app.github.auth import GitHubApp
from app.github.client import WRITE_ROLES, GitHubClient
from app.log import redact
from app.models import RepoRef, RunKind
from app.progress import Progress
from app.slack import blocks, buttons
from app.slack.identity import Identity, LinkError, SlackUser, Who
from app.slack.notify import USER_ROOTS
from app.slack.parsing import (
    Command,
    Origin,
    comment_ref,
    github_login,
    issue_body,
    issue_title,
    parse_command,
    slack_to_plain,
)
from app.store import NewRun, Store

log = logging.getLogger(__name__)

SLACK_EVENT = "slack"  # the event name of a stored Slack request in the deliveries inbox
CHANNEL_REPOS = "slack_channel_repo"  # kv: channel id -> {"repo", "set_by"}
INSTALLATION_CACHE_SECONDS = 300
SHUTDOWN_GRACE = 5.0

HELP = (
    "*Ask Honk from Slack*\n"
    "• `/honk owner/repo <what to do>`: Honk opens an issue there and turns it into a tested "
    "pull request; every update comes to the thread of the request.\n"
    "• `@Honk <what to do> in owner/repo`: the same from a mention or a direct message.\n"
    "• `/honk repo owner/repo` gives this channel a default repository, so "
    "`/honk <what to do>` is enough here (`/honk repo` shows it, `/honk repo clear` removes it).\n"
    "• `/honk link <github-login>` links you to your GitHub account when your Slack e-mail is "
    "not your GitHub profile's public e-mail (`/honk link` shows it, `/honk unlink` removes it).\n"
    "Honk's messages have *Retry* (with optional instructions), *Cancel* and *Open PR* buttons. "
    "As on GitHub, you need write access to the repository."
)
NEED_REPO = (
    "Which repository? Ask with `/honk owner/repo <what to do>` or `@Honk <what to do> in "
    "owner/repo`, or give this channel a default with `/honk repo owner/repo`."
)
NEED_TEXT = "What should Honk do in `{repo}`? For example `/honk {repo} fix the login crash`."
NOT_INSTALLED = "Honk is not installed on `{repo}` (or there is no such repository)."
UNMAPPED = (
    "Honk doesn't know who you are on GitHub: {why}. Link your account with "
    "`/honk link <github-login>` and ask again. Nothing was started."
)
NO_WRITE = (
    "Honk only works for people with write access to `{repo}`, as on GitHub; your permission "
    "there (as `{login}`) is `{permission}`. Nothing was started."
)
CANNOT_POST = (
    "Honk cannot post in this conversation (invite it with `/invite @Honk`); the run's "
    "updates go to Honk's default channel."
)
LINK_HOWTO = (
    "To link your Slack account to GitHub `{login}`, comment `{code}` on any issue or pull "
    "request in a repository Honk is installed on, then send "
    "`/honk link confirm <link to that comment>` within 30 minutes."
)
BAD_COMMENT_URL = (
    "Give the comment's link, like `{host}/owner/repo/issues/12#issuecomment-123` "
    "(the comment's menu: Copy link)."
)


@dataclass(frozen=True)
class Allowed:
    """A Slack user Honk works for on a repository."""

    gh: GitHubClient
    login: str
    installation_id: int


def describe(exc: BaseException) -> str:
    """A failure in a few words for the person who asked; never a secret."""
    if isinstance(exc, SlackApiError):
        return buttons.describe_slack(exc)
    return redact(f"{type(exc).__name__}: {exc}")[:300]


def unmapped_reason(who: Who, owner: str) -> str:
    if not who.email:
        return "your Slack profile shows no e-mail address"
    return (
        f"your Slack e-mail `{who.email}` is not the public e-mail of any member of `{owner}` "
        "on GitHub"
    )


def _ephemeral(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def _bot_user_id(payload: Mapping[str, Any]) -> str | None:
    for authorization in payload.get("authorizations") or []:
        if authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return None


class FrontDoor:
    """Answers Slack within its 3 seconds; the slow work runs in tasks this object owns."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        github: GitHubApp,
        slack: AsyncWebClient,
        session: aiohttp.ClientSession,
        *,
        wake_workers: Callable[[], None] = lambda: None,
        wake_dispatcher: Callable[[], None] = lambda: None,
        identity: Identity | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.github = github
        self.slack = slack
        self.session = session  # for response_url answers; its owner closes it
        self.wake_workers = wake_workers
        self.wake_dispatcher = wake_dispatcher
        self.identity = identity or Identity(store, slack)
        self._tasks: set[asyncio.Task[None]] = set()
        self._installations: TTLCache[str, int] = TTLCache(
            maxsize=1024, ttl=INSTALLATION_CACHE_SECONDS
        )

    # -- entry points, called by app/slack/web.py --------------------------------------

    async def command(self, form: Mapping[str, str]) -> dict[str, Any]:
        """A slash command: the immediate answer; the slow work is stored, then dispatched."""
        origin, command = self._command_request(form)
        if (quick := self._quick_answer(command)) is not None:
            return _ephemeral(quick)
        await self._store_request(origin, {"kind": "command", "form": dict(form)})
        if command.kind == "ask":
            where = f" in `{command.repo}`" if command.repo else ""
            return _ephemeral(f"On it: asking Honk{where}…")
        return _ephemeral("One moment…")

    def _command_request(self, form: Mapping[str, Any]) -> tuple[Origin, Command]:
        origin = Origin(
            SlackUser(form.get("team_id", ""), form.get("user_id", "")),
            channel=form.get("channel_id", ""),
            request_id=f"command:{form.get('trigger_id', '')}",
            response_url=form.get("response_url") or None,
            is_dm=form.get("channel_name") == "directmessage",
        )
        return origin, parse_command(slack_to_plain(form.get("text", "")))

    async def event(self, payload: Mapping[str, Any]) -> None:
        """An Events API callback (a mention, a DM): stored, then dispatched."""
        request = self._event_request(payload)
        if request is not None:
            await self._store_request(request[0], {"kind": "event", "payload": dict(payload)})

    async def _store_request(self, origin: Origin, stored: dict[str, Any]) -> None:
        # Through the stored inbox, like GitHub's deliveries: a crash after Slack's answer
        # loses nothing, and whichever process dispatches next does the work.
        await self.store.record_delivery(f"slack:{origin.request_id}", SLACK_EVENT, stored)
        self.wake_dispatcher()

    async def process_stored(self, payload: Mapping[str, Any]) -> None:
        """Do the slow work of a stored Slack request (called by the dispatcher)."""
        if payload.get("kind") == "command":
            origin, command = self._command_request(payload.get("form") or {})
        else:
            request = self._event_request(payload.get("payload") or {})
            if request is None:
                return
            origin, command = request
        quick = self._quick_answer(command)
        await self._guard(
            self.tell(origin, quick) if quick is not None else self._handle(command, origin),
            origin,
        )

    def _event_request(self, payload: Mapping[str, Any]) -> tuple[Origin, Command] | None:
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

    async def interaction(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """A button or a modal; the answer's body (None: an empty 200)."""
        kind = payload.get("type")
        if kind == "block_actions":
            await buttons.on_block_action(self, payload)
        elif (
            kind == "view_submission"
            and (payload.get("view") or {}).get("callback_id") == buttons.RETRY_VIEW
        ):
            self.spawn(buttons.on_retry_submitted(self, payload), None)
        return None

    async def close(self) -> None:
        """Let running requests finish for a moment, then cancel the rest."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- shared with buttons ---------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], origin: Origin | None) -> None:
        """Run `work` after Slack has its answer; a failure is logged and told to `origin`."""
        task = asyncio.create_task(self._guard(work, origin), name="honk-slack-request")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tell(self, origin: Origin, text: str, *, public: bool = False) -> None:
        """Answer the person who asked (only them, unless public); never raises."""
        try:
            if origin.response_url:
                webhook = AsyncWebhookClient(origin.response_url, session=self.session)
                answer = await webhook.send(
                    text=text,
                    response_type="in_channel" if public else "ephemeral",
                    replace_original=False,
                )
                if answer.status >= 300:
                    log.warning("Slack's response_url answered %s", answer.status)
            elif public or origin.is_dm:
                await self.slack.chat_postMessage(
                    channel=origin.channel, thread_ts=origin.thread_root, text=text
                )
            else:
                await self.slack.chat_postEphemeral(
                    channel=origin.channel,
                    user=origin.user.id,
                    text=text,
                    thread_ts=origin.thread_root,
                )
        except Exception as exc:
            log.warning("could not answer in Slack: %s", describe(exc))

    async def authorize(
        self, origin: Origin, repo: str, installation_id: int | None = None
    ) -> Allowed | None:
        """Whether Honk works for this Slack user on `repo`; when not, they are told why."""
        if installation_id is None:
            installation_id = await self.installation_for(repo)
            if installation_id is None:
                await self.tell(origin, NOT_INSTALLED.format(repo=repo))
                return None
        gh = await self.github.installation_client(installation_id)
        owner = RepoRef.parse(repo).owner
        who = await self.identity.github_login(origin.user, gh, owner)
        if who.login is None:
            await self.tell(origin, UNMAPPED.format(why=unmapped_reason(who, owner)))
            return None
        # The same rule as the issues.labeled gate on GitHub.
        permission = await gh.permission(repo, who.login)
        if permission not in WRITE_ROLES:
            log.info("Slack user %s (%s) may not write to %s", origin.user.id, who.login, repo)
            await self.tell(
                origin, NO_WRITE.format(repo=repo, login=who.login, permission=permission)
            )
            return None
        return Allowed(gh, who.login, installation_id)

    async def installation_for(self, repo: str) -> int | None:
        """The installation serving `repo` (asked with the App's JWT), or None."""
        key = repo.lower()
        if (cached := self._installations.get(key)) is not None:
            return cached
        ref = RepoRef.parse(repo)
        path = f"/repos/{quote(ref.owner, safe='')}/{quote(ref.name, safe='')}/installation"
        try:
            data = await self.github.app_client().getitem(path)
        except gidgethub.BadRequest as exc:
            if exc.status_code == HTTPStatus.NOT_FOUND:
                return None
            raise
        self._installations[key] = int(data["id"])
        return int(data["id"])

    # -- the work ----------------------------------------------------------------------------

    async def _guard(self, work: Coroutine[Any, Any, Any], origin: Origin | None) -> None:
        try:
            await work
        except Exception as exc:
            log.exception("Slack request %s failed", origin.request_id if origin else "")
            if origin is not None:
                await self.tell(origin, f"Honk could not do that: {describe(exc)}")

    def _quick_answer(self, command: Command) -> str | None:
        """Answers that need no outside call: help, and a request with nothing to do."""
        if command.kind == "help":
            return HELP
        if command.kind == "ask" and not command.text:
            return NEED_TEXT.format(repo=command.repo or "owner/repo")
        return None

    async def _handle(self, command: Command, origin: Origin) -> None:
        if command.kind == "ask":
            await self._ask(command, origin)
        elif command.kind == "repo":
            await self._channel_repo(command, origin)
        elif command.kind == "link":
            await self._link(command, origin)
        elif command.kind == "unlink":
            login = await self.identity.unlink(origin.user)
            await self.tell(
                origin, f"Unlinked from `{login}`." if login else "You had no GitHub link."
            )

    async def _ask(self, command: Command, origin: Origin) -> None:
        """Open an issue with the request, queue its run, and say so in the request's thread."""
        repo = command.repo or await self.channel_repo(origin.channel)
        if repo is None:
            await self.tell(origin, NEED_REPO)
            return
        allowed = await self.authorize(origin, repo)
        if allowed is None:
            return
        channel, thread_ts, own_root = await self._open_thread(origin, repo, command.text)
        permalink = await self._permalink(channel, origin.message_ts or own_root)
        issue = await allowed.gh.create_issue(
            repo,
            issue_title(command.text),
            issue_body(command.text, allowed.login, permalink),
            labels=[self.settings.label],
        )
        # Queued here, not by the issues.labeled webhook: that event's sender is Honk's bot,
        # which the labeled handler ignores (and one active run per issue holds anyway).
        run = await self.store.enqueue_run(
            NewRun(
                repo=repo,
                installation_id=allowed.installation_id,
                kind=RunKind.ISSUE,
                issue_number=issue["number"],
                requested_by=allowed.login,
                delivery_id=origin.request_id[:100] or None,
                slack_channel=channel,
                slack_ts=thread_ts,
            )
        )
        if run is None:  # pragma: no cover - a new issue has no run yet
            await self.tell(origin, f"{issue['html_url']} already has an active run.")
            return
        log.info("queued run %s for %s#%s from Slack", run.id, repo, issue["number"])
        comment = await allowed.gh.comment(repo, issue["number"], Progress(run.id).render())
        await self.store.update_run(run.id, tracking_comment_id=comment["id"])
        self.wake_workers()
        text, blks = blocks.run_started(
            repo=repo,
            issue_number=issue["number"],
            issue_title=issue["title"],
            issue_url=issue["html_url"],
            requested_by=allowed.login,
            run_id=run.id,
        )
        if channel is None:
            await self.tell(origin, f"Honk opened {issue['html_url']} and is on it.")
        elif own_root is not None:
            await self.slack.chat_update(channel=channel, ts=own_root, text=text, blocks=blks)
        else:
            await self.slack.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=text, blocks=blks, unfurl_links=False
            )

    async def _open_thread(
        self, origin: Origin, repo: str, request: str
    ) -> tuple[str | None, str | None, str | None]:
        """(channel, thread ts, ts of a root Honk posted itself) for the run's updates.

        A mention or DM is a message: its thread is the place. A slash command leaves no
        message, so Honk posts the request as the root; where it cannot post (a private
        channel it is not in), the run reports in the default channel instead.
        """
        if origin.message_ts is not None:
            root = origin.thread_root
            await self.store.put_kv(USER_ROOTS, f"{origin.channel}:{root}", True)
            return origin.channel, root, None
        quoted = "\n".join(f"&gt; {line}" for line in blocks.escape(request).splitlines())
        head = blocks.clip(f"<@{origin.user.id}> asked Honk in `{repo}`:\n{quoted}", 3000)
        try:
            posted = await self.slack.chat_postMessage(
                channel=origin.channel,
                text=head,
                blocks=[SectionBlock(text=MarkdownTextObject(text=head)).to_dict()],
                unfurl_links=False,
            )
        except SlackApiError as exc:
            log.warning("cannot post in %s: %s", origin.channel, describe(exc))
            await self.tell(origin, CANNOT_POST)
            return None, None, None
        return str(posted["channel"]), str(posted["ts"]), str(posted["ts"])

    async def _permalink(self, channel: str | None, ts: str | None) -> str | None:
        if not channel or not ts:
            return None
        try:
            answer = await self.slack.chat_getPermalink(channel=channel, message_ts=ts)
        except SlackApiError as exc:
            log.warning("no permalink for the request: %s", describe(exc))
            return None
        return str(answer.get("permalink") or "") or None

    # -- the channel's default repository ------------------------------------------------

    async def channel_repo(self, channel: str) -> str | None:
        record = await self.store.get_kv(CHANNEL_REPOS, channel)
        return record.get("repo") if isinstance(record, dict) else None

    async def _channel_repo(self, command: Command, origin: Origin) -> None:
        if command.action == "show":
            repo = await self.channel_repo(origin.channel)
            await self.tell(
                origin,
                f"This channel's repository is `{repo}`."
                if repo
                else "This channel has no default repository: `/honk repo owner/repo` sets one.",
            )
            return
        if command.action == "clear":
            await self.store.delete_kv(CHANNEL_REPOS, origin.channel)
            await self.tell(
                origin, f"<@{origin.user.id}> removed this channel's repository.", public=True
            )
            return
        repo = str(command.repo)
        # Only someone Honk works for there may point a channel at a repository.
        allowed = await self.authorize(origin, repo)
        if allowed is None:
            return
        await self.store.put_kv(
            CHANNEL_REPOS, origin.channel, {"repo": repo, "set_by": allowed.login}
        )
        await self.tell(
            origin,
            f"<@{origin.user.id}> set this channel's repository to `{repo}`: "
            "`/honk <what to do>` now asks Honk there.",
            public=True,
        )

    # -- linking a GitHub account ------------------------------------------------------------

    async def _link(self, command: Command, origin: Origin) -> None:
        if command.action == "show":
            login = await self.identity.linked(origin.user)
            await self.tell(
                origin,
                f"You are linked to GitHub `{login}`."
                if login
                else "You have no GitHub link; Honk matches your Slack e-mail instead.",
            )
        elif command.action == "start":
            login = github_login(command.text)
            if login is None:
                await self.tell(origin, f"`{command.text}` is not a GitHub login.")
                return
            code = await self.identity.start_link(origin.user, login)
            await self.tell(origin, LINK_HOWTO.format(login=login, code=code))
        else:
            await self._confirm_link(command.text, origin)

    async def _confirm_link(self, url: str, origin: Origin) -> None:
        """The comment proves the GitHub side: only that account could have written it."""
        ref = comment_ref(url, self.settings.github_url)
        if ref is None:
            await self.tell(origin, BAD_COMMENT_URL.format(host=self.settings.github_url))
            return
        repo, comment_id = ref
        installation_id = await self.installation_for(repo)
        if installation_id is None:
            await self.tell(origin, NOT_INSTALLED.format(repo=repo))
            return
        gh = await self.github.installation_client(installation_id)
        try:
            comment = await gh.getitem(f"/repos/{repo}/issues/comments/{comment_id}")
        except gidgethub.BadRequest:
            await self.tell(origin, "Honk cannot see that comment.")
            return
        try:
            login = await self.identity.confirm_link(origin.user, comment)
        except LinkError as exc:
            await self.tell(origin, f"Not linked: {exc}.")
            return
        await self.tell(origin, f"Linked: Honk knows you as `{login}` on GitHub.")
