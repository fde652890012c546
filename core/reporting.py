"""Support figures over a period: volume by channel, bot containment, tickets, delivery outcomes."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select

from core.storage.database import Database
from core.storage.models import Conversation, Message, OutboxItem, Ticket, utcnow


def support_report(database: Database, *, days: int, now: datetime | None = None) -> dict[str, object]:
    """The figures for the last `days` days, as plain data (the CLI prints it or dumps it as JSON)."""
    until = now or utcnow()
    since = until - timedelta(days=days)
    with database.sessions() as session:
        volume: dict[str, dict[str, int]] = defaultdict(lambda: {"conversations": 0, "messages_in": 0, "messages_out": 0})
        for channel, count in session.execute(
            select(Conversation.channel, func.count()).where(Conversation.created_at >= since).group_by(Conversation.channel)
        ):
            volume[channel]["conversations"] = count
        for channel, direction, count in session.execute(
            select(Message.channel, Message.direction, func.count())
            .where(Message.created_at >= since)
            .group_by(Message.channel, Message.direction)
        ):
            volume[channel]["messages_in" if direction == "in" else "messages_out"] = count
        conversations = sum(v["conversations"] for v in volume.values())
        escalated = session.scalar(
            select(func.count(func.distinct(Ticket.conversation_id))).where(Ticket.created_at >= since)
        ) or 0
        tickets = dict(
            session.execute(select(Ticket.status, func.count()).where(Ticket.created_at >= since).group_by(Ticket.status)).all()
        )
        delivery: dict[str, dict[str, int]] = defaultdict(dict)
        for channel, status, count in session.execute(
            select(OutboxItem.channel, OutboxItem.status, func.count())
            .where(OutboxItem.created_at >= since)
            .group_by(OutboxItem.channel, OutboxItem.status)
        ):
            delivery[channel][status] = count
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "volume": dict(sorted(volume.items())),
        "conversations": conversations,
        "bot_containment": None if conversations == 0 else round(1 - escalated / conversations, 4),
        "tickets": tickets,
        "delivery": dict(sorted(delivery.items())),
    }
