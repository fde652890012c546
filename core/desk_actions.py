"""What agents do from the desk: reply to the user, claim, resolve, hand back to the bot, note.

Each action runs in one transaction: the ticket's and conversation's new state, the user's
message in the outbox, the lines for the ticket's thread and the audit row. A reply is recorded
against the Slack message it came from before anything else, so Slack's retries of the same
event relay nothing a second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import csat, desk_posts, sla, texts
from core.conversations import State, move
from core.desk import HumanDesk
from core.desk_summary import channel_name, user_name
from core.handoff import ACTIVE, TicketStatus, move_ticket
from core.messages import Capabilities, Option, OutboundMessage, Template
from core.outbound_rows import write_outbound
from core.references import find_reference
from core.storage.desk import DeskAction, DeskRelay
from core.storage.models import Conversation, Message, OutboxItem, Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agent:
    """A person on the desk: their Slack user id and name."""

    id: str
    name: str

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else "SayPro"


@dataclass
class Outcome:
    """What an action did: `done` False when it did nothing; `note` for the agent; outbox rows to send."""

    done: bool
    note: str = ""
    item_ids: list[int] = field(default_factory=list)


def find_ticket(session: Session, text: str) -> Ticket | None:
    """The ticket whose reference (SP-XXXXXX) appears in `text`."""
    reference = find_reference(text)
    if reference is None:
        return None
    return session.scalars(select(Ticket).where(Ticket.reference == reference)).first()


def ticket_for_thread(session: Session, channel: str, thread_ts: str) -> Ticket | None:
    return session.scalars(select(Ticket).where(Ticket.desk_channel == channel, Ticket.desk_ts == thread_ts)).first()


def record(session: Session, agent: Agent, action: str, ticket: Ticket | None = None, **details: object) -> None:
    """The audit trail: who did what, to which ticket."""
    session.add(
        DeskAction(
            ticket_id=ticket.id if ticket else None,
            agent_id=agent.id,
            agent_name=agent.name,
            action=action,
            details=dict(details),
        )
    )


def refused(
    session: Session,
    *,
    agent_id: str,
    action: str,
    ticket: Ticket | None = None,
    thread_note: str | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Someone outside the agents' channel tried to act: recorded, and said in the thread when given."""
    session.add(
        DeskAction(
            ticket_id=ticket.id if ticket else None, agent_id=agent_id, action="refused", details={"tried": action}
        )
    )
    if ticket is not None and thread_note is not None:
        desk_posts.thread(session, ticket, thread_note, dedupe_key=dedupe_key)


def claim(session: Session, desk: HumanDesk, ticket: Ticket, agent: Agent) -> Outcome:
    """Assign the ticket to `agent` (taking it over from anyone else) and redraw its parent."""
    if ticket.status not in ACTIVE:
        return Outcome(False, f"{ticket.reference} is {ticket.status}: it reopens when the user writes again.")
    if ticket.assignee_id == agent.id and ticket.status == TicketStatus.ASSIGNED.value:
        return Outcome(False, f"{ticket.reference} is already yours.")
    _assign(session, ticket, agent, desk.now())
    record(session, agent, "claim", ticket)
    return Outcome(True, f"You have {ticket.reference}.")


def _assign(session: Session, ticket: Ticket, agent: Agent, now: datetime) -> None:
    previous = ticket.assignee_name if ticket.status == TicketStatus.ASSIGNED.value else None
    move_ticket(ticket, TicketStatus.ASSIGNED)
    ticket.assignee_id, ticket.assignee_name, ticket.claimed_at = agent.id, agent.name, now
    conversation = _conversation(session, ticket)
    if conversation.state == State.BOT.value:  # a ticket from before the desk was on: it queues first
        conversation.state = move(conversation.state, State.WAITING_FOR_AGENT).value
    conversation.state = move(conversation.state, State.WITH_AGENT).value
    line = (
        texts.DESK_TAKEN_OVER.format(agent=agent.name, previous=previous)
        if previous and previous != agent.name
        else texts.DESK_CLAIMED.format(agent=agent.name)
    )
    desk_posts.thread(session, ticket, line)
    desk_posts.refresh(session, ticket)


def resolve(session: Session, desk: HumanDesk, ticket: Ticket, agent: Agent) -> Outcome:
    """Close the ticket, tell the user and ask them for a rating."""
    if ticket.status not in ACTIVE:
        return Outcome(False, f"{ticket.reference} is already {ticket.status}.")
    now = desk.now()
    move_ticket(ticket, TicketStatus.RESOLVED)
    ticket.resolved_at, ticket.closed_by, ticket.waiting_since = now, agent.name, None
    csat.ask(ticket)
    sla.cancel(session, ticket)
    conversation = _conversation(session, ticket)
    conversation.state = move(conversation.state, State.RESOLVED).value
    conversation.resolved_at, conversation.pending_options = now, []
    text = texts.RESOLVED_RATE.format(reference=ticket.reference)
    item_ids = _tell(session, desk, conversation, text, options=csat.rating_options())
    desk_posts.thread(session, ticket, texts.DESK_RESOLVED.format(agent=agent.name))
    desk_posts.refresh(session, ticket)
    record(session, agent, "resolve", ticket)
    return Outcome(True, f"{ticket.reference} is resolved.", item_ids)


def back_to_bot(session: Session, desk: HumanDesk, ticket: Ticket, agent: Agent) -> Outcome:
    """Hand the conversation back to the bot."""
    if ticket.status not in ACTIVE:
        return Outcome(False, f"{ticket.reference} is already {ticket.status}.")
    move_ticket(ticket, TicketStatus.RETURNED)
    ticket.closed_by, ticket.waiting_since = agent.name, None
    sla.cancel(session, ticket)
    conversation = _conversation(session, ticket)
    conversation.state = move(conversation.state, State.BOT).value
    conversation.misses, conversation.pending_options = 0, []
    item_ids = _tell(session, desk, conversation, texts.BACK_TO_BOT)
    desk_posts.thread(session, ticket, texts.DESK_BACK_TO_BOT.format(agent=agent.name))
    desk_posts.refresh(session, ticket)
    record(session, agent, "back_to_bot", ticket)
    return Outcome(True, f"{ticket.reference} is back with the bot.", item_ids)


def note(session: Session, ticket: Ticket, agent: Agent, text: str) -> Outcome:
    """A note for colleagues in the ticket's thread; the user never sees it."""
    desk_posts.thread(session, ticket, texts.DESK_NOTE.format(agent=agent.name, text=text.strip()))
    record(session, agent, "note", ticket, text=text.strip()[:500])
    return Outcome(True, f"Note added to {ticket.reference}.")


def relay(
    session: Session, desk: HumanDesk, ticket: Ticket, agent: Agent, *, text: str, slack_channel: str, slack_ts: str
) -> Outcome:
    """Pass an agent's thread reply to the user, once per Slack message; the first reply claims the ticket."""
    if session.scalars(
        select(DeskRelay.id).where(DeskRelay.slack_channel == slack_channel, DeskRelay.slack_ts == slack_ts)
    ).first():
        return Outcome(False, "already relayed")
    entry = DeskRelay(ticket_id=ticket.id, slack_channel=slack_channel, slack_ts=slack_ts, agent_id=agent.id)
    try:
        with session.begin_nested():
            session.add(entry)
            session.flush()
    except IntegrityError:  # the same event, delivered twice at once
        return Outcome(False, "already relayed")
    if ticket.status not in ACTIVE:
        entry.outcome, entry.outcome_at = "not_delivered", desk.now()
        desk_posts.thread(
            session, ticket, texts.DESK_NOT_ACTIVE.format(reference=ticket.reference, status=ticket.status)
        )
        return Outcome(False, "ticket not active")
    return _relay_to_user(session, desk, ticket, agent, entry, text)


def _relay_to_user(
    session: Session, desk: HumanDesk, ticket: Ticket, agent: Agent, entry: DeskRelay, text: str
) -> Outcome:
    now = desk.now()
    conversation = _conversation(session, ticket)
    if ticket.status != TicketStatus.ASSIGNED.value:
        _assign(session, ticket, agent, now)  # the first human reply claims it
    body = texts.AGENT_REPLY.format(name=agent.first_name, text=text.strip())
    template = None
    window = desk.window(conversation.identity)
    if window is not None and not window.is_open(now):
        if desk.agent_reply_template is None:
            closed = (
                window.closes_at.astimezone(desk.levels.hours.zone).strftime("%a %d %b %H:%M")
                if window.closes_at
                else "long ago"
            )
            entry.outcome, entry.outcome_at = "not_delivered", now
            reason = texts.DESK_WINDOW_CLOSED.format(closed=closed)
            desk_posts.thread(
                session, ticket, texts.DESK_NOT_DELIVERED.format(name=user_name(conversation.identity), reason=reason)
            )
            record(session, agent, "reply", ticket, delivered=False)
            return Outcome(False, "outside the window")
        template = Template(desk.agent_reply_template, (("1", agent.first_name), ("2", text.strip())))
    item_ids = _tell(session, desk, conversation, body, template=template, author="agent")
    first = session.get(OutboxItem, item_ids[0])
    assert first is not None
    entry.message_id = first.message_id
    message = session.get(Message, first.message_id)
    assert message is not None
    message.details = {"agent_id": agent.id, "agent_name": agent.name, "ticket": ticket.reference}
    ticket.first_response_at = ticket.first_response_at or now
    ticket.waiting_since = None
    sla.cancel(session, ticket)
    record(session, agent, "reply", ticket, message_id=first.message_id)
    return Outcome(True, "relayed", item_ids)


def edited(session: Session, *, slack_channel: str, slack_ts: str, deleted: bool, event_key: str) -> bool:
    """An agent changed a reply that was relayed: say in the thread that the user still has the original."""
    entry = session.scalars(
        select(DeskRelay).where(DeskRelay.slack_channel == slack_channel, DeskRelay.slack_ts == slack_ts)
    ).first()
    if entry is None or entry.message_id is None:
        return False
    ticket = session.get(Ticket, entry.ticket_id)
    assert ticket is not None
    desk_posts.thread(session, ticket, texts.DESK_DELETED if deleted else texts.DESK_EDITED, dedupe_key=event_key)
    return True


def report_outcomes(session: Session, now: datetime) -> int:
    """Tell each thread what became of relayed replies the outbox has finished with; how many were told."""
    told = 0
    for entry in session.scalars(
        select(DeskRelay).where(DeskRelay.outcome.is_(None), DeskRelay.message_id.is_not(None))
    ):
        rows = list(session.scalars(select(OutboxItem).where(OutboxItem.message_id == entry.message_id)))
        if not rows or any(row.status == "pending" for row in rows):
            continue
        ticket = session.get(Ticket, entry.ticket_id)
        assert ticket is not None
        conversation = _conversation(session, ticket)
        name, channel = user_name(conversation.identity), channel_name(conversation.channel)
        failed = [row for row in rows if row.status != "sent"]
        if failed:
            entry.outcome = "not_delivered"
            reason = (failed[0].last_error or failed[0].status).split(": ", 1)[-1]
            line = texts.DESK_NOT_DELIVERED.format(name=name, reason=reason)
        else:
            entry.outcome = "sent"
            line = (texts.DESK_SENT_TEMPLATE if rows[0].template else texts.DESK_SENT).format(
                name=name, channel=channel
            )
        entry.outcome_at = now
        desk_posts.thread(session, ticket, line)
        told += 1
    return told


def _tell(
    session: Session,
    desk: HumanDesk,
    conversation: Conversation,
    text: str,
    *,
    options: tuple[Option, ...] = (),
    template: Template | None = None,
    author: str = "system",
) -> list[int]:
    """Write one message to the user's outbox, on the channel they wrote from."""
    live = desk.channels.get(conversation.channel)
    message = OutboundMessage(
        channel=conversation.channel,
        user_id=conversation.identity.user_id,
        text=text,
        options=options,
        conversation_id=conversation.id,
        template=template,
    )
    capabilities = live.capabilities if live is not None else Capabilities()
    return write_outbound(session, conversation, message, capabilities=capabilities, author=author)


def _conversation(session: Session, ticket: Ticket) -> Conversation:
    conversation = session.get(Conversation, ticket.conversation_id)
    assert conversation is not None
    return conversation
