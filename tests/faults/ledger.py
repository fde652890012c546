"""What the database and the fake provider say happened, and the checks every fault test makes.

"Answered exactly once" is checked as a one-to-one match between sent outbox rows and messages
the provider accepted: each row's receipt (Twilio's SID, Telegram's message id) names the
accepted message, so a message accepted twice leaves one accepted message no row points at.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from core.storage.database import Database
from core.storage.models import Message, OutboxItem
from tests.faults.load import Sent
from tests.faults.provider import FaultyProvider


@dataclass(frozen=True)
class Row:
    id: int
    conversation_id: int
    channel: str
    user_id: str
    status: str
    receipt: int | None


@dataclass(frozen=True)
class Inbound:
    id: int
    conversation_id: int
    provider_id: str
    processed_at: datetime | None


def receipt_number(receipt_id: str | None) -> int | None:
    """The fake's acceptance number inside a receipt: SM<32 hex> (Twilio) or <chat>:<message id> (Telegram)."""
    if not receipt_id:
        return None
    if receipt_id.startswith("SM"):
        return int(receipt_id.removeprefix("SM"), 16)
    return int(receipt_id.rsplit(":", 1)[1])


@dataclass
class Ledger:
    inbound: list[Inbound]
    rows: list[Row]

    @classmethod
    def read(cls, database: Database) -> Ledger:
        with database.sessions() as session:
            inbound = [
                Inbound(m.id, m.conversation_id, m.provider_message_id or "", m.processed_at)
                for m in session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id))
            ]
            rows = [
                Row(r.id, r.conversation_id, r.channel, r.user_id, r.status, receipt_number(r.receipt_id))
                for r in session.scalars(select(OutboxItem).order_by(OutboxItem.id))
            ]
        return cls(inbound, rows)

    def settled(self) -> bool:
        """Every inbound message answered and every reply sent (or given up on)."""
        return all(m.processed_at is not None for m in self.inbound) and all(r.status != "pending" for r in self.rows)


def wait_until_settled(database: Database, expected_inbound: int, *, timeout: float) -> Ledger:
    """Poll until `expected_inbound` messages are stored, answered, and their replies sent."""
    deadline = time.monotonic() + timeout
    while True:
        ledger = Ledger.read(database)
        if len(ledger.inbound) >= expected_inbound and ledger.settled():
            return ledger
        if time.monotonic() > deadline:
            unanswered = sum(m.processed_at is None for m in ledger.inbound)
            statuses = Counter(r.status for r in ledger.rows)
            raise AssertionError(
                f"not settled within {timeout} s: {len(ledger.inbound)}/{expected_inbound} stored, "
                f"{unanswered} unanswered, outbox {dict(statuses)}"
            )
        time.sleep(0.5)


def check_stored_once(ledger: Ledger, messages: list[Sent]) -> None:
    """Every distinct message stored exactly once, nothing else stored, in each user's order."""
    stored = Counter(m.provider_id for m in ledger.inbound)
    wanted = {sent.provider_id for sent in messages}
    assert set(stored) == wanted, f"missing {len(wanted - set(stored))}, unexpected {len(set(stored) - wanted)}"
    assert max(stored.values()) == 1
    order = {m.provider_id: m.id for m in ledger.inbound}
    by_user: dict[tuple[str, str], list[Sent]] = {}
    for sent in messages:
        by_user.setdefault((sent.channel, sent.user), []).append(sent)
    for run in by_user.values():
        ids = [order[sent.provider_id] for sent in sorted(run, key=lambda s: s.position)]
        assert ids == sorted(ids), "a user's messages were stored out of the order they were written"


def check_answered_in_order(ledger: Ledger) -> None:
    """Each conversation's messages answered in the order they were stored."""
    by_conversation: dict[int, list[Inbound]] = {}
    for message in ledger.inbound:
        assert message.processed_at is not None, f"message {message.id} never answered"
        by_conversation.setdefault(message.conversation_id, []).append(message)
    for run in by_conversation.values():
        times = [m.processed_at for m in sorted(run, key=lambda m: m.id)]
        assert times == sorted(times), "a conversation's messages were answered out of order"  # type: ignore[type-var]


def check_delivered_once(ledger: Ledger, provider: FaultyProvider, *, allowed_duplicates: int = 0) -> list[int]:
    """Every reply row sent and accepted once, in order per conversation; the accepted messages no row owns.

    Returns the numbers of accepted messages that no row's receipt names: second copies of a
    message whose first acceptance was never recorded. At most `allowed_duplicates` of them.
    """
    statuses = Counter(r.status for r in ledger.rows)
    assert set(statuses) <= {"sent"}, f"outbox rows not sent: {dict(statuses)}"
    accepted = {d.number: d for d in provider.delivered}
    receipts = Counter(r.receipt for r in ledger.rows)
    assert None not in receipts, "a sent row has no receipt"
    assert max(receipts.values(), default=1) == 1, "two rows claim one accepted message"
    for row in ledger.rows:
        delivered = accepted.get(row.receipt)  # type: ignore[arg-type]
        assert delivered is not None, f"row {row.id} says sent, but the provider never accepted it"
        assert (delivered.channel, delivered.user) == (row.channel, row.user_id), f"row {row.id} went to someone else"
    by_conversation: dict[int, list[Row]] = {}
    for row in ledger.rows:
        by_conversation.setdefault(row.conversation_id, []).append(row)
    for run in by_conversation.values():
        numbers = [r.receipt for r in sorted(run, key=lambda r: r.id)]
        assert numbers == sorted(numbers), f"replies reached the provider out of order: {numbers}"  # type: ignore[type-var]
    orphans = sorted(set(accepted) - set(receipts))
    assert len(orphans) <= allowed_duplicates, f"{len(orphans)} messages accepted twice: {orphans[:10]}"
    return orphans
