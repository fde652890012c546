"""The platform's records the status answers come from, and the notifications sent about them.

The SayPro platform pushes these through `PUT /api/v1/...` (see core.records); `updated_at` is
the platform's time for the version stored, `stored_at` ours. Owners' contact details are kept
normalised (E.164 phone, lower-case e-mail) so that ownership checks are plain comparisons.
A payout (disbursement) has no owner columns: it belongs to its campaign's organiser.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from core.storage.models import Base, utcnow

AMOUNT = Numeric(14, 2)


class RecordColumns:
    """Columns every platform record has."""

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    # [{"field": "status", "value": "sent", "at": ISO time}, ...]: every status change, oldest first
    history: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OwnerColumns:
    """The verified contact details of the person a record belongs to."""

    owner_name: Mapped[str] = mapped_column(String(200))
    owner_email: Mapped[str | None] = mapped_column(String(320), index=True)
    owner_phone: Mapped[str | None] = mapped_column(String(20), index=True)


class Campaign(RecordColumns, OwnerColumns, Base):
    """A fundraising campaign; its owner is the organiser."""

    __tablename__ = "campaigns"
    title: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    amount_raised: Mapped[Decimal] = mapped_column(AMOUNT)


class Disbursement(RecordColumns, Base):
    """A payout of a campaign's funds to its organiser; only the destination's last 4 digits are kept."""

    __tablename__ = "disbursements"
    campaign_reference: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    fees: Mapped[Decimal] = mapped_column(AMOUNT)
    net_amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(16))  # bank_transfer, paypal, mobile_money
    destination_last4: Mapped[str | None] = mapped_column(String(4))
    expected_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # What the organiser still has to upload while the payout waits for KYC (empty: say it generally)
    kyc_documents: Mapped[list[Any]] = mapped_column(default=list)


class Contribution(RecordColumns, OwnerColumns, Base):
    """A backer's contribution to a campaign, and what became of refunds asked for in chat."""

    __tablename__ = "contributions"
    campaign_reference: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(String(3))
    refund_requested_at: Mapped[datetime | None]
    refund_ticket: Mapped[str | None] = mapped_column(String(16))


class Registration(RecordColumns, OwnerColumns, Base):
    """A participant's contest entry: registration, entry fee and submission."""

    __tablename__ = "registrations"
    contest: Mapped[str] = mapped_column(String(200))
    fee_status: Mapped[str] = mapped_column(String(32))
    submission_status: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[datetime | None]


class StatusNotification(Base):
    """One status change the platform pushed, and what the owner was sent about it (or why nothing)."""

    __tablename__ = "status_notifications"
    __table_args__ = (Index("ix_status_notifications_record", "kind", "reference"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(64))  # e.g. disbursement.sent, see core.proactive
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identities.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # text (free-form), template (provider-approved, outside a reply window), skipped, no_one
    delivery: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
