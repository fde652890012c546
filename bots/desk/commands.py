"""`/saypro` for agents: queue, ticket, stats, note, status, announce (and the announcement's buttons).

Slash commands arrive as form posts (https://api.slack.com/interactivity/slash-commands); the
answer is the HTTP response, which Slack shows only to the agent who typed it. Whatever a
command changes is recorded with who did it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from bots.channels.slack import BACKGROUND, SERVICES
from bots.desk import blocks
from bots.desk.directory import AgentDirectory
from bots.desk.respond import NOT_A_MEMBER, ephemeral, settle
from bots.settings import Settings
from core import announcements, desk_actions, desk_posts, incidents, texts
from core.desk_actions import Agent
from core.desk_posts import PostKind
from core.handoff import ACTIVE, PRIORITY_ORDER
from core.markup import to_slack_mrkdwn
from core.report_text import summary_text
from core.reporting import figures
from core.storage.models import Ticket
from core.ticket_view import summarise

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)
COMMAND = "/saypro"
QUEUE_LIMIT = 25
USAGE = (
    "`/saypro queue` open tickets by priority and age · `/saypro ticket SP-XXXXXX` a ticket and its thread · "
    "`/saypro stats` today's figures · `/saypro note SP-XXXXXX text` a note in its thread · "
    "`/saypro status TEXT` or `/saypro status clear` the incident note above the bot's answers · "
    "`/saypro announce TEXT` a message to everyone who wrote in the last 14 days"
)


def register(app: AsyncApp, settings: Settings, directory: AgentDirectory) -> None:
    async def on_command(ack: Any, command: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext) -> None:
        user = str(command.get("user_id") or "")
        if not await directory.is_member(client, user):
            log.warning(
                "desk command refused: not a member of the agents' channel",
                extra={"channel": "slack", "slack_user": user},
            )
            await run_in_threadpool(_refuse, context[SERVICES], user, "command")
            await ack(text="Only members of the agents' channel can use /saypro.")
            return
        agent = await directory.agent(client, user)
        verb, _, rest = str(command.get("text") or "").strip().partition(" ")
        answer = await run_in_threadpool(_run, context[SERVICES], settings, agent, verb.lower(), rest.strip())
        await ack(**answer)
        context[BACKGROUND].add_task(settle, context[SERVICES], client, settings, [])

    async def on_announcement(
        ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id") or "")
        where = (body.get("channel") or {}).get("id") or settings.slack_agent_channel
        if not await directory.is_member(client, user):
            await run_in_threadpool(_refuse, context[SERVICES], user, str(action.get("action_id")))
            await ephemeral(client, channel=where, user=user, text=NOT_A_MEMBER)
            return
        agent = await directory.agent(client, user)
        send = action.get("action_id") == blocks.ANNOUNCE_SEND
        value = str(action.get("value") or "")
        if not (value.isdecimal() and len(value) <= 9):
            await ephemeral(client, channel=where, user=user, text="That announcement is not known.")
            return
        note = await run_in_threadpool(_decide, context[SERVICES], settings, agent, int(value), send)
        await ephemeral(client, channel=where, user=user, text=note)
        context[BACKGROUND].add_task(settle, context[SERVICES], client, settings, [])

    app.command(COMMAND)(on_command)
    app.action(blocks.ANNOUNCE_SEND)(on_announcement)
    app.action(blocks.ANNOUNCE_CANCEL)(on_announcement)


def _run(services: Services, settings: Settings, agent: Agent, verb: str, rest: str) -> dict[str, Any]:
    """The command's answer: {"text": ...} and perhaps {"blocks": ...}."""
    with services.database.transaction() as session:
        now = services.desk.now()
        if verb == "queue":
            return {"text": _queue(session, services, now)}
        if verb in ("ticket", "note"):
            ticket = desk_actions.find_ticket(session, rest)
            if ticket is None:
                return {"text": f"No ticket found in “{rest}”: give its reference, such as SP-7K4Q2M."}
            if verb == "ticket":
                return {"text": _ticket(session, services, ticket, now)}
            text = rest.split(maxsplit=1)[1] if len(rest.split(maxsplit=1)) > 1 else ""
            if not text.strip():
                return {"text": "Usage: `/saypro note SP-XXXXXX text`"}
            return {"text": desk_actions.note(session, ticket, agent, text).note}
        if verb == "stats":
            return {"text": _stats(session, services, now)}
        if verb == "status":
            return {"text": _status(session, agent, rest, now)}
        if verb == "announce" and rest:
            announcement = announcements.draft(
                session,
                rest,
                agent_id=agent.id,
                agent_name=agent.name,
                now=now,
                channels=services.channels,
                template_sid=settings.whatsapp_announcement_template,
            )
            desk_actions.record(session, agent, "announce", None, announcement=announcement.id, step="draft")
            view = blocks.announcement_check(
                announcement.id, announcement.audience, announcement.text, left_out=announcement.skipped
            )
            reach = _people(sum(announcement.audience.values()))
            return {"text": f"Check the announcement before it goes to {reach}.", "blocks": view}
        return {"text": USAGE}


def _queue(session: Any, services: Services, now: datetime) -> str:
    tickets = list(session.scalars(select(Ticket).where(Ticket.status.in_(ACTIVE))))
    tickets.sort(key=lambda t: (PRIORITY_ORDER.get(t.priority, 9), t.created_at))
    if not tickets:
        return "No open tickets. 🎉"
    lines = [
        blocks.queue_line(summarise(session, t, window_of=services.desk.window), now=now, link=_link(t))
        for t in tickets[:QUEUE_LIMIT]
    ]
    more = f"\n…and {len(tickets) - QUEUE_LIMIT} more." if len(tickets) > QUEUE_LIMIT else ""
    return (
        f"*{len(tickets)} open ticket{'s' if len(tickets) != 1 else ''}*, most urgent first:\n"
        + "\n".join(lines)
        + more
    )


def _ticket(session: Any, services: Services, ticket: Ticket, now: datetime) -> str:
    summary = summarise(session, ticket, window_of=services.desk.window)
    zone = services.desk.levels.hours.zone
    link = _link(ticket)
    lines = [
        blocks.queue_line(summary, now=now, link=None),
        blocks.status_line(summary, zone),
        f"Why: {blocks.escape(summary.reason)} · topic: {blocks.escape(summary.topic or 'not known')} · verified: {summary.verified}",
        f"Thread: {link}" if link else "The parent message has not been posted yet.",
    ]
    return "\n".join(lines)


def _stats(session: Any, services: Services, now: datetime) -> str:
    zone = services.desk.levels.hours.zone
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    report = figures(session, since=midnight, until=now)
    return to_slack_mrkdwn(summary_text(report, title=f"Today so far ({midnight:%a %d %b}, from 00:00)"))


def _status(session: Any, agent: Agent, rest: str, now: datetime) -> str:
    if not rest:
        current = incidents.current(session)
        return (
            f"Incident note: {blocks.escape(current.text)}"
            if current
            else "No incident note is set. Usage: `/saypro status TEXT`"
        )
    if rest.lower() == "clear":
        ended = incidents.clear(session, agent_id=agent.id, agent_name=agent.name, now=now)
        if ended is None:
            return "No incident note was set."
        desk_actions.record(session, agent, "status_clear", None, incident=ended.id)
        desk_posts.post(session, PostKind.CHANNEL, texts.DESK_INCIDENT_CLEARED.format(agent=agent.name))
        return "Incident note cleared: the bot answers as usual."
    incident = incidents.set_note(session, rest, agent_id=agent.id, agent_name=agent.name, now=now)
    desk_actions.record(session, agent, "status_set", None, incident=incident.id, text=incident.text)
    desk_posts.post(session, PostKind.CHANNEL, texts.DESK_INCIDENT_SET.format(agent=agent.name, text=incident.text))
    return "Incident note set: the bot puts it above every answer until `/saypro status clear`."


def _decide(services: Services, settings: Settings, agent: Agent, announcement_id: int, send: bool) -> str:
    with services.database.transaction() as session:
        now = services.desk.now()
        if not send:
            done = announcements.cancel(session, announcement_id, agent_id=agent.id, agent_name=agent.name, now=now)
            return "Announcement cancelled." if done else "That announcement was already sent or cancelled."
        sent = announcements.send(
            session,
            announcement_id,
            agent_id=agent.id,
            agent_name=agent.name,
            now=now,
            channels=services.channels,
            template_sid=settings.whatsapp_announcement_template,
        )
        if sent is None:
            return "That announcement was already sent or cancelled."
        desk_actions.record(
            session, agent, "announce", None, announcement=sent.id, queued=sent.queued, skipped=sent.skipped
        )
        template = f", {sent.as_template} as the WhatsApp template" if sent.as_template else ""
        skipped = f" ({sent.skipped} outside WhatsApp's window with no template were left out)" if sent.skipped else ""
        line = texts.DESK_ANNOUNCED.format(
            agent=agent.name, people=_people(sent.queued), template=template, skipped=skipped, text=sent.text
        )
        desk_posts.post(session, PostKind.CHANNEL, line)
        return f"Announcement queued for {_people(sent.queued)}{template}{skipped}."


def _refuse(services: Services, user: str, action: str) -> None:
    with services.database.transaction() as session:
        desk_actions.refused(session, agent_id=user, action=action)


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def _link(ticket: Ticket) -> str | None:
    return blocks.thread_link(ticket.desk_channel, ticket.desk_ts) if ticket.desk_channel and ticket.desk_ts else None
