"""What the agents see of a ticket in its parent message: who, on which channel, what the bot
understood (topic, records, whether the user proved they own them), and the last messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.desk_summary import Window, mask_numbers, user_name
from core.records import PlatformRecord, find, kind_of, owner_of
from core.storage.models import (
    ChannelIdentity,
    Conversation,
    IdentityLink,
    Message,
    Ticket,
    VerificationEvent,
)
from core.storage.records import Contribution, Disbursement
from core.verification import Verifier

LAST_MESSAGES = 6
MESSAGE_PREVIEW = 300


@dataclass(frozen=True)
class TicketSummary:
    """A ticket as the parent message shows it."""

    reference: str
    priority: str
    status: str
    reason: str
    topic: str | None
    channel: str
    user: str
    assignee: str | None
    created_at: datetime
    waiting_since: datetime | None
    breached: bool
    verified: str
    records: tuple[str, ...]
    last_messages: tuple[tuple[str, str], ...]  # (author, text), oldest first
    window: Window | None
    reopened: int
    closed_by: str | None
    rating: int | None


def summarise(
    session: Session, ticket: Ticket, *, window_of: Callable[[ChannelIdentity], Window | None]
) -> TicketSummary:
    """The ticket as its parent shows it; `window_of` gives an identity's reply window (HumanDesk.window)."""
    conversation = session.get(Conversation, ticket.conversation_id)
    assert conversation is not None
    identity = conversation.identity
    records, verified = _records(session, conversation, ticket)
    return TicketSummary(
        reference=ticket.reference,
        priority=ticket.priority,
        status=ticket.status,
        reason=ticket.reason,
        topic=ticket.topic or conversation.last_topic,
        channel=conversation.channel,
        user=user_name(identity),
        assignee=ticket.assignee_name,
        created_at=ticket.created_at,
        waiting_since=ticket.waiting_since,
        breached=ticket.sla_breached_at is not None,
        verified=verified,
        records=records,
        last_messages=last_messages(session, conversation),
        window=window_of(identity),
        reopened=ticket.reopened_count,
        closed_by=ticket.closed_by,
        rating=ticket.csat_score,
    )


def last_messages(
    session: Session, conversation: Conversation, limit: int = LAST_MESSAGES
) -> tuple[tuple[str, str], ...]:
    query = (
        select(Message.author, Message.text, Message.attachments)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id.desc())
        .limit(limit)
    )
    rows = list(session.execute(query))[::-1]
    return tuple((author, preview(text, attachments)) for author, text, attachments in rows)


def preview(text: str, attachments: list[dict[str, object]] | None = None) -> str:
    shown = mask_numbers(text.strip())
    if len(shown) > MESSAGE_PREVIEW:
        shown = shown[: MESSAGE_PREVIEW - 1] + "…"
    if attachments:
        shown = f"{shown} [{len(attachments)} attachment{'s' if len(attachments) > 1 else ''}]".strip()
    return shown or "(no text)"


def _records(session: Session, conversation: Conversation, ticket: Ticket) -> tuple[tuple[str, ...], str]:
    """The platform records the conversation touched, and whether the user proved they own them."""
    references: list[str] = []
    looked_up = (
        select(VerificationEvent.reference)
        .where(
            VerificationEvent.identity_id == conversation.identity_id,
            VerificationEvent.created_at >= conversation.created_at,
            VerificationEvent.reference.is_not(None),
        )
        .order_by(VerificationEvent.id)
    )
    refunds = select(Contribution.reference).where(Contribution.refund_ticket == ticket.reference)
    for reference in [conversation.status_reference, *session.scalars(looked_up), *session.scalars(refunds)]:
        if reference and reference not in references:
            references.append(reference)
    verifier = Verifier(())
    shown: list[str] = []
    owned: list[bool] = []
    for reference in references[:5]:
        record = find(session, reference)
        if record is None:
            shown.append(f"{reference} (not found)")
            continue
        owner = owner_of(session, record)
        mine = owner is not None and verifier.owns(session, conversation.identity, owner)
        owned.append(mine)
        shown.append(_record_line(record, mine))
    if owned:
        verified = "yes" if all(owned) else "partly" if any(owned) else "no"
    else:
        links = session.scalars(select(IdentityLink.id).where(IdentityLink.identity_id == conversation.identity_id))
        verified = "yes (phone or e-mail proven)" if links.first() is not None else "no"
    return tuple(shown), verified


def _record_line(record: PlatformRecord, owned: bool) -> str:
    line = f"{kind_of(record).value} {record.reference}: {record.status}"
    if isinstance(record, Disbursement) and record.destination_last4:
        line += f", to the account ending {record.destination_last4}"
    return line + ("" if owned else " (ownership not proven)")
