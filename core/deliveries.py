"""After a send: the provider's delivery reports, the user who cannot be reached, and the
dead-letter queue (rows core.outbox gave up on, listed and queued again by `saypro-bot outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.storage.database import Database
from core.storage.models import ChannelIdentity, OutboxItem, utcnow


def mark_unreachable(session: Session, channel: str, user_id: str, when: datetime) -> None:
    """The user cannot be reached on this channel (unsubscribed, blocked the bot, invalid number) since `when`."""
    session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.channel == channel, ChannelIdentity.user_id == user_id)
        .values(unreachable_at=when)
    )


# Delivery reports can arrive out of order (Twilio may report "sent" after "delivered"): a report
# never moves a row back to an earlier stage. Final outcomes share the top rank.
_DELIVERY_STAGE = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
}


def record_delivery(
    database: Database, *, channel: str, receipt_id: str, status: str, unreachable: bool = False
) -> bool:
    """Note the provider's later word on a sent message (delivered, failed...); False if unknown.

    With `unreachable`, the report says the user cannot be reached (unsubscribed, invalid number),
    and the identity is marked so in the same transaction.
    """
    with database.transaction() as session:
        row = session.scalars(
            select(OutboxItem).where(OutboxItem.channel == channel, OutboxItem.receipt_id == receipt_id)
        ).first()
        if row is None:
            return False
        current = _DELIVERY_STAGE.get(row.delivery_status or "", -1)
        if _DELIVERY_STAGE.get(status, current) >= current:
            row.delivery_status = status[:32]
        if unreachable:
            mark_unreachable(session, row.channel, row.user_id, utcnow())
        return True


def dead_letters(database: Database, *, channel: str | None = None, limit: int = 100) -> list[OutboxItem]:
    """Rows the dispatcher gave up on, oldest first (detached, for reading)."""
    query = select(OutboxItem).where(OutboxItem.status == "dead").order_by(OutboxItem.id).limit(limit)
    if channel is not None:
        query = query.where(OutboxItem.channel == channel)
    with database.sessions() as session:
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def requeue_dead(
    database: Database, *, ids: Sequence[int] = (), channel: str | None = None, now: datetime | None = None
) -> list[int]:
    """Put dead rows back in the queue with a fresh count of attempts; the ids queued again.

    All dead rows, or only those with these `ids` or on this `channel`. A row that carried a
    one-time code is left dead: its text is already redacted, and the user asks for a new code.
    """
    query = select(OutboxItem).where(OutboxItem.status == "dead", OutboxItem.after_send_text.is_(None))
    if ids:
        query = query.where(OutboxItem.id.in_(list(ids)))
    if channel is not None:
        query = query.where(OutboxItem.channel == channel)
    when = now or utcnow()
    with database.transaction() as session:
        rows = list(session.scalars(query.order_by(OutboxItem.id).with_for_update()))
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.leased_until = "pending", 0, when, None
            row.last_error = f"queued again after: {row.last_error or 'no error recorded'}"[:500]
        return [row.id for row in rows]
