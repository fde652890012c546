"""Tickets: opening one when a person is needed, the moves a ticket may make, and the port to the desk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InvalidTransition, SayProError
from core.references import new_reference
from core.storage.models import Conversation, Ticket, utcnow


class Priority(str, Enum):
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    def raised(self) -> Priority:
        """One step more urgent: what a missed service level does to a ticket."""
        return Priority.HIGH if self is Priority.NORMAL else Priority.URGENT


# Most urgent first, for queues.
PRIORITY_ORDER = {Priority.URGENT.value: 0, Priority.HIGH.value: 1, Priority.NORMAL.value: 2}


class TicketStatus(str, Enum):
    """Where a ticket is: waiting for an agent, held by one, closed by one, or handed back to the bot."""

    OPEN = "open"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    RETURNED = "returned"


# From each status, where a ticket may go. Staying is always allowed (an agent re-claims).
TICKET_MOVES: dict[TicketStatus, frozenset[TicketStatus]] = {
    TicketStatus.OPEN: frozenset({TicketStatus.ASSIGNED, TicketStatus.RESOLVED, TicketStatus.RETURNED}),
    TicketStatus.ASSIGNED: frozenset({TicketStatus.RESOLVED, TicketStatus.RETURNED}),
    # The user writes again within the reopen window, or asks for a person again.
    TicketStatus.RESOLVED: frozenset({TicketStatus.OPEN, TicketStatus.ASSIGNED}),
    TicketStatus.RETURNED: frozenset({TicketStatus.OPEN, TicketStatus.ASSIGNED}),
}
ACTIVE = (TicketStatus.OPEN.value, TicketStatus.ASSIGNED.value)


def move_ticket(ticket: Ticket, target: TicketStatus) -> None:
    """Set the ticket's status, or InvalidTransition when it may not go there."""
    source = TicketStatus(ticket.status)
    if source is not target and target not in TICKET_MOVES[source]:
        raise InvalidTransition(f"a ticket cannot go from {source.value} to {target.value}")
    ticket.status = target.value


@dataclass(frozen=True)
class HandoffRequest:
    """Why the conversation needs a person, and how urgently."""

    reason: str
    priority: Priority = Priority.NORMAL
    topic: str | None = None


class Desk(Protocol):
    """Where people take over conversations (the Slack desk); absent until one is configured."""

    def accepts_handoffs(self) -> bool:
        """Whether agents can take a conversation from the bot right now."""
        ...


def open_ticket(
    session: Session, conversation: Conversation, request: HandoffRequest, *, now: datetime | None = None
) -> Ticket:
    """The conversation's current ticket (handed back to the bot ones included), or a new one.

    A ticket handed back to the bot is opened again, so the conversation keeps one ticket and
    one thread; a resolved one is left alone (the user reopens it by writing, see core.desk).
    """
    existing = session.scalars(
        select(Ticket)
        .where(Ticket.conversation_id == conversation.id, Ticket.status != TicketStatus.RESOLVED.value)
        .order_by(Ticket.id.desc())
    ).first()
    if existing is not None:
        if existing.status == TicketStatus.RETURNED.value:
            move_ticket(existing, TicketStatus.OPEN)
            existing.assignee_id = existing.assignee_name = None
        if PRIORITY_ORDER[request.priority.value] < PRIORITY_ORDER[existing.priority]:
            existing.priority = request.priority.value
        return existing
    for _ in range(5):
        ticket = Ticket(
            reference=new_reference(),
            conversation_id=conversation.id,
            priority=request.priority.value,
            reason=request.reason,
            topic=request.topic,
            created_at=now or utcnow(),
        )
        try:
            with session.begin_nested():
                session.add(ticket)
                session.flush()
        except IntegrityError:  # the one-in-a-billion clash of two random references: draw again
            continue
        return ticket
    raise SayProError("could not draw an unused ticket reference")
