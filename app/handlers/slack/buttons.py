"""The buttons on a run's messages: Retry (a modal with optional instructions; the card's
Request changes too), Cancel, Open PR; the go-live card's and Continue in golive.py; a
fleet's form and its summary's buttons in fleet.py."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from app.handlers.slack import fleet, fleet_buttons, golive
from app.handlers.slack.conversation import UNKNOWN_RUN, SlackContext, SlackRouter, run_of
from app.handlers.slack.parsing import Origin, interaction_origin, interaction_user
from app.log import describe_error
from app.models import Run
from app.run_requests import cancel_run, queue_follow_up
from app.slack import blocks
from app.store.kv import Namespace, mapping

log = logging.getLogger(__name__)
router = SlackRouter()  # this module's kind of stored request: interaction

# modal key -> the run and the clicked message (private_metadata holds 3000 characters at most)
_RETRY_MODALS: Namespace[dict[str, Any]] = Namespace(
    "slack_retry_modal", owner=__name__, decode=mapping
)
RETRY_VIEW = "honk_retry_modal"
RETRY_BLOCK, RETRY_INPUT = "instructions", "text"


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


def submitted_text(view: Mapping[str, Any]) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(RETRY_BLOCK) or {}
    return str((values.get(RETRY_INPUT) or {}).get("value") or "").strip()


# Buttons that act (on a run, a PR): stored in the inbox before Slack hears back, done there.
ACTING = frozenset({blocks.CANCEL_ACTION, *golive.ACTIONS, *fleet_buttons.ACTIONS})
# Forms whose submission acts: stored in the inbox like a click that acts.
ACTING_VIEWS = frozenset({RETRY_VIEW, fleet.FLEET_VIEW})


def acts(payload: Mapping[str, Any]) -> bool:
    """Whether an interaction asks for an action, which the inbox keeps until it is done: a
    button of ACTING, or a submitted form of ACTING_VIEWS (Retry's, a fleet's)."""
    kind = payload.get("type")
    if kind == "view_submission":
        return (payload.get("view") or {}).get("callback_id") in ACTING_VIEWS
    if kind == "block_actions":
        return any(action.get("action_id") in ACTING for action in payload.get("actions") or [])
    return False


async def answer_at_once(ctx: SlackContext, payload: Mapping[str, Any]) -> None:
    """What cannot wait for the inbox: Retry's form opens with the click's trigger_id, which
    Slack honours for 3 seconds. Opening it acts on nothing; its submission does, stored."""
    if payload.get("type") != "block_actions":
        return
    origin = interaction_origin(payload)
    for action in payload.get("actions") or []:
        if action.get("action_id") == blocks.RETRY_ACTION:
            await open_retry(ctx, payload, action, origin)
        # Open PR is a link button: Slack opens the URL; Honk only acknowledges.


@router.register("interaction")
async def on_stored_interaction(ctx: SlackContext, stored: Mapping[str, Any]) -> None:
    """A click's action, from the inbox (once, in whichever process claims it): Cancel, the
    go-live card's Merge, Approve, Close PR, Continue, a fleet summary's buttons, or a
    submitted Retry or fleet form."""
    payload = stored.get("payload") or {}
    if payload.get("type") == "view_submission":
        callback = (payload.get("view") or {}).get("callback_id")
        if callback == RETRY_VIEW:
            await ctx.guard(on_retry_submitted(ctx, payload), None)
        elif callback == fleet.FLEET_VIEW:
            await ctx.guard(fleet.on_submitted(ctx, payload), None)
        return
    origin = interaction_origin(payload)
    for action in payload.get("actions") or []:
        action_id = action.get("action_id")
        if action_id == blocks.CANCEL_ACTION:
            await ctx.guard(cancel(ctx, payload, action, origin), origin)
        elif action_id in golive.ACTIONS:
            await ctx.guard(golive.on_action(ctx, payload, action, origin), origin)
        elif action_id in fleet_buttons.ACTIONS:
            await ctx.guard(fleet_buttons.on_action(ctx, payload, action, origin), origin)


async def open_retry(
    ctx: SlackContext, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    run = await run_of(ctx, action)
    if run is None:
        ctx.spawn(ctx.tell(origin, UNKNOWN_RUN), None)
        return
    message = payload.get("message") or {}
    key = secrets.token_urlsafe(16)
    await _RETRY_MODALS.put(
        ctx.store,
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
        await ctx.slack.client.views_open(
            trigger_id=payload["trigger_id"], view=retry_view(run, key)
        )
    except SlackApiError as exc:
        await _RETRY_MODALS.delete(ctx.store, key)
        ctx.spawn(ctx.tell(origin, f"Honk could not open the form: {describe_error(exc)}"), None)


async def on_retry_submitted(ctx: SlackContext, payload: Mapping[str, Any]) -> None:
    """Queue the follow-up run with the modal's text, then mark the clicked message."""
    view = payload.get("view") or {}
    key = str(view.get("private_metadata") or "")
    record = await _RETRY_MODALS.get(ctx.store, key) if key else None
    user = interaction_user(payload)
    if not record or record.get("user") != user.key:
        log.warning("a retry modal was submitted without a matching record")
        return
    await _RETRY_MODALS.delete(ctx.store, key)
    origin = Origin(
        user,
        record["channel"],
        request_id=f"view:{view.get('id', '')}",
        thread_ts=record.get("thread_ts") or record.get("ts"),
    )
    run = await ctx.store.runs.get(int(record["run_id"]))
    if run is None:
        await ctx.tell(origin, UNKNOWN_RUN)
        return
    allowed = await ctx.authorize(origin, run.repo, run.installation_id)
    if allowed is None:
        return
    follow_up = await queue_follow_up(
        ctx.store,
        run,
        requested_by=allowed.login,
        instructions=submitted_text(view),
        wake_workers=ctx.wake_workers,
    )
    log.info("queued run %s, a retry of run %s, from Slack", follow_up.id, run.id)
    note = f":repeat: <@{user.id}> asked for a retry: run {follow_up.id} is queued."
    await ctx.mark(record["channel"], record.get("ts"), record, note)


async def cancel(
    ctx: SlackContext, payload: Mapping[str, Any], action: Mapping[str, Any], origin: Origin
) -> None:
    run = await run_of(ctx, action)
    if run is None:
        await ctx.tell(origin, UNKNOWN_RUN)
        return
    allowed = await ctx.authorize(origin, run.repo, run.installation_id)
    if allowed is None:
        return
    cancelled = await cancel_run(ctx.store, run, requested_by=allowed.login)
    if not cancelled:
        await ctx.tell(origin, f"Nothing to cancel: run {run.id} is {run.state.value}.")
        return
    ids = ", ".join(str(r.id) for r in cancelled)
    note = f":no_entry_sign: <@{origin.user.id}> cancelled run {ids}."
    await ctx.mark_clicked(payload, note)
