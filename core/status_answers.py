"""A record's status in plain words, for its verified owner: amounts, dates and what to do next.

Amounts are said as the currency shows them (R4,750.00 for ZAR), dates in the support time zone.
A payout past its expected date, a failed or held payout and a chargeback come with a
high-priority ticket; other answers offer a person where one can help.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import texts
from core.handoff import HandoffRequest, Priority
from core.messages import Option
from core.records import PlatformRecord, campaign, payouts_of
from core.storage.records import Campaign, Contribution, Disbursement, Registration

AGENT = Option(texts.TALK_TO_PERSON, "action:agent")
MENU = Option(texts.MAIN_MENU, "action:menu")
SYMBOLS = {"ZAR": "R", "NAD": "N$", "BWP": "P", "USD": "$", "EUR": "€", "GBP": "£", "NGN": "₦", "KES": "KSh"}
REFUNDABLE_CAMPAIGNS = ("cancelled", "failed")


@dataclass(frozen=True)
class Answer:
    """What to tell the owner, the quick replies to offer, and a ticket to open if a person must act."""

    text: str
    options: tuple[Option, ...] = ()
    handoff: HandoffRequest | None = None


@dataclass(frozen=True)
class Clock:
    """Today's date and how to write dates, in the support time zone."""

    now: datetime
    zone: ZoneInfo

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def day(self, moment: datetime) -> str:
        """A date as people write it: Friday 5 December 2026."""
        local = moment.astimezone(self.zone)
        return f"{local:%A} {local.day} {local:%B %Y}"

    def when(self, moment: datetime | None) -> str:
        """today, yesterday, or on Friday 5 December 2026 (today when unknown)."""
        if moment is None:
            return "today"
        days = (self.today - moment.astimezone(self.zone).date()).days
        return {0: "today", 1: "yesterday"}.get(days, f"on {self.day(moment)}")


def money(amount: Decimal, currency: str) -> str:
    """An amount as the currency shows it: R4,750.00, or USD-style with the code for others."""
    figure = f"{abs(amount.quantize(Decimal('0.01'))):,.2f}"
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(currency.upper())
    return f"{sign}{symbol}{figure}" if symbol else f"{sign}{currency.upper()} {figure}"


def words(value: str, known: dict[str, str]) -> str:
    """A status in words: the known phrase, or the platform's own value made readable."""
    return known.get(value, value.replace("_", " "))


def describe(session: Session, record: PlatformRecord, clock: Clock) -> Answer:
    """The owner's answer for any kind of record."""
    if isinstance(record, Disbursement):
        return describe_payout(record, title_of(session, record.campaign_reference), clock)
    if isinstance(record, Contribution):
        return describe_contribution(record, campaign(session, record.campaign_reference), clock)
    if isinstance(record, Registration):
        return describe_registration(record, clock)
    return describe_campaign(record, payouts_of(session, record.reference))


def title_of(session: Session, campaign_reference: str) -> str:
    found = campaign(session, campaign_reference)
    return found.title if found is not None else texts.YOUR_CAMPAIGN


def destination(payout: Disbursement) -> str:
    if payout.destination_last4:
        return texts.DESTINATION[payout.method].format(last4=payout.destination_last4)
    return texts.DESTINATION_UNKNOWN[payout.method]


def is_late(payout: Disbursement, clock: Clock) -> bool:
    """Still unpaid (and not waiting on the organiser's documents) after its expected date."""
    if payout.status not in ("scheduled", "processing") or payout.expected_at is None:
        return False
    return payout.expected_at.astimezone(clock.zone).date() < clock.today


def describe_payout(payout: Disbursement, title: str, clock: Clock) -> Answer:
    head = texts.PAYOUT_HEAD.format(
        reference=payout.reference,
        title=title,
        net=money(payout.net_amount, payout.currency),
        amount=money(payout.amount, payout.currency),
        fees=money(payout.fees, payout.currency),
        method=texts.METHOD[payout.method],
    )
    if is_late(payout, clock):
        assert payout.expected_at is not None
        late = texts.PAYOUT_LATE.format(date=clock.day(payout.expected_at))
        return Answer(f"{head}\n\n{late}", handoff=_urgent("payout late", "disbursement-delayed"))
    documents = ", ".join(str(d) for d in payout.kyc_documents) or texts.KYC_DOCUMENTS
    reason = texts.REASON.format(reason=payout.failure_reason.rstrip(".")) if payout.failure_reason else ""
    expected = ""
    if payout.expected_at is not None:
        wording = texts.PAYOUT_EXPECTED if payout.status == "scheduled" else texts.PAYOUT_EXPECTED_BY
        expected = wording.format(date=clock.day(payout.expected_at))
    paid = clock.day(payout.paid_at) if payout.paid_at else "a date we don't have yet"
    template = texts.PAYOUT.get(payout.status, "Its status is {status}.")
    line = template.format(
        documents=documents,
        expected=expected,
        destination=destination(payout),
        paid=paid,
        reason=reason,
        status=words(payout.status, {}),
    )
    if payout.status == "failed":
        return Answer(f"{head}\n\n{line}", handoff=_urgent("payout failed", "payment-method-failed"))
    if payout.status == "on_hold":
        return Answer(f"{head}\n\n{line}", handoff=_urgent("payout on hold", "disbursement-delayed"))
    return Answer(f"{head}\n\n{line}", (MENU, AGENT))


def describe_contribution(contribution: Contribution, parent: Campaign | None, clock: Clock) -> Answer:
    title = parent.title if parent is not None else texts.YOUR_CAMPAIGN
    head = texts.CONTRIBUTION_HEAD.format(
        reference=contribution.reference, title=title, amount=money(contribution.amount, contribution.currency)
    )
    changed = _changed_at(contribution, contribution.status)
    since = texts.SINCE.format(date=clock.day(changed)) if changed else ""
    line = texts.CONTRIBUTION.get(contribution.status, "its status is {status}.").format(
        since=since, status=words(contribution.status, {})
    )
    text, options = f"{head} {line}", (MENU, AGENT)
    if contribution.status == "charged_back":
        return Answer(text, handoff=_urgent("chargeback", "incorrect-charge"))
    if contribution.status == "succeeded" and contribution.refund_requested_at is not None:
        asked = texts.SINCE.format(date=clock.day(contribution.refund_requested_at))
        text += "\n\n" + texts.REFUND_ASKED.format(since=asked, ticket=contribution.refund_ticket or "-")
    elif contribution.status == "succeeded" and parent is not None and parent.status in REFUNDABLE_CAMPAIGNS:
        text += "\n\n" + texts.REFUND_QUALIFIES.format(why=texts.REFUND_WHY[parent.status])
        options = (Option(texts.ASK_FOR_REFUND, f"refund:{contribution.reference}"), AGENT)
    return Answer(text, options)


def describe_registration(entry: Registration, clock: Clock) -> Answer:
    head = texts.REGISTRATION_HEAD.format(reference=entry.reference, contest=entry.contest)
    lines = texts.REGISTRATION_LINES.format(
        status=words(entry.status, texts.REGISTRATION_STATUS),
        fee=words(entry.fee_status, texts.FEE),
        submission=words(entry.submission_status, texts.SUBMISSION),
    )
    text = f"{head}\n{lines}"
    if entry.deadline is not None:
        passed = entry.deadline.astimezone(clock.zone).date() < clock.today
        if passed:
            note = texts.DEADLINE_PASSED
        else:
            note = texts.DEADLINE_AHEAD if entry.submission_status == "not_submitted" else texts.DEADLINE
        text += "\n\n" + note.format(date=clock.day(entry.deadline))
    if entry.submission_status == "disqualified":
        return Answer(f"{text}\n\n{texts.DISQUALIFIED}", (AGENT, MENU))
    return Answer(text, (MENU, AGENT))


def describe_campaign(record: Campaign, payouts: list[Disbursement]) -> Answer:
    head = texts.CAMPAIGN_HEAD.format(reference=record.reference, title=record.title)
    raised = money(record.amount_raised, record.currency)
    line = texts.CAMPAIGN.get(record.status, "its status is {status}.").format(
        raised=raised, status=words(record.status, {})
    )
    text = f"{head} {line}"
    if payouts:
        text += "\n" + "\n".join(
            texts.CAMPAIGN_PAYOUT.format(reference=p.reference, status=words(p.status, texts.PAYOUT_SHORT))
            for p in payouts
        )
    options = (AGENT, MENU) if record.status == "failed" else (MENU, AGENT)
    return Answer(text, options)


def _changed_at(record: PlatformRecord, value: str) -> datetime | None:
    """When the record's status last became `value`, from its history."""
    for entry in reversed(record.history):
        if entry.get("field") == "status" and entry.get("value") == value:
            return datetime.fromisoformat(str(entry["at"]))
    return None


def _urgent(reason: str, topic: str) -> HandoffRequest:
    return HandoffRequest(reason=reason, priority=Priority.HIGH, topic=topic)
