"""The buttons on a run's messages: Retry (a modal with optional instructions), Cancel, Open PR."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.actions import cancel_active, queue_follow_up
from app.models import Run
from app.slack import blocks
from app.slack.identity import SlackUser
from app.slack.parsing import Origin

if TYPE_CHECKING:
    from app.slack.commands import FrontDoor

log = logging.getLogger(__name__)

RETRY_MODALS = "slack_retry_modal"  # kv: modal key -> the run and the clicked message
RETRY_VIEW = "honk_retry_modal"
RETRY_BLOCK, RETRY_INPUT = "instructions", "text"
UNKNOWN_RUN = "Honk no longer knows that run."


def retry_view(run: Run, key: str) -> dict[str, Any]:
    """The Retry modal: one optional text input; `key` finds the pending record again."""
    target = f"{run.repo}#{run.issue_number or run.pr_number}"
    return View(
        type="modal",
        callback_id=RETRY_VIEW,
        title="Retry with Honk",
        submit="Retry",
        close="Cancel",
        private_metadata=key,
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(text=f"Run {run.id} on `{blocks.escape(target)}`")
            ),
            InputBlock(
                block_id=RETRY_BLOCK,
                optional=True,
                label="What should Honk do differently?",
                element=PlainTextInputElement(
                    action_id=RETRY_INPUT, multiline=True, max_length=3000
                ),
            ),
        ],
    ).to_dict()


def marked(message_blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """A message's blocks with its buttons replaced by a note saying what was done."""
    kept = [b for b in message_blocks if b.get("type") != "actions"]
    return [*kept, ContextBlock(elements=[MarkdownTextObject(text=note)]).to_dict()]


def submitted_text(view: Mapping[str, Any]) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(RETRY_BLOCK) or {}
    return str((values.get(RETRY_INPUT) or {}).get("value") or "").strip()


async def on_block_action(door: FrontDoor, payload: Mapping[str, Any]) -> None:
    """Retry opens its modal at once (a trigger_id lasts 3 s); Cancel continues in a task."""
    origin = interaction_origin(payload)
    for action in payload.get("actions") or []:
        action_id = action.get("action_id")
        if action_id == blocks.RETRY_ACTION:
            await open_retry(door, payload, action, origin)
        elif action_id == blocks.CANCEL_ACTION:
            door.spawn(cancel(door, payload, action, origin), origin)
        # Open PR is a link button: Slack opens the URL; Honk only acknowledges.


async def open_retry(
    door: FrontDoor, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    run = await run_of(door, action)
    if run is None:
        door.spawn(door.tell(origin, UNKNOWN_RUN), None)
        return
    message = payload.get("message") or {}
    key = secrets.token_urlsafe(16)
    # The clicked message is kept server-side: private_metadata holds 3000 characters at most.
    await door.store.put_kv(
        RETRY_MODALS,
        key,
        {
            "run_id": run.id,
            "user": origin.user.key,
            "channel": origin.channel,
            "ts": (payload.get("container") or {}).get("message_ts") or message.get("ts"),
            "thread_ts": message.get("thread_ts"),
            "text": message.get("text") or "",
            "blocks": message.get("blocks") or [],
        },
    )
    try:
        await door.slack.views_open(trigger_id=payload["trigger_id"], view=retry_view(run, key))
    except SlackApiError as exc:
        await door.store.delete_kv(RETRY_MODALS, key)
        door.spawn(door.tell(origin, f"Honk could not open the form: {describe_slack(exc)}"), None)


async def on_retry_submitted(door: FrontDoor, payload: Mapping[str, Any]) -> None:
    """Queue the follow-up run with the modal's text, then mark the clicked message."""
    view = payload.get("view") or {}
    key = str(view.get("private_metadata") or "")
    record = await door.store.get_kv(RETRY_MODALS, key) if key else None
    user = interaction_user(payload)
    if not isinstance(record, dict) or record.get("user") != user.key:
        log.warning("a retry modal was submitted without a matching record")
        return
    await door.store.delete_kv(RETRY_MODALS, key)
    origin = Origin(
        user,
        record["channel"],
        request_id=f"view:{view.get('id', '')}",
        thread_ts=record.get("thread_ts") or record.get("ts"),
    )
    run = await door.store.get_run(int(record["run_id"]))
    if run is None:
        await door.tell(origin, UNKNOWN_RUN)
        return
    allowed = await door.authorize(origin, run.repo, run.installation_id)
    if allowed is None:
        return
    follow_up = await queue_follow_up(
        door.store, run, requested_by=allowed.login, instructions=submitted_text(view)
    )
    door.wake_workers()
    log.info("queued run %s, a retry of run %s, from Slack", follow_up.id, run.id)
    note = f":repeat: <@{user.id}> asked for a retry: run {follow_up.id} is queued."
    await mark(door, record["channel"], record.get("ts"), record, note)


async def cancel(
    door: FrontDoor, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    run = await run_of(door, action)
    if run is None:
        await door.tell(origin, UNKNOWN_RUN)
        return
    allowed = await door.authorize(origin, run.repo, run.installation_id)
    if allowed is None:
        return
    if run.issue_number is not None:
        cancelled = await cancel_active(
            door.store, run.repo, issue_number=run.issue_number, requested_by=allowed.login
        )
    elif run.pr_number is not None:
        cancelled = await cancel_active(
            door.store, run.repo, pr_number=run.pr_number, requested_by=allowed.login
        )
    else:
        cancelled = [await door.store.request_cancel(run.id)] if run.state.active else []
    if not cancelled:
        await door.tell(origin, f"Nothing to cancel: run {run.id} is {run.state.value}.")
        return
    ids = ", ".join(str(r.id) for r in cancelled)
    note = f":no_entry_sign: <@{origin.user.id}> cancelled run {ids}."
    message = payload.get("message") or {}
    ts = (payload.get("container") or {}).get("message_ts") or message.get("ts")
    await mark(door, origin.channel, ts, message, note)


async def run_of(door: FrontDoor, action: Mapping[str, Any]) -> Run | None:
    value = str(action.get("value") or "")
    return await door.store.get_run(int(value)) if value.isdigit() else None


async def mark(
    door: FrontDoor, channel: str, ts: str | None, message: Mapping[str, Any], note: str
) -> None:
    """Update the clicked message in place: its buttons gone, what happened said instead."""
    if not ts:
        return
    try:
        await door.slack.chat_update(
            channel=channel,
            ts=ts,
            text=str(message.get("text") or note),
            blocks=marked(list(message.get("blocks") or []), note),
        )
    except SlackApiError as exc:
        log.warning("could not update the clicked message: %s", describe_slack(exc))


def describe_slack(exc: SlackApiError) -> str:
    return f"Slack answered {exc.response.get('error')}"


def interaction_user(payload: Mapping[str, Any]) -> SlackUser:
    user = payload.get("user") or {}
    team = user.get("team_id") or (payload.get("team") or {}).get("id") or ""
    return SlackUser(str(team), str(user.get("id") or ""))


def interaction_origin(payload: Mapping[str, Any]) -> Origin:
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
