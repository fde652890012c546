"""The dispatcher: sends queued replies through their channel, retrying with backoff, then gives up.

A row is claimed by setting a lease (`leased_until`) with a conditional UPDATE, so two
dispatchers never send the same row, and a row whose dispatcher died is taken again once its
lease runs out. Within a conversation rows go strictly in order: a row waits while an earlier
one is still pending.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from core import metrics
from core.channels import ChannelRegistry
from core.errors import ChannelError, PermanentChannelError, TransientChannelError
from core.messages import Option, OutboundMessage, Receipt, Template
from core.storage.database import Database
from core.storage.models import ChannelIdentity, OutboxItem, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to keep trying one row."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0
    lease_seconds: float = 60.0

    def delay(self, attempts: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failure: the provider's hint, or backoff with jitter."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff = min(self.base_delay * 2 ** (attempts - 1), self.max_delay)
        return backoff * random.uniform(0.5, 1.0)


class Dispatcher:
    """Sends due outbox rows; `dispatch_due` is called in a loop by `run` and `worker`."""

    def __init__(
        self,
        database: Database,
        channels: ChannelRegistry,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.channels = channels
        self.policy = policy or RetryPolicy()
        self.clock = clock

    async def dispatch_due(self, *, limit: int = 50) -> int:
        """Send what is due now; the number of rows attempted."""
        return await self.dispatch(await asyncio.to_thread(self._due, limit))

    async def dispatch(self, item_ids: Sequence[int]) -> int:
        """Try to send these rows, each one it can claim, in order."""
        attempted = 0
        for item_id in item_ids:
            item = await asyncio.to_thread(self._claim, item_id)
            if item is None:
                continue
            attempted += 1
            await self._send(item)
        return attempted

    def _due(self, limit: int) -> list[int]:
        now = self.clock()
        earlier = aliased(OutboxItem)
        blocked = exists().where(
            earlier.conversation_id == OutboxItem.conversation_id,
            earlier.status == "pending",
            earlier.id < OutboxItem.id,
        )
        query = (
            select(OutboxItem.id)
            .where(
                OutboxItem.status == "pending",
                OutboxItem.channel.in_(self.channels.names()),
                OutboxItem.next_attempt_at <= now,
                or_(OutboxItem.leased_until.is_(None), OutboxItem.leased_until < now),
                ~blocked,
            )
            .order_by(OutboxItem.id)
            .limit(limit)
        )
        with self.database.sessions() as session:
            return list(session.scalars(query))

    def _claim(self, item_id: int) -> OutboxItem | None:
        now = self.clock()
        lease = now + timedelta(seconds=self.policy.lease_seconds)
        with self.database.transaction() as session:
            claimed = session.execute(
                update(OutboxItem)
                .where(
                    and_(
                        OutboxItem.id == item_id,
                        OutboxItem.status == "pending",
                        or_(OutboxItem.leased_until.is_(None), OutboxItem.leased_until < now),
                    )
                )
                .values(leased_until=lease)
            ).rowcount
            if claimed != 1:
                return None
            item = session.get(OutboxItem, item_id)
            assert item is not None
            session.expunge(item)
            return item

    async def _send(self, item: OutboxItem) -> None:
        channel = self.channels.get(item.channel)
        if channel is None:
            await asyncio.to_thread(self._failed, item, PermanentChannelError(f"channel {item.channel} is not live"))
            return
        # An approved template may be sent outside the reply window; free-form text may not.
        window = None if item.template else channel.capabilities.reply_window_hours
        refusal = await asyncio.to_thread(self._refusal, item, window)
        if refusal is not None:
            await asyncio.to_thread(self._withhold, item, refusal)
            return
        message = OutboundMessage(
            channel=item.channel,
            user_id=item.user_id,
            text=item.text,
            options=tuple(Option(**option) for option in item.options),
            conversation_id=item.conversation_id,
            template=_template(item.template),
        )
        try:
            receipt = await channel.send(message)
        except ChannelError as error:
            await asyncio.to_thread(self._failed, item, error)
            return
        await asyncio.to_thread(self._sent, item, receipt)

    def _refusal(self, item: OutboxItem, window_hours: int | None) -> str | None:
        """Why this row may not be sent now, or None: the user is unreachable, or the window closed."""
        with self.database.sessions() as session:
            identity = session.scalars(
                select(ChannelIdentity).where(
                    ChannelIdentity.channel == item.channel, ChannelIdentity.user_id == item.user_id
                )
            ).first()
        if identity is None:
            return None
        if identity.unreachable_at is not None:
            return "the user cannot be reached on this channel"
        if window_hours is not None:
            last = identity.last_seen_at
            if last is None or self.clock() - last > timedelta(hours=window_hours):
                return f"outside the {window_hours}-hour reply window"
        return None

    def _withhold(self, item: OutboxItem, reason: str) -> None:
        with self.database.transaction() as session:
            row = session.get(OutboxItem, item.id)
            assert row is not None
            row.status, row.leased_until, row.last_error = "withheld", None, reason
        metrics.SEND_FAILURES.labels(item.channel, "withheld").inc()
        log.warning("reply withheld: %s", reason, extra={"channel": item.channel, "outbox_id": item.id})

    def _sent(self, item: OutboxItem, receipt: Receipt) -> None:
        with self.database.transaction() as session:
            row = session.get(OutboxItem, item.id)
            assert row is not None
            row.status, row.sent_at, row.leased_until = "sent", self.clock(), None
            row.attempts += 1
            row.receipt_id = receipt.provider_message_id
        metrics.REPLIES_SENT.labels(item.channel).inc()
        log.info("reply sent", extra={"channel": item.channel, "conversation_id": item.conversation_id, "outbox_id": item.id})

    def _failed(self, item: OutboxItem, error: ChannelError) -> None:
        with self.database.transaction() as session:
            row = session.get(OutboxItem, item.id)
            assert row is not None
            row.attempts += 1
            row.leased_until = None
            row.last_error = f"{type(error).__name__}: {error}"[:500]
            if isinstance(error, PermanentChannelError) or row.attempts >= self.policy.max_attempts:
                row.status = "dead"
                if isinstance(error, PermanentChannelError) and error.unreachable:
                    _mark_unreachable(session, item.channel, item.user_id, self.clock())
            else:
                retry_after = error.retry_after if isinstance(error, TransientChannelError) else None
                row.next_attempt_at = self.clock() + timedelta(
                    seconds=self.policy.delay(row.attempts, retry_after=retry_after)
                )
            status, attempts = row.status, row.attempts
        metrics.SEND_FAILURES.labels(item.channel, "dead" if status == "dead" else "retry").inc()
        log.warning(
            "reply not sent",
            extra={"channel": item.channel, "outbox_id": item.id, "attempts": attempts, "status": status},
        )


def _template(record: dict[str, Any] | None) -> Template | None:
    if not record:
        return None
    return Template(record["content_id"], tuple((str(k), str(v)) for k, v in record.get("variables", [])))


def _mark_unreachable(session: Session, channel: str, user_id: str, when: datetime) -> None:
    session.execute(
        update(ChannelIdentity)
        .where(ChannelIdentity.channel == channel, ChannelIdentity.user_id == user_id)
        .values(unreachable_at=when)
    )


# Delivery reports can arrive out of order (Twilio may report "sent" after "delivered"): a report
# never moves a row back to an earlier stage. Final outcomes share the top rank.
_DELIVERY_STAGE = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5,
                   "undelivered": 4, "failed": 4, "canceled": 4}


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
            _mark_unreachable(session, row.channel, row.user_id, utcnow())
        return True
