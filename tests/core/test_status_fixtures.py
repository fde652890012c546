"""Shared by the status, verification and proactive tests: a bot on several channels with a clock, and records.

(No tests here: helpers imported by tests/core/test_status*.py, test_verification*.py, test_proactive*.py
and tests/bots/test_platform_api*.py.)
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from core.channels import ChannelRegistry
from core.dialogue import Dialogue
from core.handoff import Desk
from core.inbox import Inbox
from core.messages import Capabilities, InboundMessage
from core.outbox import Dispatcher
from core.records import Kind, upsert
from core.status import StatusService
from core.storage.database import Database
from core.storage.models import Conversation, Ticket
from core.verification import CodeRoute, Policy
from tests.fakes.channels import RecordingChannel
from tests.fakes.knowledge import FakeKnowledge

# Thursday 3 December 2026, 11:00 in Johannesburg.
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
THANDI = {"owner_name": "Thandi Mokoena", "owner_email": "thandi@example.org", "owner_phone": "+27825550142"}
LERATO = {"owner_name": "Lerato Khumalo", "owner_email": "lerato@example.org", "owner_phone": "+27821110000"}
AYANDA = {"owner_name": "Ayanda Nkosi", "owner_email": "ayanda@example.org", "owner_phone": None}
CAPABILITIES = {
    "sms": Capabilities(max_text_length=1600, carrier_opt_out=True),
    "whatsapp": Capabilities(max_text_length=4096, reply_window_hours=24),
    "email": Capabilities(),
}
DEFAULTS: dict[Kind, dict[str, Any]] = {
    Kind.CAMPAIGN: {
        "title": "Clean Water Gqeberha",
        "status": "ended",
        "currency": "ZAR",
        "amount_raised": Decimal("5000.00"),
        **THANDI,
    },
    Kind.DISBURSEMENT: {
        "campaign_reference": "SP-CAMP-1042",
        "amount": Decimal("5000.00"),
        "fees": Decimal("250.00"),
        "net_amount": Decimal("4750.00"),
        "currency": "ZAR",
        "method": "bank_transfer",
        "destination_last4": "4821",
        "status": "scheduled",
        "expected_at": NOW + timedelta(days=2),
        "paid_at": None,
        "failure_reason": None,
        "kyc_documents": [],
    },
    Kind.CONTRIBUTION: {
        "campaign_reference": "SP-CAMP-1042",
        "amount": Decimal("500.00"),
        "currency": "ZAR",
        "status": "succeeded",
        **LERATO,
    },
    Kind.REGISTRATION: {
        "contest": "SayPro Youth Innovation Challenge",
        "status": "confirmed",
        "fee_status": "paid",
        "submission_status": "received",
        "deadline": NOW + timedelta(days=10),
        **AYANDA,
    },
}
_ids = itertools.count(1)


def seed(
    database: Database, kind: Kind, reference: str, *, at: datetime = NOW - timedelta(days=1), **fields: Any
) -> str:
    """Store a record as the platform would push it; the defaults above, changed by `fields`."""
    with database.transaction() as session:
        return upsert(session, kind, reference, {**DEFAULTS[kind], **fields, "updated_at": at}).result


def seed_payout(database: Database, reference: str = "SP-PAY-1042", **fields: Any) -> None:
    """A campaign SP-CAMP-1042 of Thandi's and one payout of it."""
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042")
    seed(database, Kind.DISBURSEMENT, reference, **fields)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass(frozen=True)
class Said:
    """What one user was sent in reply to one message: all the text, and the last part's options."""

    text: str
    options: list[str]

    def __contains__(self, fragment: str) -> bool:
        return fragment in self.text


class StatusBot:
    """The real inbox and status step over recording channels; `say` reads like a conversation.

    The status step runs on `clock`; the dispatcher on real time (rows are due at once).
    """

    def __init__(
        self,
        database: Database,
        *,
        live: tuple[str, ...] = ("console", "sms"),
        clock: Clock | None = None,
        routes: list[CodeRoute] | None = None,
        policy: Policy | None = None,
        desk: Desk | None = None,
    ) -> None:
        self.database = database
        self.clock = clock or Clock()
        self.channels = {name: RecordingChannel(name, capabilities=CAPABILITIES.get(name)) for name in live}
        self.registry = ChannelRegistry(self.channels.values())
        self.status = StatusService(self.registry, routes=routes, policy=policy, clock=self.clock)
        self.inbox = Inbox(database, Dialogue(FakeKnowledge()), self.registry, desk=desk, status=self.status)
        self.dispatcher = Dispatcher(database, self.registry)

    def say(self, text: str, *, user: str = "mallory", channel: str = "console") -> Said:
        """Send `text`; the replies and any code messages are sent at once."""
        recorder = self.channels[channel]
        before = len(recorder.sent)
        message = InboundMessage(channel=channel, user_id=user, provider_message_id=f"s{next(_ids)}", text=text)
        _accepted, item_ids = self.inbox.handle(message)
        asyncio.run(self.dispatcher.dispatch(item_ids))
        # Codes go to the owner's own conversation; a row waits behind an earlier unsent one of
        # its conversation, so send until nothing is due.
        while asyncio.run(self.dispatcher.dispatch_due()):
            pass
        mine = [m for m in recorder.sent[before:] if m.user_id == user]
        return Said("\n".join(m.text for m in mine), [o.label for o in mine[-1].options] if mine else [])

    def codes(self, channel: str = "sms", to: str | None = None) -> list[str]:
        """The one-time codes sent on `channel` (to `to`), oldest first."""
        sent = [m for m in self.channels[channel].sent if to is None or m.user_id == to]
        return [match.group(1) for m in sent if (match := re.search(r"code is (\d{6})", m.text))]

    def conversation(self, user: str = "mallory") -> Conversation:
        with self.database.sessions() as session:
            query = select(Conversation).join(Conversation.identity).order_by(Conversation.id.desc())
            return next(c for c in session.scalars(query) if c.identity.user_id == user)

    def tickets(self) -> list[Ticket]:
        with self.database.sessions() as session:
            return list(session.scalars(select(Ticket).order_by(Ticket.id)))
