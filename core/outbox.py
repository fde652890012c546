"""The dispatcher: sends queued replies through their channel, retrying with backoff, then gives up.

Rows are claimed with a lease (`leased_until`), so two dispatchers, in one process or in many,
never send the same row: on PostgreSQL a batch of due rows is taken with
`SELECT ... FOR UPDATE SKIP LOCKED` and leased in the same transaction, on SQLite (one writer at
a time) each row is taken with a conditional UPDATE. The lease is renewed while a send is under
way, so a slow provider never loses it; a row whose dispatcher died is taken again once the
lease runs out. Within a conversation rows go strictly in order: a row waits while an earlier
one is still pending, so rows sent at once always belong to different conversations.

Delivery is at least once: a process that dies after the provider accepted a message and before
the row says `sent` leaves it to be sent again when the lease lapses (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from core import metrics
from core.channels import ChannelRegistry
from core.deliveries import mark_unreachable
from core.errors import ChannelError, PermanentChannelError, TransientChannelError
from core.messages import Option, OutboundMessage, Receipt
from core.outbox_rows import (
    LEASE,
    LEASE_ALL,
    LEASE_ALL_AND_REACH,
    LEASE_AND_REACH,
    REACH,
    SENT,
    behind_a_pending_row,
    lease_free,
    template_of,
)
from core.storage.database import Database
from core.storage.models import OutboxItem, utcnow

log = logging.getLogger(__name__)
_UNCHECKED = object()  # _send: the refusal was not worked out with the claim
# A leased row, detached, and why it may not be sent (None: it may).
Claim = tuple[OutboxItem, "str | None"]
# A recipient's identity as the refusal check reads it: when it became unreachable, when last seen.
Reach = tuple[datetime | None, datetime | None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to keep trying one row."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0
    # How long a claim lasts without renewal; renewed every third of it while a send is under
    # way, so it only runs out when the process holding it is gone (or cut off from the database).
    lease_seconds: float = 30.0
    # Rows one dispatcher claims and sends at once on PostgreSQL (each from another conversation).
    batch: int = 8

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
        self._reach_in_lease = not database.is_sqlite  # LEASE_AND_REACH

    async def dispatch_due(self, *, limit: int = 50) -> int:
        """Send what is due now; the number of rows attempted."""
        if self.database.is_sqlite:
            return await self.dispatch(await asyncio.to_thread(self._due, limit))
        items = await asyncio.to_thread(self._claim_due, min(limit, self.policy.batch))
        async with self._renewing({item.id for item in items}) as held:
            await asyncio.gather(*(self._send_held(item, held) for item in items))
        return len(items)

    async def dispatch(self, item_ids: Sequence[int]) -> int:
        """Try to send these rows, each one it can claim, in order (a row behind a pending one waits).
        Rows that `lease` took in the transaction that wrote them go through `dispatch_answers`."""
        attempted = 0
        for item_id in item_ids:
            claimed = await asyncio.to_thread(self._claim_checked, item_id)
            if claimed is None:
                continue
            item, refusal = claimed
            attempted += 1
            async with self._renewing({item.id}) as held:
                await self._send_held(item, held, refusal=refusal)
        return attempted

    def _due(self, limit: int) -> list[int]:
        with self.database.sessions() as session:
            return list(session.scalars(self._due_query(self.clock()).limit(limit)))

    def _due_query(self, now: datetime) -> Select[tuple[int]]:
        return (
            select(OutboxItem.id)
            .where(
                OutboxItem.status == "pending",
                OutboxItem.channel.in_(self.channels.names()),
                OutboxItem.next_attempt_at <= now,
                lease_free(now),
                ~behind_a_pending_row(),
            )
            .order_by(OutboxItem.id)
        )

    def _claim_due(self, limit: int) -> list[OutboxItem]:
        """PostgreSQL: lock up to `limit` due rows no other transaction holds, lease them, return them."""
        now = self.clock()
        with self.database.transaction() as session:
            query = self._due_query(now).limit(limit).with_for_update(of=OutboxItem, skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                return []
            lease = now + timedelta(seconds=self.policy.lease_seconds)
            session.execute(
                update(OutboxItem).where(OutboxItem.id.in_(ids)).values(leased_until=lease),
                execution_options={"synchronize_session": False},
            )
            items = list(session.scalars(select(OutboxItem).where(OutboxItem.id.in_(ids)).order_by(OutboxItem.id)))
            for item in items:
                session.expunge(item)
            return items

    def lease(self, session: Session, item_ids: Sequence[int]) -> list[Claim]:
        """Lease rows for sending in `session`, the transaction that wrote them, and say why each
        may not be sent (`_refusal`); hand them to `dispatch_answers` once it has committed.

        As `_claim_checked` does, it leases a row only when it is the first pending one of its
        conversation: from the first row it cannot lease on (the second part of a reply, or a
        row behind an earlier reply not sent yet), the rest are left for `dispatch` to claim.
        """
        claims: list[Claim] = []
        for item_id in item_ids:
            claim = self._lease(session, item_id)
            if claim is None:
                break
            claims.append(claim)
        return claims

    def _claim_checked(self, item_id: int) -> Claim | None:
        """Lease this row if it is pending and first in its conversation (`_lease`), and in the same
        transaction say why it may not be sent (`_refusal`); the claim (the row, detached, and that
        reason), or None."""
        with self.database.transaction() as session:
            return self._lease(session, item_id)

    def lease_all(self, session: Session, answers: Sequence[Sequence[int]]) -> list[list[Claim]]:
        """`lease` for several answers' rows in one statement, each answer's claims in turn.

        Only each answer's first row can be leased: its second waits behind the first, pending
        until sent, as `lease` finds. The statement sees every row the batch wrote, so of two
        answers to one conversation only the earlier one's first row is leased, as one `lease`
        after the other would.
        """
        firsts = [item_ids[0] for item_ids in answers if item_ids]
        claims: dict[int, Claim] = {}
        if firsts:
            statement = LEASE_ALL_AND_REACH if self._reach_in_lease else LEASE_ALL
            for row in session.execute(statement, {"item_ids": firsts, **self._lease_times()}):
                claims[row.id] = self._claim(session, row)
        return [[claims[item_ids[0]]] if item_ids and item_ids[0] in claims else [] for item_ids in answers]

    def _lease_times(self) -> dict[str, datetime]:
        now = self.clock()
        return {"now": now, "lease": now + timedelta(seconds=self.policy.lease_seconds)}

    def _lease(self, session: Session, item_id: int) -> Claim | None:
        """The row, leased, and why it may not be sent (`_refusal`); None if it was not leased."""
        # The conditional UPDATE returns the row it leased (SQLite 3.35+, PostgreSQL), on PostgreSQL
        # with its recipient's reach (LEASE_AND_REACH).
        statement = LEASE_AND_REACH if self._reach_in_lease else LEASE
        row = session.execute(statement, {"item_id": item_id, **self._lease_times()}).first()
        return None if row is None else self._claim(session, row)

    def _claim(self, session: Session, row: Row[Any]) -> Claim:
        """A leased row (LEASE's or LEASE_AND_REACH's) as a claim."""
        values = dict(row._mapping)
        reach: Reach | None = None
        if self._reach_in_lease:
            recipient = values.pop("recipient_id")
            reached = (values.pop("recipient_unreachable_at"), values.pop("recipient_last_seen_at"))
            reach = reached if recipient is not None else None
        # A detached copy to read from, not a row the session tracks.
        item = OutboxItem(**values)
        if not self._reach_in_lease:
            reach = self._reach(session, item)
        return item, self._refusal_for(reach, self._window(item))

    @asynccontextmanager
    async def _renewing(self, held: set[int]) -> AsyncIterator[set[int]]:
        """Keep the leases on `held` alive until the block ends; a row leaves the set once settled."""
        task = asyncio.get_running_loop().create_task(self._renew(held)) if held else None
        try:
            yield held
        finally:
            if task is not None:
                task.cancel()
                # Not `suppress(CancelledError)` around `await task`: a cancellation of this task
                # arriving meanwhile would be swallowed with the renewer's, and a stopping poller
                # or dispatcher would carry on. gather returns the renewer's and raises ours.
                await asyncio.gather(task, return_exceptions=True)

    async def _renew(self, held: set[int]) -> None:
        interval = self.policy.lease_seconds / 3
        while held:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self._extend, sorted(held))
            except (OperationalError, InterfaceError) as exc:
                log.warning("could not renew outbox leases: %s", type(exc.orig).__name__)

    def _extend(self, item_ids: list[int]) -> None:
        lease = self.clock() + timedelta(seconds=self.policy.lease_seconds)
        with self.database.transaction() as session:
            session.execute(
                update(OutboxItem)
                .where(OutboxItem.id.in_(item_ids), OutboxItem.status == "pending")
                .values(leased_until=lease),
                execution_options={"synchronize_session": False},
            )

    async def _send_held(self, item: OutboxItem, held: set[int], *, refusal: str | None | object = _UNCHECKED) -> None:
        try:
            await self._send(item, refusal=refusal)
        finally:
            held.discard(item.id)

    async def dispatch_answers(self, answers: Sequence[tuple[Sequence[int], Sequence[Claim]]]) -> int:
        """`dispatch` for several answers at once: each answer's rows, and the claims `lease` took.

        The leased rows (each the first pending row of its conversation) are sent concurrently
        under one lease renewer, and those sent are written in one transaction. An answer's later
        rows (the second part of a reply) then go as `dispatch` sends them, in order.
        """
        leased = [claim for _, claims in answers for claim in claims]
        async with self._renewing({item.id for item, _ in leased}):
            receipts = await asyncio.gather(*(self._deliver(item, refusal=refusal) for item, refusal in leased))
            sent = [(item, receipt) for (item, _), receipt in zip(leased, receipts, strict=True) if receipt is not None]
            if sent:
                await self._settle(functools.partial(self._sent, sent), [item for item, _ in sent])
        attempted = len(leased)
        for item_ids, claims in answers:
            taken = {item.id for item, _ in claims}
            rest = [item_id for item_id in item_ids if item_id not in taken]
            if rest:
                attempted += await self.dispatch(rest)
        return attempted

    async def _send(self, item: OutboxItem, *, refusal: str | None | object = _UNCHECKED) -> None:
        """Send a leased row and write the outcome; `refusal` when `_refusal` was already asked in
        the claim's transaction."""
        receipt = await self._deliver(item, refusal=refusal)
        if receipt is not None:
            await self._settle(functools.partial(self._sent, [(item, receipt)]), [item])

    async def _deliver(self, item: OutboxItem, *, refusal: str | None | object = _UNCHECKED) -> Receipt | None:
        """Send a leased row; the provider's receipt, for the caller to write as sent. A row that
        is not sent (no live channel, withheld, failed) is written here, and None returned."""
        channel = self.channels.get(item.channel)
        if channel is None:
            await asyncio.to_thread(self._failed, item, PermanentChannelError(f"channel {item.channel} is not live"))
            return None
        if refusal is _UNCHECKED:
            refusal = await asyncio.to_thread(self._refusal, item, self._window(item))
        if refusal is not None:
            assert isinstance(refusal, str)
            await asyncio.to_thread(self._withhold, item, refusal)
            return None
        message = OutboundMessage(
            channel=item.channel,
            user_id=item.user_id,
            text=item.text,
            options=tuple(Option(**option) for option in item.options),
            conversation_id=item.conversation_id,
            template=template_of(item.template),
        )
        try:
            return await channel.send(message)
        except ChannelError as error:
            await self._settle(functools.partial(self._failed, item, error), [item])
            return None

    async def _settle(self, record: Callable[[], None], items: Sequence[OutboxItem]) -> None:
        """Write sends' outcomes (`record`), retrying through a short database outage while the lease lasts.

        The messages have already gone (or failed) at the provider: giving up here would leave the
        rows to be sent a second time when their lease runs out.
        """
        deadline = time.monotonic() + self.policy.lease_seconds * 0.8
        pause = 0.2
        while True:
            try:
                await asyncio.to_thread(record)
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + pause > deadline:
                    raise
                ids = [item.id for item in items]
                log.warning(
                    "database unavailable, outcome of outbox rows %s not written yet: %s",
                    ", ".join(map(str, ids)),
                    type(exc.orig).__name__,
                    extra={"outbox_ids": ids},
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _window(self, item: OutboxItem) -> int | None:
        """The channel's reply window in hours; none for an approved template, which may be sent
        outside it (free-form text may not), nor for a channel that is not live."""
        channel = self.channels.get(item.channel)
        return None if item.template or channel is None else channel.capabilities.reply_window_hours

    def _refusal(self, item: OutboxItem, window_hours: int | None) -> str | None:
        """Why this row may not be sent now, or None: the user is unreachable, or the window closed."""
        with self.database.sessions() as session:
            return self._refusal_for(self._reach(session, item), window_hours)

    @staticmethod
    def _reach(session: Session, item: OutboxItem) -> Reach | None:
        reach = session.execute(REACH, {"channel": item.channel, "user_id": item.user_id}).first()
        return (reach[0], reach[1]) if reach is not None else None

    def _refusal_for(self, reach: Reach | None, window_hours: int | None) -> str | None:
        """`_refusal` for a recipient's reach already read (None: no identity, nothing to refuse for)."""
        if reach is None:
            return None
        unreachable_at, last = reach
        if unreachable_at is not None:
            return "the user cannot be reached on this channel"
        if window_hours is not None and (last is None or self.clock() - last > timedelta(hours=window_hours)):
            return f"outside the {window_hours}-hour reply window"
        return None

    def _withhold(self, item: OutboxItem, reason: str) -> None:
        with self.database.transaction() as session:
            row = session.get(OutboxItem, item.id)
            assert row is not None
            row.status, row.leased_until, row.last_error = "withheld", None, reason
        metrics.SEND_FAILURES.labels(item.channel, "withheld").inc()
        log.warning("reply withheld: %s", reason, extra={"channel": item.channel, "outbox_id": item.id})

    def _sent(self, sent: Sequence[tuple[OutboxItem, Receipt]]) -> None:
        # One UPDATE (SENT) per row, in one transaction and one executemany, without loading them.
        now = self.clock()
        with self.database.transaction() as session:
            session.execute(
                SENT, [{"item_id": item.id, "now": now, "receipt_id": r.provider_message_id} for item, r in sent]
            )
        for item, _ in sent:
            metrics.REPLIES_SENT.labels(item.channel).inc()
            log.info(
                "reply sent",
                extra={"channel": item.channel, "conversation_id": item.conversation_id, "outbox_id": item.id},
            )

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
                    mark_unreachable(session, item.channel, item.user_id, self.clock())
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
