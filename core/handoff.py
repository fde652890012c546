"""Opening tickets when a person is needed, and the port through which a human desk is told."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import SayProError
from core.references import new_reference
from core.storage.models import Conversation, Ticket


class Priority(str, Enum):
    NORMAL = "normal"
    HIGH = "high"


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


def open_ticket(session: Session, conversation: Conversation, request: HandoffRequest) -> Ticket:
    """The conversation's open ticket, or a new one with a fresh reference number."""
    existing = session.scalars(
        select(Ticket).where(Ticket.conversation_id == conversation.id, Ticket.status != "resolved")
    ).first()
    if existing is not None:
        if request.priority is Priority.HIGH:
            existing.priority = Priority.HIGH.value
        return existing
    for _ in range(5):
        ticket = Ticket(
            reference=new_reference(),
            conversation_id=conversation.id,
            priority=request.priority.value,
            reason=request.reason,
            topic=request.topic,
        )
        try:
            with session.begin_nested():
                session.add(ticket)
                session.flush()
        except IntegrityError:  # the one-in-a-billion clash of two random references: draw again
            continue
        return ticket
    raise SayProError("could not draw an unused ticket reference")
