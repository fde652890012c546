"""The platform's record API: `PUT /api/v1/{campaigns,disbursements,contributions,registrations}/{reference}`.

Bodies are validated here (clear 422s naming the field), stored through core.records.upsert
(idempotent, out-of-order versions ignored) and, when a status changed, the owner is told
through core.proactive, all in one transaction. web.py mounts the router behind platform_key.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from core.errors import RecordConflict
from core.proactive import change_key
from core.records import Kind, Upserted, normalise_email, normalise_phone, upsert

if TYPE_CHECKING:
    from bots.wiring import Services

log = logging.getLogger(__name__)
_AMOUNT = re.compile(r"\d{1,12}(?:\.\d{1,2})?")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


def _amount(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value.strip()):
        raise ValueError('must be a decimal string with at most 2 decimal places, e.g. "4750.00"')
    return Decimal(value.strip())


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _method(value: object) -> object:
    return re.sub(r"[\s-]+", "_", value.strip().lower()) if isinstance(value, str) else value


Reference = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{2,63}$", description="the record's reference, e.g. SP-PAY-1042")
]
Amount = Annotated[Decimal, BeforeValidator(_amount)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), BeforeValidator(_upper)]
Token = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z][a-z_]{1,31}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
RecordRef = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{2,63}$"), BeforeValidator(_upper)]


def _printable(value: object) -> object:
    """Refuse control characters and lone surrogates in any text field (and list of texts).

    PostgreSQL cannot store NUL in text, and none of them belongs in a name or a reason.
    """
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(text, str) and _CONTROL.search(text) for text in texts):
        raise ValueError("must not contain control characters")
    return value


class Body(BaseModel):
    """Common to every record body: more fields are allowed and ignored."""

    model_config = ConfigDict(extra="ignore")

    updated_at: AwareDatetime

    check_text = field_validator("*")(_printable)


class Person(BaseModel):
    """The record's owner as the platform has verified them; at least an e-mail or a phone."""

    model_config = ConfigDict(extra="ignore")

    name: Name
    email: str | None = None
    phone: str | None = None

    check_text = field_validator("*")(_printable)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        email = normalise_email(value)
        if email is None:
            raise ValueError("not an e-mail address")
        return email

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        phone = normalise_phone(value)
        if phone is None:
            raise ValueError("not a phone number: use E.164, e.g. +27825550142")
        return phone

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        if self.email is None and self.phone is None:
            raise ValueError("needs a verified email or phone, or nobody can be verified as the owner")
        return self

    def columns(self) -> dict[str, Any]:
        return {"owner_name": self.name, "owner_email": self.email, "owner_phone": self.phone}


class CampaignIn(Body):
    title: Name
    status: Literal["active", "ended", "cancelled", "failed"]
    currency: Currency
    amount_raised: Amount
    organiser: Person

    def columns(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "currency": self.currency,
            "amount_raised": self.amount_raised,
            "updated_at": self.updated_at,
            **self.organiser.columns(),
        }


class DisbursementIn(Body):
    campaign: RecordRef
    amount: Amount
    fees: Amount
    net_amount: Amount | None = None
    currency: Currency
    method: Annotated[Literal["bank_transfer", "paypal", "mobile_money"], BeforeValidator(_method)]
    destination_last4: Annotated[str, Field(pattern=r"^\d{4}$", description="only the last 4 digits")] | None = None
    status: Literal["pending_kyc", "scheduled", "processing", "sent", "received", "failed", "on_hold"]
    expected_at: AwareDatetime | None = None
    paid_at: AwareDatetime | None = None
    failure_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    kyc_documents: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=10
    )

    @model_validator(mode="after")
    def _sums(self) -> DisbursementIn:
        if self.fees > self.amount:
            raise ValueError("fees cannot be more than the amount")
        if self.net_amount is not None and self.net_amount > self.amount:
            raise ValueError("net_amount cannot be more than the amount")
        return self

    def columns(self) -> dict[str, Any]:
        return {
            "campaign_reference": self.campaign,
            "amount": self.amount,
            "fees": self.fees,
            "net_amount": self.net_amount if self.net_amount is not None else self.amount - self.fees,
            "currency": self.currency,
            "method": self.method,
            "destination_last4": self.destination_last4,
            "status": self.status,
            "expected_at": self.expected_at,
            "paid_at": self.paid_at,
            "failure_reason": self.failure_reason,
            "kyc_documents": list(self.kyc_documents),
            "updated_at": self.updated_at,
        }


class ContributionIn(Body):
    campaign: RecordRef
    amount: Amount
    currency: Currency
    status: Literal["succeeded", "failed", "refund_requested", "refunded", "charged_back"]
    backer: Person

    def columns(self) -> dict[str, Any]:
        return {
            "campaign_reference": self.campaign,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "updated_at": self.updated_at,
            **self.backer.columns(),
        }


class RegistrationIn(Body):
    contest: Name
    status: Token
    fee_status: Token
    submission_status: Literal["not_submitted", "received", "under_review", "accepted", "disqualified"]
    deadline: AwareDatetime | None = None
    participant: Person

    def columns(self) -> dict[str, Any]:
        return {
            "contest": self.contest,
            "status": self.status,
            "fee_status": self.fee_status,
            "submission_status": self.submission_status,
            "deadline": self.deadline,
            "updated_at": self.updated_at,
            **self.participant.columns(),
        }


class RecordOut(BaseModel):
    """What a PUT did: created, updated, unchanged (the same version again) or ignored (older)."""

    reference: str
    kind: str
    result: str
    changes: list[str]


def store(services: Services, kind: Kind, reference: str, columns: dict[str, Any]) -> tuple[Upserted, list[int]]:
    """Upsert one record and write the owner's update, in one transaction; the outbox rows to send."""
    with services.database.transaction() as session:
        upserted = upsert(session, kind, reference, columns)
        item_ids = services.notifier.notify(session, upserted)
    return upserted, item_ids


async def _put(request: Request, kind: Kind, reference: str, columns: dict[str, Any]) -> RecordOut:
    services = request.app.state.services
    try:
        upserted, item_ids = await run_in_threadpool(store, services, kind, reference, columns)
    except RecordConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await services.dispatcher.dispatch(item_ids)
    log.info("platform record %s", upserted.result, extra={"kind": kind.value, "reference": upserted.reference})
    changes = [change_key(kind, change) for change in upserted.changes]
    return RecordOut(reference=upserted.reference, kind=kind.value, result=upserted.result, changes=changes)


router = APIRouter(prefix="/api/v1", tags=["platform records"])


@router.put("/campaigns/{reference}", response_model=RecordOut)
async def put_campaign(reference: Reference, body: CampaignIn, request: Request) -> RecordOut:
    return await _put(request, Kind.CAMPAIGN, reference, body.columns())


@router.put("/disbursements/{reference}", response_model=RecordOut)
async def put_disbursement(reference: Reference, body: DisbursementIn, request: Request) -> RecordOut:
    return await _put(request, Kind.DISBURSEMENT, reference, body.columns())


@router.put("/contributions/{reference}", response_model=RecordOut)
async def put_contribution(reference: Reference, body: ContributionIn, request: Request) -> RecordOut:
    return await _put(request, Kind.CONTRIBUTION, reference, body.columns())


@router.put("/registrations/{reference}", response_model=RecordOut)
async def put_registration(reference: Reference, body: RegistrationIn, request: Request) -> RecordOut:
    return await _put(request, Kind.REGISTRATION, reference, body.columns())


BODIES: dict[Kind, type[CampaignIn | DisbursementIn | ContributionIn | RegistrationIn]] = {
    Kind.CAMPAIGN: CampaignIn,
    Kind.DISBURSEMENT: DisbursementIn,
    Kind.CONTRIBUTION: ContributionIn,
    Kind.REGISTRATION: RegistrationIn,
}
