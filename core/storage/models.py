"""The tables: contacts and their channel identities, conversations, messages, tickets, outbox, verification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

# An inbound message not answered yet: the condition of the partial indexes on it, written out
# as the statements that use them write it (core.inbox), since a planner matches it by its text.
WAITING = text("direction = 'in' AND processed_at IS NULL")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Times stored as UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 (SQLAlchemy's form)


class Contact(Base):
    """A person, who may write from several channels."""

    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    identities: Mapped[list[ChannelIdentity]] = relationship(back_populates="contact")


class ChannelIdentity(Base):
    """One way to reach a contact: a channel and the channel's id for them."""

    __tablename__ = "channel_identities"
    __table_args__ = (UniqueConstraint("channel", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    opted_out_at: Mapped[datetime | None]
    # Set when the provider says the user cannot be reached (blocked the bot, invalid number).
    unreachable_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The last message *from* the user: WhatsApp's 24-hour window counts from it.
    last_seen_at: Mapped[datetime | None]
    contact: Mapped[Contact] = relationship(back_populates="identities")


class Conversation(Base):
    """A run of messages with one identity, held by the bot or a person (see core.conversations)."""

    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), default="bot")
    misses: Mapped[int] = mapped_column(Integer, default=0)
    last_topic: Mapped[str | None] = mapped_column(String(100))
    pending_options: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None]
    # A status question in progress (core.status): waiting for a "reference" or a "code"; kept
    # here, not in memory, so a restart of every process loses no pending verification.
    status_step: Mapped[str | None] = mapped_column(String(16))
    status_reference: Mapped[str | None] = mapped_column(String(64))
    status_topic: Mapped[str | None] = mapped_column(String(16))  # campaign, disbursement, ...
    status_intent: Mapped[str | None] = mapped_column(String(16))  # status or refund
    status_since: Mapped[datetime | None]
    identity: Mapped[ChannelIdentity] = relationship()


class Message(Base):
    """Every message in and out, kept for accountability.

    Inbound rows carry the provider's id; the unique constraint on (channel,
    provider_message_id) is what makes a provider's retry a no-op.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "provider_message_id"),
        # The messages waiting for an answer, and only those (WAITING): oldest first for the workers
        # and the sweep (core.inbox's `pending`), and a conversation's, before every answer. An
        # answered or outbound message has no entry, so answering one writes none.
        Index("ix_messages_waiting", "id", sqlite_where=WAITING, postgresql_where=WAITING),
        Index(
            "ix_messages_waiting_conversation", "conversation_id", "id", sqlite_where=WAITING, postgresql_where=WAITING
        ),
        # A conversation's messages, and those of one direction since a time (core.ratelimit
        # counts an identity's recent messages before every answer).
        Index("ix_messages_conversation_recent", "conversation_id", "direction", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    direction: Mapped[str] = mapped_column(String(8))  # "in" or "out"
    author: Mapped[str] = mapped_column(String(16))  # user, bot, agent, system
    channel: Mapped[str] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    options: Mapped[list[Any]] = mapped_column(default=list)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class Ticket(Base):
    """A request for a person, known to the user by its reference number (states: core.handoff)."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("desk_channel", "desk_ts"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, assigned, resolved, returned
    priority: Mapped[str] = mapped_column(String(16), default="normal")  # normal, high, urgent
    reason: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    # The desk: the parent message in the agents' Slack channel, whose thread holds the rest.
    desk_channel: Mapped[str | None] = mapped_column(String(32))
    desk_ts: Mapped[str | None] = mapped_column(String(32))
    assignee_id: Mapped[str | None] = mapped_column(String(32))  # the agent's Slack user id
    assignee_name: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    # Since when the user waits for a person's answer (set at handoff and reopen, cleared by a
    # reply); the service-level timers count from it.
    waiting_since: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    sla_breached_at: Mapped[datetime | None]
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    reopened_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(100))  # who resolved it or gave it back to the bot
    # Satisfaction survey after Resolve: the step awaited ("rating", "comment"), then the answers.
    csat_step: Mapped[str | None] = mapped_column(String(16))
    csat_score: Mapped[int | None] = mapped_column(Integer)
    csat_comment: Mapped[str | None] = mapped_column(Text)
    csat_at: Mapped[datetime | None]


class OutboxItem(Base):
    """One part of a reply waiting to be sent, written in the same transaction that decided it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_receipt", "channel", "receipt_id"),
        # A conversation's rows, and those of it still pending: a row waits for the earlier
        # pending rows of its conversation (core.outbox_rows, at every lease and claim).
        Index("ix_outbox_conversation_pending", "conversation_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    part: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    options: Mapped[list[Any]] = mapped_column(default=list)
    # {"content_id": ..., "variables": [[key, value], ...]} when sent as a provider template
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # pending, sent, dead (gave up), withheld (not allowed to send, e.g. outside WhatsApp's window)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # What the provider reported later about delivery (Twilio status callbacks): delivered, failed...
    delivery_status: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    leased_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    receipt_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # For a secret such as a one-time code: the text kept once the row is no longer pending.
    after_send_text: Mapped[str | None] = mapped_column(Text)

    @validates("status")
    def _forget_secret(self, _key: str, status: str) -> str:
        # Sent, dead or withheld: the secret has done its job (or never will), so drop it.
        if status != "pending" and self.after_send_text is not None:
            self.text = self.after_send_text
        return status


class PollerCursor(Base):
    """Where a poller (X DMs, Telegram getUpdates) got to, so a restart neither repeats nor skips."""

    __tablename__ = "poller_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    leased_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))


class IdentityLink(Base):
    """A phone number or e-mail address a channel identity has proved it controls (a one-time code)."""

    __tablename__ = "identity_links"
    __table_args__ = (UniqueConstraint("identity_id", "kind", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # phone or email
    value: Mapped[str] = mapped_column(String(320))  # E.164 phone or lower-case e-mail
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerificationChallenge(Base):
    """A one-time code asked for one reference; only a salted hash of the code is kept.

    A challenge for a reference that does not exist, or that could not be delivered, has no
    hash: every code typed against it is wrong, exactly as a wrong code for a real one.
    """

    __tablename__ = "verification_challenges"
    __table_args__ = (Index("ix_verification_challenges_reference", "reference", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("channel_identities.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    salt: Mapped[str] = mapped_column(String(32))
    proves_kind: Mapped[str | None] = mapped_column(String(8))  # what a right code proves: phone or email
    proves_value: Mapped[str | None] = mapped_column(String(320))
    sent_via: Mapped[str | None] = mapped_column(String(16))  # sms, email, demo; None: nothing sent
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    consumed_at: Mapped[datetime | None]


class VerificationEvent(Base):
    """The audit trail of status look-ups and code attempts; also what rate limits and locks count."""

    __tablename__ = "verification_events"
    __table_args__ = (
        Index("ix_verification_events_identity", "identity_id", "created_at"),
        Index("ix_verification_events_reference", "reference", "event"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("channel_identities.id"))
    reference: Mapped[str | None] = mapped_column(String(64))
    # lookup, code_requested, code_right, code_wrong, code_expired, locked, rate_limited
    event: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The platform's records and the desk's tables live in their own modules; importing them here
# puts their tables on Base.metadata wherever the models are loaded (Alembic's env, the tests).
from core.storage import desk as _desk  # noqa: F401
from core.storage import records as _records  # noqa: F401
