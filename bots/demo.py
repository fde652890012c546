"""The demo data set for `run --demo` and `chat --demo`, and the terminal's stand-in for the owner's inbox.

The records go in through the same validation and upsert as the platform's PUTs, dated from
today so that "expected" and "deadline" read sensibly; loading them twice on the same day
changes nothing. Their owners have e-mail addresses at example.org (reserved, never delivered)
and no phone numbers, so no real SMS or e-mail can ever be sent for them.

With no SMS or e-mail configured locally, a newcomer can still go through verification: for a
demo reference asked in the terminal (channel "console") the code is shown in the terminal,
in a panel marked DEMO that stands in for the owner's inbox. That never happens for any other
reference or any other channel, and the terminal is only open to whoever runs `saypro-bot chat`
on the bot's own machine and database.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bots.platform_api import BODIES, store
from core.records import Kind, Owner, Upserted
from core.storage.models import Conversation
from core.verification import Delivery, Proof, ShownCode

if TYPE_CHECKING:
    from bots.wiring import Services

DEMO_CODE = (
    "📬 **DEMO ONLY**: this panel stands in for the inbox of {where}, the e-mail on the demo record. "
    "Your SayPro verification code is **{code}**. A real record's code only ever goes to its owner's "
    "phone or e-mail."
)
DEMO_CODE_REDACTED = "📬 DEMO ONLY: a verification code for {where} was shown here (removed once shown)."

_THANDI = {"name": "Thandi Mokoena", "email": "thandi@example.org"}
_SIPHO = {"name": "Sipho Dlamini", "email": "sipho@example.org"}
_LERATO = {"name": "Lerato Khumalo", "email": "lerato@example.org"}
_AYANDA = {"name": "Ayanda Nkosi", "email": "ayanda@example.org"}


def demo_records(today: datetime) -> list[tuple[Kind, str, dict[str, Any]]]:
    """The demo set as platform bodies; `today` is a fixed time of the day they are dated from."""

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    stamp = {"updated_at": day(0)}
    return [
        (
            Kind.CAMPAIGN,
            "SP-CAMP-DEMO1",
            {
                "title": "Clean Water Gqeberha",
                "status": "ended",
                "currency": "ZAR",
                "amount_raised": "5000.00",
                "organiser": _THANDI,
                **stamp,
            },
        ),
        (
            Kind.CAMPAIGN,
            "SP-CAMP-DEMO2",
            {
                "title": "Books for Soweto Readers",
                "status": "ended",
                "currency": "ZAR",
                "amount_raised": "12400.00",
                "organiser": _THANDI,
                **stamp,
            },
        ),
        (
            Kind.CAMPAIGN,
            "SP-CAMP-DEMO3",
            {
                "title": "Eastern Cape Flood Relief",
                "status": "cancelled",
                "currency": "ZAR",
                "amount_raised": "3100.00",
                "organiser": _SIPHO,
                **stamp,
            },
        ),
        (
            Kind.DISBURSEMENT,
            "SP-PAY-DEMO1",
            {
                "campaign": "SP-CAMP-DEMO1",
                "amount": "5000.00",
                "fees": "250.00",
                "currency": "ZAR",
                "method": "bank_transfer",
                "destination_last4": "4821",
                "status": "sent",
                "expected_at": day(-1),
                "paid_at": day(-1),
                **stamp,
            },
        ),
        (
            Kind.DISBURSEMENT,
            "SP-PAY-DEMO2",
            {
                "campaign": "SP-CAMP-DEMO2",
                "amount": "12400.00",
                "fees": "620.00",
                "currency": "ZAR",
                "method": "bank_transfer",
                "destination_last4": "0937",
                "status": "failed",
                "expected_at": day(-2),
                "failure_reason": "the bank rejected the account number",
                **stamp,
            },
        ),
        (
            Kind.CONTRIBUTION,
            "SP-DON-DEMO1",
            {
                "campaign": "SP-CAMP-DEMO3",
                "amount": "500.00",
                "currency": "ZAR",
                "status": "succeeded",
                "backer": _LERATO,
                **stamp,
            },
        ),
        (
            Kind.CONTRIBUTION,
            "SP-DON-DEMO2",
            {
                "campaign": "SP-CAMP-DEMO1",
                "amount": "250.00",
                "currency": "ZAR",
                "status": "refunded",
                "backer": _LERATO,
                **stamp,
            },
        ),
        (
            Kind.REGISTRATION,
            "SP-ENTRY-DEMO1",
            {
                "contest": "SayPro Youth Innovation Challenge 2026",
                "status": "confirmed",
                "fee_status": "paid",
                "submission_status": "under_review",
                "deadline": day(10),
                "participant": _AYANDA,
                **stamp,
            },
        ),
    ]


DEMO_REFERENCES = frozenset(reference for _kind, reference, _body in demo_records(datetime(2026, 1, 1)))


def load_demo(services: Services, *, now: datetime | None = None) -> list[Upserted]:
    """Validate and upsert the demo set, dated from today in SUPPORT_TIMEZONE; idempotent within a day."""
    zone = ZoneInfo(services.settings.support_timezone)
    local = (now or datetime.now(zone)).astimezone(zone)
    today = datetime.combine(local.date(), time(6, 0), tzinfo=zone)
    results = []
    for kind, reference, body in demo_records(today):
        validated = BODIES[kind].model_validate(body)
        upserted, _items = store(services, kind, reference, validated.columns())
        results.append(upserted)
    return results


class DemoCodeRoute:
    """Shows a demo record's code in the terminal, clearly marked; nothing for anything else."""

    def claims(self, *, reference: str, channel: str) -> bool:
        return channel == "console" and reference.upper() in DEMO_REFERENCES

    def deliver(self, session: Session, *, owner: Owner, code: str, asker: Conversation) -> Delivery | None:
        if owner.email is None:
            return None
        where = _masked(owner.email)
        shown = ShownCode(DEMO_CODE.format(where=where, code=code), DEMO_CODE_REDACTED.format(where=where))
        return Delivery(Proof("email", owner.email), via="demo", shown=shown)


def _masked(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"
