"""A seeded support history whose figures are known exactly, for `report` and /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.storage.database import Database
from core.storage.models import ChannelIdentity, Contact, Conversation, Message, Ticket

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def seed(database: Database, *, until: datetime) -> None:
    """Seven days ending at `until`: four conversations with users, one system one, and one from before."""
    since = until - 7 * DAY
    with database.transaction() as session:
        c1 = _conversation(session, "telegram", "t1", since + DAY)
        _inbound(session, c1, "when is my payout", since + DAY, decision="answer", topic="disbursement-timeline")
        _outbound(session, c1, "Payouts are sent after the campaign ends.", since + DAY)
        c2 = _conversation(session, "telegram", "t2", since + 2 * DAY)
        _inbound(session, c2, "how much is the fee", since + 2 * DAY, decision="answer", topic="disbursement-fees")
        _inbound(session, c2, "is my cat a campaign", since + 2 * DAY, decision="unknown")
        _ticket(session, c2, "SP-AAAAA2", since + 2 * DAY, first=90, resolved=3600, reopened=0, rating=5)
        c3 = _conversation(session, "whatsapp", "whatsapp:+27820000003", since + 3 * DAY)
        _inbound(session, c3, "Is my  cat a campaign?", since + 3 * DAY, decision="unknown")
        _ticket(
            session, c3, "SP-AAAAA3", since + 3 * DAY, first=300, resolved=86400, reopened=1, rating=2, breached=120
        )
        c4 = _conversation(session, "sms", "+27820000004", since + 4 * DAY)
        _inbound(session, c4, "payout", since + 4 * DAY, decision="answer", topic="disbursement-timeline")
        _ticket(session, c4, "SP-AAAAA4", since + 4 * DAY, first=45)
        c5 = _conversation(session, "whatsapp", "whatsapp:+27820000005", since + 5 * DAY)  # an announcement only
        _outbound(session, c5, "The site is back up.", since + 5 * DAY)
        c0 = _conversation(session, "telegram", "t0", since - 9 * DAY)  # before the period
        _inbound(session, c0, "refund", since - 9 * DAY, decision="answer", topic="refund-request")
        _ticket(
            session, c0, "SP-AAAAA0", since - 9 * DAY, first=60, resolved=9 * 86400 + 12 * 3600, reopened=0, rating=4
        )


# What `report` must say about that history.
EXPECTED: dict[str, Any] = {
    "volume": {
        "sms": {"conversations": 1, "tickets": 1, "messages_in": 1, "messages_out": 0},
        "telegram": {"conversations": 2, "tickets": 1, "messages_in": 3, "messages_out": 1},
        "whatsapp": {"conversations": 1, "tickets": 1, "messages_in": 1, "messages_out": 1},
    },
    "conversations": 4,
    "bot_containment": 0.25,
    "tickets": {"resolved": 2, "open": 1},
    "first_response_seconds": {"n": 3, "median": 90.0, "p90": 300.0},
    "resolution_seconds": {"n": 3, "median": 86400.0, "p90": 820800.0},
    "tickets_resolved": 3,
    "first_contact_resolution": 0.6667,
    "sla_breaches": 1,
    "csat": {"responses": 3, "satisfied": 0.6667, "mean": 3.67},
    "top_faq_topics": [{"topic": "disbursement-timeline", "count": 2}, {"topic": "disbursement-fees", "count": 1}],
    "top_unanswered": [{"question": "is my cat a campaign", "count": 2}],
}


def _conversation(session: Session, channel: str, user: str, at: datetime) -> Conversation:
    contact = Contact(display_name=None, created_at=at)
    session.add(contact)
    session.flush()
    identity = ChannelIdentity(contact_id=contact.id, channel=channel, user_id=user, created_at=at, last_seen_at=at)
    session.add(identity)
    session.flush()
    conversation = Conversation(
        contact_id=contact.id, identity_id=identity.id, channel=channel, created_at=at, updated_at=at
    )
    session.add(conversation)
    session.flush()
    return conversation


def _inbound(session: Session, conversation: Conversation, text: str, at: datetime, **details: str) -> None:
    session.add(
        Message(
            conversation_id=conversation.id,
            direction="in",
            author="user",
            channel=conversation.channel,
            provider_message_id=f"{conversation.id}-{text}",
            text=text,
            details=details,
            sent_at=at,
            created_at=at,
            processed_at=at,
        )
    )


def _outbound(session: Session, conversation: Conversation, text: str, at: datetime) -> None:
    session.add(
        Message(
            conversation_id=conversation.id,
            direction="out",
            author="bot",
            channel=conversation.channel,
            text=text,
            sent_at=at,
            created_at=at,
        )
    )


def _ticket(
    session: Session,
    conversation: Conversation,
    reference: str,
    at: datetime,
    *,
    first: int,
    resolved: int | None = None,
    reopened: int = 0,
    rating: int | None = None,
    breached: int | None = None,
) -> None:
    done = at + timedelta(seconds=resolved) if resolved is not None else None
    session.add(
        Ticket(
            reference=reference,
            conversation_id=conversation.id,
            status="resolved" if done else "open",
            reason="asked for a person",
            created_at=at,
            first_response_at=at + timedelta(seconds=first),
            resolved_at=done,
            reopened_count=reopened,
            csat_score=rating,
            csat_at=done + HOUR if done and rating else None,
            sla_breached_at=at + timedelta(seconds=breached) if breached else None,
        )
    )
