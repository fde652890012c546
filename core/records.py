"""The platform's records: upsert in `updated_at` order, look-ups by reference, and who owns what.

The platform is the source of truth and may deliver updates twice or out of order: a version
older than the stored one changes nothing, the same version again changes nothing, and a
different body claiming the same `updated_at` is a conflict. Every change of a status field is
appended to the record's history with the platform's time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import RecordConflict
from core.storage.records import Campaign, Contribution, Disbursement, Registration

PlatformRecord = Campaign | Disbursement | Contribution | Registration


class Kind(str, Enum):
    """The four kinds of record the platform pushes."""

    CAMPAIGN = "campaign"
    DISBURSEMENT = "disbursement"
    CONTRIBUTION = "contribution"
    REGISTRATION = "registration"


MODELS: dict[Kind, type[PlatformRecord]] = {
    Kind.CAMPAIGN: Campaign,
    Kind.DISBURSEMENT: Disbursement,
    Kind.CONTRIBUTION: Contribution,
    Kind.REGISTRATION: Registration,
}
# The fields whose changes are a "status change": kept in the history and told to the owner.
STATUS_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.CAMPAIGN: ("status",),
    Kind.DISBURSEMENT: ("status",),
    Kind.CONTRIBUTION: ("status",),
    Kind.REGISTRATION: ("submission_status", "fee_status", "status"),
}
CAMPAIGN_STATUSES = ("active", "ended", "cancelled", "failed")
DISBURSEMENT_STATUSES = ("pending_kyc", "scheduled", "processing", "sent", "received", "failed", "on_hold")
CONTRIBUTION_STATUSES = ("succeeded", "failed", "refund_requested", "refunded", "charged_back")
SUBMISSION_STATUSES = ("not_submitted", "received", "under_review", "accepted", "disqualified")
METHODS = ("bank_transfer", "paypal", "mobile_money")


@dataclass(frozen=True)
class Owner:
    """The person a record belongs to, with the contact details the platform has verified."""

    name: str | None
    email: str | None
    phone: str | None


@dataclass(frozen=True)
class Change:
    """One status field that a newer version changed."""

    field: str
    old: str
    new: str


@dataclass(frozen=True)
class Upserted:
    """What a PUT did: `result` is created, updated, unchanged or ignored (older than the stored one)."""

    kind: Kind
    reference: str
    result: str
    changes: tuple[Change, ...] = ()


def kind_of(record: PlatformRecord) -> Kind:
    return next(kind for kind, model in MODELS.items() if isinstance(record, model))


def normalise_reference(reference: str) -> str:
    return reference.strip().upper()


_PHONE_NOISE = re.compile(r"[\s().-]")
_E164 = re.compile(r"\+[1-9]\d{7,14}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalise_phone(value: str, *, country_code: str = "27") -> str | None:
    """`value` in E.164 (+27825550142), or None when it is not a phone number.

    Accepts what people and providers write: spaces, dashes, brackets, a `whatsapp:` or
    `tel:` prefix, 00 for +, and a national number with a leading 0 (South Africa by default).
    """
    text = value.strip()
    for prefix in ("whatsapp:", "tel:", "sms:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = _PHONE_NOISE.sub("", text)
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.startswith("0") and len(text) == 10 and text.isdigit():
        text = f"+{country_code}{text[1:]}"
    return text if _E164.fullmatch(text) else None


def normalise_email(value: str) -> str | None:
    """`value` lower-cased, or None when it does not look like an e-mail address."""
    text = value.strip().lower()
    return text if _EMAIL.fullmatch(text) and len(text) <= 320 else None


def upsert(session: Session, kind: Kind, reference: str, fields: Mapping[str, Any]) -> Upserted:
    """Store this version of a record unless the stored one is as new or newer.

    `fields` are the model's columns, already validated (amounts Decimal, times aware,
    phones E.164); `updated_at` is required. Raises RecordConflict for a different body
    with the same `updated_at` as the stored one.
    """
    model = MODELS[kind]
    reference = normalise_reference(reference)
    stored = _stored(session, model, reference)
    if stored is None:
        try:
            with session.begin_nested():
                history = [_entry(name, fields[name], fields["updated_at"]) for name in STATUS_FIELDS[kind]]
                session.add(model(reference=reference, history=history, **fields))
                session.flush()
            return Upserted(kind, reference, "created")
        except IntegrityError:  # a concurrent PUT of the same new record won: update it instead
            stored = _stored(session, model, reference)
            assert stored is not None
    return _update(stored, kind, fields)


def _stored(session: Session, model: type[PlatformRecord], reference: str) -> PlatformRecord | None:
    query = select(model).where(model.reference == reference).with_for_update()
    return cast("PlatformRecord | None", session.scalars(query).first())  # a union of models reads back as Base


def _update(stored: PlatformRecord, kind: Kind, fields: Mapping[str, Any]) -> Upserted:
    version: datetime = fields["updated_at"]
    if version < stored.updated_at:
        return Upserted(kind, stored.reference, "ignored")
    differing = [name for name, value in fields.items() if name != "updated_at" and getattr(stored, name) != value]
    if version == stored.updated_at:
        if differing:
            raise RecordConflict(f"{stored.reference}: a different version with the same updated_at is stored")
        return Upserted(kind, stored.reference, "unchanged")
    changes = tuple(
        Change(name, getattr(stored, name), fields[name])
        for name in STATUS_FIELDS[kind]
        if getattr(stored, name) != fields[name]
    )
    for name, value in fields.items():
        setattr(stored, name, value)
    stored.history = [*stored.history, *(_entry(change.field, change.new, version) for change in changes)]
    return Upserted(kind, stored.reference, "updated", changes)


def _entry(field: str, value: object, at: datetime) -> dict[str, str]:
    return {"field": field, "value": str(value), "at": at.isoformat()}


def find(session: Session, reference: str) -> PlatformRecord | None:
    """The record with this reference, of whatever kind, or None."""
    reference = normalise_reference(reference)
    for model in MODELS.values():
        found = session.scalars(select(model).where(model.reference == reference)).first()
        if found is not None:
            return cast(PlatformRecord, found)  # a union of models reads back as Base
    return None


def campaign(session: Session, reference: str) -> Campaign | None:
    return session.scalars(select(Campaign).where(Campaign.reference == normalise_reference(reference))).first()


def owner_of(session: Session, record: PlatformRecord) -> Owner | None:
    """Who the record belongs to; a payout belongs to its campaign's organiser (None while unknown)."""
    if isinstance(record, Disbursement):
        parent = campaign(session, record.campaign_reference)
        return None if parent is None else owner_of(session, parent)
    return Owner(record.owner_name, record.owner_email, record.owner_phone)


def owned_records(
    session: Session, *, phones: Sequence[str], emails: Sequence[str], kinds: Iterable[Kind] = tuple(Kind)
) -> list[PlatformRecord]:
    """The records whose owner has one of these verified phones or e-mails, newest first."""
    if not phones and not emails:
        return []
    wanted = set(kinds)
    found: list[PlatformRecord] = []
    campaigns = list(session.scalars(select(Campaign).where(_owned_by(Campaign, phones, emails))))
    if Kind.CAMPAIGN in wanted:
        found += campaigns
    if Kind.DISBURSEMENT in wanted and campaigns:
        references = [c.reference for c in campaigns]
        found += session.scalars(select(Disbursement).where(Disbursement.campaign_reference.in_(references)))
    for kind, model in ((Kind.CONTRIBUTION, Contribution), (Kind.REGISTRATION, Registration)):
        if kind in wanted:
            found += session.scalars(select(model).where(_owned_by(model, phones, emails)))
    return sorted(found, key=lambda record: record.updated_at, reverse=True)


def _owned_by(
    model: type[Campaign | Contribution | Registration], phones: Sequence[str], emails: Sequence[str]
) -> ColumnElement[bool]:
    return or_(model.owner_phone.in_(phones), model.owner_email.in_(emails))


def payouts_of(session: Session, campaign_reference: str) -> list[Disbursement]:
    query = select(Disbursement).where(Disbursement.campaign_reference == campaign_reference)
    return list(session.scalars(query.order_by(Disbursement.updated_at.desc())))
