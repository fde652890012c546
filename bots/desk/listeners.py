"""The desk's Slack listeners: agents' thread replies, edits and deletions, and the ticket buttons.

Registered on the one Bolt app (bots.channels.slack.LISTENER_MODULES) only when
SLACK_AGENT_CHANNEL is set. Each listener checks that the person acting is a member of the
agents' channel, does its work in one transaction, and leaves the sending (the user's message,
the thread lines) to a background task after Slack's request is answered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from starlette.concurrency import run_in_threadpool

from adapters.slack import plain_text
from bots.channels.slack import BACKGROUND, SERVICES
from bots.desk import blocks, commands
from bots.desk.directory import AgentDirectory
from bots.desk.respond import NOT_A_MEMBER, ephemeral, settle
from bots.settings import Settings
from core import desk_actions, desk_posts, texts
from core.desk_actions import Agent, Outcome

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)


def register(app: AsyncApp, settings: Settings) -> None:
    """Add the desk's listeners when SLACK_AGENT_CHANNEL is set; without it there is no desk."""
    channel = settings.slack_agent_channel
    if channel is None:
        return
    directory = AgentDirectory(channel)

    async def in_agent_channel(event: dict[str, Any]) -> bool:
        return event.get("channel") == channel

    async def on_message(event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext) -> None:
        subtype = event.get("subtype")
        if subtype in ("message_changed", "message_deleted"):
            await _on_changed(event, channel, context, settings, client)
        elif subtype in (None, "file_share") and not event.get("bot_id"):
            await _on_reply(event, channel, directory, context, settings, client)

    async def on_button(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await ack()
        await _on_button(body, action, directory, context, settings, client)

    app.event("message", matchers=[in_agent_channel])(on_message)
    for action_id in (blocks.CLAIM, blocks.RESOLVE, blocks.BACK):
        app.action(action_id)(on_button)
    commands.register(app, settings, directory)


async def _on_reply(
    event: dict[str, Any],
    channel: str,
    directory: AgentDirectory,
    context: AsyncBoltContext,
    settings: Settings,
    client: AsyncWebClient,
) -> None:
    thread_ts, ts, user = event.get("thread_ts"), event.get("ts"), event.get("user")
    if not (isinstance(thread_ts, str) and isinstance(ts, str) and isinstance(user, str)) or thread_ts == ts:
        return  # talk in the channel itself, not in a ticket's thread
    text = plain_text(str(event.get("text") or ""))
    if text.lstrip().startswith("//"):
        return  # a note for colleagues: it stays in Slack
    services, background = context[SERVICES], context[BACKGROUND]
    item_ids: list[int] = []
    if not await directory.is_member(client, user):
        log.warning(
            "desk reply refused: not a member of the agents' channel", extra={"channel": "slack", "slack_user": user}
        )
        await run_in_threadpool(_refuse_reply, services, channel, thread_ts, ts, user)
    else:
        agent = await directory.agent(client, user, profile=event.get("user_profile"))
        outcome = await run_in_threadpool(
            _relay, services, channel, thread_ts, ts, agent, text, files=bool(event.get("files"))
        )
        log.info("desk reply: %s", outcome.note, extra={"channel": "slack", "slack_user": user})
        item_ids = outcome.item_ids
    background.add_task(settle, services, client, settings, item_ids)


def _relay(
    services: Services, channel: str, thread_ts: str, ts: str, agent: Agent, text: str, *, files: bool
) -> Outcome:
    with services.database.transaction() as session:
        ticket = desk_actions.ticket_for_thread(session, channel, thread_ts)
        if ticket is None:
            return Outcome(False, "not a ticket's thread")
        if files:
            desk_posts.thread(session, ticket, texts.DESK_FILES_NOT_SENT, dedupe_key=f"files:{channel}:{ts}")
        if not text.strip():
            return Outcome(False, "no text to pass on")
        return desk_actions.relay(session, services.desk, ticket, agent, text=text, slack_channel=channel, slack_ts=ts)


def _refuse_reply(services: Services, channel: str, thread_ts: str, ts: str, user: str) -> None:
    with services.database.transaction() as session:
        ticket = desk_actions.ticket_for_thread(session, channel, thread_ts)
        note = texts.DESK_NOT_MEMBER.format(name=user)
        desk_actions.refused(
            session,
            agent_id=user,
            action="reply",
            ticket=ticket,
            thread_note=note,
            dedupe_key=f"refused:{channel}:{ts}",
        )


async def _on_changed(
    event: dict[str, Any], channel: str, context: AsyncBoltContext, settings: Settings, client: AsyncWebClient
) -> None:
    """An agent edited or deleted a reply: the user keeps what they got, and the thread says so."""
    deleted = event.get("subtype") == "message_deleted"
    changed = event.get("previous_message") if deleted else event.get("message")
    if not isinstance(changed, dict) or changed.get("bot_id"):
        return
    if not deleted and not changed.get("edited"):
        return  # Slack also sends message_changed when it adds a link preview
    ts = event.get("deleted_ts") if deleted else changed.get("ts")
    if not isinstance(ts, str):
        return
    services, background = context[SERVICES], context[BACKGROUND]
    key = f"{'delete' if deleted else 'edit'}:{channel}:{ts}:{event.get('event_ts') or event.get('ts')}"

    def note() -> bool:
        with services.database.transaction() as session:
            return desk_actions.edited(session, slack_channel=channel, slack_ts=ts, deleted=deleted, event_key=key)

    if await run_in_threadpool(note):
        background.add_task(settle, services, client, settings, [])


async def _on_button(
    body: dict[str, Any],
    action: dict[str, Any],
    directory: AgentDirectory,
    context: AsyncBoltContext,
    settings: Settings,
    client: AsyncWebClient,
) -> None:
    services, background = context[SERVICES], context[BACKGROUND]
    user = (body.get("user") or {}).get("id")
    where = (body.get("channel") or {}).get("id") or settings.slack_agent_channel
    reference = str(action.get("value") or "")
    if not isinstance(user, str) or not await directory.is_member(client, user):
        log.warning(
            "desk button refused: not a member of the agents' channel", extra={"channel": "slack", "slack_user": user}
        )
        await run_in_threadpool(_refuse_button, services, str(user), str(action.get("action_id")), reference)
        if isinstance(user, str):
            await ephemeral(client, channel=where, user=user, text=NOT_A_MEMBER)
        return
    agent = await directory.agent(client, user, profile=(body.get("user") or {}).get("profile"))
    outcome = await run_in_threadpool(_press, services, str(action.get("action_id")), reference, agent)
    if not outcome.done and outcome.note:
        await ephemeral(client, channel=where, user=user, text=outcome.note)
    background.add_task(settle, services, client, settings, outcome.item_ids)


_ACTIONS = {
    blocks.CLAIM: desk_actions.claim,
    blocks.RESOLVE: desk_actions.resolve,
    blocks.BACK: desk_actions.back_to_bot,
}


def _press(services: Services, action_id: str, reference: str, agent: Agent) -> Outcome:
    with services.database.transaction() as session:
        ticket = desk_actions.find_ticket(session, reference)
        if ticket is None:
            return Outcome(False, f"No ticket {reference}.")
        return _ACTIONS[action_id](session, services.desk, ticket, agent)


def _refuse_button(services: Services, user: str, action_id: str, reference: str) -> None:
    with services.database.transaction() as session:
        ticket = desk_actions.find_ticket(session, reference)
        desk_actions.refused(session, agent_id=user, action=action_id, ticket=ticket)
