"""Who may hear a record's status: phone match, one-time codes (expiry, lockout, rate limits), linked identities.

An asker owns a record when they write by SMS or WhatsApp from the record's verified phone
(the carrier vouches for Twilio's `From`), or when their channel identity has proved, with a
one-time code, that it controls the record's verified phone or e-mail; that proof is kept as
an identity link, so the next question needs no code. Codes are 6 digits, stored only as a
salted hash, valid for 10 minutes; 5 wrong codes for a reference within an hour lock it for an
hour, whichever identities typed them. A reference that does not exist gets a challenge too,
one with no code at all, so that every answer is the same as for somebody else's record.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import texts
from core.channels import ChannelRegistry
from core.conversation_rows import find_or_add_identity, open_conversation
from core.messages import OutboundMessage
from core.outbound_rows import write_outbound
from core.records import Kind, Owner, PlatformRecord, normalise_phone, owned_records
from core.storage.models import (
    ChannelIdentity,
    Conversation,
    IdentityLink,
    OutboxItem,
    VerificationChallenge,
    VerificationEvent,
    utcnow,
)

log = logging.getLogger(__name__)
# Channels whose user id is the sender's phone number, vouched for by the carrier.
PHONE_CHANNELS = ("sms", "whatsapp")


@dataclass(frozen=True)
class Policy:
    """The numbers of verification; the defaults are the issue's."""

    code_digits: int = 6
    code_ttl: timedelta = timedelta(minutes=10)
    max_wrong_codes: int = 5
    lock_for: timedelta = timedelta(hours=1)
    lookups_per_window: int = 10
    lookup_window: timedelta = timedelta(hours=1)
    # Codes sent for one reference per `lock_for`: nobody can flood an owner's phone with them.
    codes_per_reference: int = 3


@dataclass(frozen=True)
class Proof:
    """What a right code proves the asker controls: a phone number or an e-mail address."""

    kind: str  # phone or email
    value: str


@dataclass(frozen=True)
class ShownCode:
    """A code shown in the asker's own chat (the demo only), and what is kept of it once shown."""

    text: str
    redacted: str


@dataclass(frozen=True)
class Delivery:
    """A code on its way: what it proves, how it went, and the outbound message carrying it."""

    proof: Proof
    via: str
    message_id: int | None = None
    shown: ShownCode | None = None


class CodeRoute(Protocol):
    """One way to get a code to a record's owner (SMS, e-mail, the demo's terminal)."""

    def claims(self, *, reference: str, channel: str) -> bool:
        """Whether this route sends codes for `reference` asked on `channel`; it never reads the record."""
        ...

    def deliver(self, session: Session, *, owner: Owner, code: str, asker: Conversation) -> Delivery | None:
        """Send `code` to the owner; None when the owner has no phone or e-mail this route can use."""
        ...


class Check(str, Enum):
    """The result of a code typed back."""

    RIGHT = "right"
    WRONG = "wrong"
    LOCKED = "locked"
    EXPIRED = "expired"


class OutboxCodeRoute:
    """Codes as a system message through the outbox, by SMS to the phone or e-mail to the address.

    The message goes in the conversation of the destination's own identity (created if need
    be); the outbox row keeps the code only until it is sent (OutboxItem.after_send_text).
    """

    def __init__(self, channels: ChannelRegistry, channel: str) -> None:
        self.channels = channels
        self.channel = channel
        self.proves = "phone" if channel == "sms" else "email"

    def claims(self, *, reference: str, channel: str) -> bool:
        return self.channels.get(self.channel) is not None

    def deliver(self, session: Session, *, owner: Owner, code: str, asker: Conversation) -> Delivery | None:
        live = self.channels.get(self.channel)
        destination = owner.phone if self.proves == "phone" else owner.email
        if live is None or destination is None:
            return None
        identity = find_or_add_identity(session, channel=self.channel, user_id=destination)
        if identity.opted_out_at is not None or identity.unreachable_at is not None:
            return None
        conversation = open_conversation(session, identity)
        message = OutboundMessage(
            channel=self.channel,
            user_id=destination,
            text=texts.CODE_MESSAGE.format(code=code),
            conversation_id=conversation.id,
        )
        item_ids = write_outbound(
            session,
            conversation,
            message,
            capabilities=live.capabilities,
            author="system",
            redacted=texts.CODE_MESSAGE_REDACTED,
        )
        first = session.get(OutboxItem, item_ids[0])
        assert first is not None
        return Delivery(Proof(self.proves, destination), via=self.channel, message_id=first.message_id)


class Verifier:
    """Ownership checks, code challenges and the limits around them, all kept in the database."""

    def __init__(
        self, routes: Sequence[CodeRoute], *, policy: Policy | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.routes = tuple(routes)
        self.policy = policy or Policy()
        self.clock = clock

    def owns(self, session: Session, identity: ChannelIdentity, owner: Owner) -> bool:
        """Whether the asker is the owner: by the phone they write from, or by an earlier code."""
        if owner.phone and identity.channel in PHONE_CHANNELS and normalise_phone(identity.user_id) == owner.phone:
            return True
        phones, emails = self.proven(session, identity)
        return bool((owner.phone and owner.phone in phones) or (owner.email and owner.email in emails))

    def proven(self, session: Session, identity: ChannelIdentity) -> tuple[list[str], list[str]]:
        """The phones and e-mails this identity is known to control."""
        links = session.execute(
            select(IdentityLink.kind, IdentityLink.value).where(IdentityLink.identity_id == identity.id)
        ).all()
        phones = [value for kind, value in links if kind == "phone"]
        emails = [value for kind, value in links if kind == "email"]
        if identity.channel in PHONE_CHANNELS and (own := normalise_phone(identity.user_id)):
            phones.append(own)
        return phones, emails

    def owned(self, session: Session, identity: ChannelIdentity, kinds: Sequence[Kind]) -> list[PlatformRecord]:
        """The records of these kinds the asker is known to own, newest first."""
        phones, emails = self.proven(session, identity)
        return owned_records(session, phones=phones, emails=emails, kinds=kinds)

    def over_limit(self, session: Session, identity: ChannelIdentity, reference: str) -> bool:
        """Count a look-up of `reference`; True, and nothing looked up, past the identity's limit."""
        since = self.clock() - self.policy.lookup_window
        done = (
            session.scalar(
                select(func.count())
                .select_from(VerificationEvent)
                .where(
                    VerificationEvent.identity_id == identity.id,
                    VerificationEvent.event == "lookup",
                    VerificationEvent.created_at >= since,
                )
            )
            or 0
        )
        limited = done >= self.policy.lookups_per_window
        self._event(session, identity.id, reference, "rate_limited" if limited else "lookup")
        if limited:
            log.warning("status look-ups rate-limited", extra={"identity_id": identity.id, "reference": reference})
        return limited

    def locked(self, session: Session, reference: str) -> bool:
        """Whether code verification for `reference` is locked after too many wrong codes."""
        since = self.clock() - self.policy.lock_for
        return self._last_event_id(session, reference, ("locked",), since=since) is not None

    def can_send(self, *, reference: str, channel: str) -> bool:
        """Whether any route would send a code at all (configuration only, never the record)."""
        return any(route.claims(reference=reference, channel=channel) for route in self.routes)

    def start(self, session: Session, *, asker: Conversation, reference: str, owner: Owner | None) -> ShownCode | None:
        """A new challenge for `reference`, its code sent to the owner when there is one to send to."""
        now = self.clock()
        self._retire_open(session, asker.identity_id, now)
        code = f"{secrets.randbelow(10**self.policy.code_digits):0{self.policy.code_digits}d}"
        delivery = None
        if owner is not None and not self._sent_enough(session, reference, now):
            delivery = self._deliver(session, owner=owner, code=code, asker=asker, reference=reference)
        salt = secrets.token_hex(16)
        session.add(
            VerificationChallenge(
                identity_id=asker.identity_id,
                reference=reference,
                salt=salt,
                code_hash=_digest(salt, code) if delivery else None,
                proves_kind=delivery.proof.kind if delivery else None,
                proves_value=delivery.proof.value if delivery else None,
                sent_via=delivery.via if delivery else None,
                message_id=delivery.message_id if delivery else None,
                created_at=now,
                expires_at=now + self.policy.code_ttl,
            )
        )
        self._event(session, asker.identity_id, reference, "code_requested")
        log.info(
            "one-time code requested",
            extra={
                "conversation_id": asker.id,
                "identity_id": asker.identity_id,
                "reference": reference,
                "sent_via": delivery.via if delivery else None,
            },
        )
        return delivery.shown if delivery else None

    def check(self, session: Session, *, asker: Conversation, reference: str, code: str) -> Check:
        """Check a code typed back for `reference`; every attempt is recorded and logged."""
        now = self.clock()
        challenge = session.scalars(
            select(VerificationChallenge)
            .where(
                VerificationChallenge.identity_id == asker.identity_id,
                VerificationChallenge.reference == reference,
                VerificationChallenge.consumed_at.is_(None),
            )
            .order_by(VerificationChallenge.id.desc())
        ).first()
        if challenge is None or now >= challenge.expires_at:
            if challenge is not None:
                self._retire(session, challenge, now)
            return self._attempt(session, asker, reference, Check.EXPIRED)
        if self.locked(session, reference):
            return self._attempt(session, asker, reference, Check.LOCKED)
        if challenge.code_hash is not None and hmac.compare_digest(challenge.code_hash, _digest(challenge.salt, code)):
            self._retire(session, challenge, now)
            self._link(session, asker.identity_id, challenge)
            return self._attempt(session, asker, reference, Check.RIGHT)
        self._attempt(session, asker, reference, Check.WRONG)
        if self._wrong_codes(session, reference, now) < self.policy.max_wrong_codes:
            return Check.WRONG
        self._retire(session, challenge, now)
        self._event(session, asker.identity_id, reference, "locked")
        log.warning(
            "code verification locked after %d wrong codes",
            self.policy.max_wrong_codes,
            extra={"conversation_id": asker.id, "identity_id": asker.identity_id, "reference": reference},
        )
        return Check.LOCKED

    def _deliver(
        self, session: Session, *, owner: Owner, code: str, asker: Conversation, reference: str
    ) -> Delivery | None:
        for route in self.routes:
            if route.claims(reference=reference, channel=asker.channel):
                delivery = route.deliver(session, owner=owner, code=code, asker=asker)
                if delivery is not None:
                    return delivery
        return None

    def _attempt(self, session: Session, asker: Conversation, reference: str, result: Check) -> Check:
        self._event(session, asker.identity_id, reference, f"code_{result.value}")
        log.info(
            "one-time code attempt: %s",
            result.value,
            extra={"conversation_id": asker.id, "identity_id": asker.identity_id, "reference": reference},
        )
        return result

    def _wrong_codes(self, session: Session, reference: str, now: datetime) -> int:
        """Wrong codes for `reference` within the lock window since the last right code or lock."""
        reset = self._last_event_id(session, reference, ("code_right", "locked")) or 0
        return (
            session.scalar(
                select(func.count())
                .select_from(VerificationEvent)
                .where(
                    VerificationEvent.reference == reference,
                    VerificationEvent.event == "code_wrong",
                    VerificationEvent.id > reset,
                    VerificationEvent.created_at >= now - self.policy.lock_for,
                )
            )
            or 0
        )

    def _sent_enough(self, session: Session, reference: str, now: datetime) -> bool:
        sent = (
            session.scalar(
                select(func.count())
                .select_from(VerificationChallenge)
                .where(
                    VerificationChallenge.reference == reference,
                    VerificationChallenge.sent_via.is_not(None),
                    VerificationChallenge.created_at >= now - self.policy.lock_for,
                )
            )
            or 0
        )
        return sent >= self.policy.codes_per_reference

    def _last_event_id(
        self, session: Session, reference: str, events: Sequence[str], *, since: datetime | None = None
    ) -> int | None:
        query = select(func.max(VerificationEvent.id)).where(
            VerificationEvent.reference == reference, VerificationEvent.event.in_(events)
        )
        if since is not None:
            query = query.where(VerificationEvent.created_at >= since)
        return session.scalar(query)

    def _event(self, session: Session, identity_id: int, reference: str, event: str) -> None:
        session.add(
            VerificationEvent(identity_id=identity_id, reference=reference, event=event, created_at=self.clock())
        )

    def _retire_open(self, session: Session, identity_id: int, now: datetime) -> None:
        """A new code replaces the asker's earlier ones, whatever their reference."""
        open_ones = session.scalars(
            select(VerificationChallenge).where(
                VerificationChallenge.identity_id == identity_id, VerificationChallenge.consumed_at.is_(None)
            )
        )
        for challenge in list(open_ones):
            self._retire(session, challenge, now)

    def _retire(self, session: Session, challenge: VerificationChallenge, now: datetime) -> None:
        """Used, expired or replaced: the challenge is spent, and an unsent code is not sent at all."""
        challenge.consumed_at = now
        if challenge.message_id is None:
            return
        unsent = session.scalars(
            select(OutboxItem).where(OutboxItem.message_id == challenge.message_id, OutboxItem.status == "pending")
        )
        for item in list(unsent):
            item.status, item.last_error = "withheld", "the one-time code is no longer valid"

    def _link(self, session: Session, identity_id: int, challenge: VerificationChallenge) -> None:
        if challenge.proves_kind is None or challenge.proves_value is None:
            return
        exists = session.scalars(
            select(IdentityLink).where(
                IdentityLink.identity_id == identity_id,
                IdentityLink.kind == challenge.proves_kind,
                IdentityLink.value == challenge.proves_value,
            )
        ).first()
        if exists is None:
            session.add(IdentityLink(identity_id=identity_id, kind=challenge.proves_kind, value=challenge.proves_value))


def _digest(salt: str, code: str) -> str:
    # Six digits are a small space, so the hash alone would not stop a determined reader of the
    # database: it keeps codes out of sight, and the 10-minute expiry and lockout do the rest.
    return hmac.new(bytes.fromhex(salt), code.encode(), hashlib.sha256).hexdigest()
