"""Privacy (POPIA, like GDPR): forget a person on request, and purge messages past the retention period.

Forgetting erases the person's messages (both ways) and their outbox rows, their channel
identities and contact, the phones and e-mails they proved (identity links), and their
verification trail. Their conversations and tickets stay for the support figures, anonymous:
each is moved to a placeholder identity that holds no personal data and can never be sent to;
a ticket's rating comment and the text of its desk posts (the agents' copy of what the person
said) are erased.
The platform's own records (campaigns, contributions, entries) belong to the platform, which
pushes them here: they are counted, not erased.

A table this module does not know that points at an erased row is unlinked (a nullable
column) or erased with it, so a table added later cannot keep personal data alive.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, MetaData, delete, exists, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.cursors import lease_cursor, new_lease_owner, read_cursor, save_cursor
from core.records import Kind, normalise_email, normalise_phone, owned_records
from core.storage.database import Database
from core.storage.desk import DeskPost
from core.storage.models import (
    Base,
    ChannelIdentity,
    Contact,
    Conversation,
    IdentityLink,
    Message,
    OutboxItem,
    Ticket,
    VerificationChallenge,
    VerificationEvent,
    utcnow,
)
from core.storage.records import StatusNotification

log = logging.getLogger(__name__)
PHONE_CHANNELS = ("sms", "whatsapp")
CHUNK = 500
# The retention purge: how often it runs, how often a process checks whether it is its turn,
# and the name of its lease and last-run time among the poller cursors.
PURGE_EVERY_SECONDS = 3600.0
PURGE_CHECK_SECONDS = 60.0
RETENTION_CURSOR = "retention_purge"
# What a desk post about a forgotten person says instead of what it said.
ERASED = "(erased at the person's request)"
# Tables whose links to erased rows are handled by name below; any other is handled generically.
_HANDLED = {
    "outbox",
    "verification_challenges",
    "verification_events",
    "identity_links",
    "status_notifications",
    "messages",
    "conversations",
    "channel_identities",
}


@dataclass(frozen=True)
class ContactQuery:
    """Who to forget: a channel identity (`channel:user_id`), a phone number or an e-mail address."""

    kind: str  # identity, phone or email
    value: str
    channel: str | None = None

    @classmethod
    def parse(cls, text: str) -> ContactQuery:
        """`telegram:5550001`, `whatsapp:+27825550142`, `+27 82 555 0142`, `082 555 0142` or `a@b.org`."""
        text = text.strip()
        channel, colon, user_id = text.partition(":")
        if colon and channel.isidentifier() and channel.lower() == channel and user_id.strip():
            user_id = user_id.strip()
            if channel in PHONE_CHANNELS:
                user_id = normalise_phone(user_id) or user_id
            return cls("identity", user_id, channel)
        if "@" in text:
            email = normalise_email(text)
            if email is not None:
                return cls("email", email)
        phone = normalise_phone(text)
        if phone is not None:
            return cls("phone", phone)
        raise ValueError(f"{text!r} is not channel:user_id, a phone number or an e-mail address")


@dataclass
class Forgotten:
    """What forgetting erased (or, in a dry run, would erase)."""

    identities: int = 0
    contacts: int = 0
    messages: int = 0
    outbox: int = 0
    identity_links: int = 0
    verification: int = 0
    conversations: int = 0
    tickets: int = 0
    records_kept: int = 0
    other_rows: dict[str, int] = field(default_factory=dict)


@dataclass
class Purged:
    """What a retention purge erased."""

    messages: int = 0
    outbox: int = 0
    verification: int = 0
    other_rows: dict[str, int] = field(default_factory=dict)


def forget(database: Database, contact: str | ContactQuery, *, dry_run: bool = False) -> Forgotten:
    """Erase everything about the person `contact` names, in one transaction; counts of what went."""
    query = contact if isinstance(contact, ContactQuery) else ContactQuery.parse(contact)
    session = database.sessions()
    try:
        session.begin()
        result = _forget(session, query)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    finally:
        session.close()
    log.info(
        "contact forgotten" if not dry_run else "contact forget (dry run)",
        extra={"identities": result.identities, "messages": result.messages},
    )
    return result


def _forget(session: Session, query: ContactQuery) -> Forgotten:
    identities = _people(session, query)
    result = Forgotten(records_kept=_records_naming(session, query, identities))
    if not identities:
        return result
    identity_ids = [identity.id for identity in identities]
    contact_ids = sorted({identity.contact_id for identity in identities})
    conversations = list(session.scalars(select(Conversation).where(Conversation.identity_id.in_(identity_ids))))
    conversation_ids = [conversation.id for conversation in conversations]
    message_ids = _ids(session, Message.id, Message.conversation_id, conversation_ids)
    outbox_ids = _ids(session, OutboxItem.id, OutboxItem.conversation_id, conversation_ids)
    outbox_ids = sorted(set(outbox_ids) | set(_ids(session, OutboxItem.id, OutboxItem.message_id, message_ids)))
    challenge_ids = _ids(session, VerificationChallenge.id, VerificationChallenge.identity_id, identity_ids)
    erased = {
        "messages": message_ids,
        "outbox": outbox_ids,
        "channel_identities": identity_ids,
        "contacts": contact_ids,
        "verification_challenges": challenge_ids,
    }
    result.other_rows = unlink_unknown(session, erased)
    result.outbox = _delete(session, OutboxItem.id, outbox_ids)
    _set_null(session, VerificationChallenge.message_id, message_ids)
    _set_null(session, StatusNotification.message_id, message_ids)
    _set_null(session, StatusNotification.identity_id, identity_ids)
    result.verification = _delete(session, VerificationChallenge.id, challenge_ids)
    result.verification += _delete(session, VerificationEvent.identity_id, identity_ids)
    result.identity_links = _delete(session, IdentityLink.identity_id, identity_ids)
    result.messages = _delete(session, Message.id, message_ids)
    result.tickets = _anonymise(session, conversations)
    result.conversations = len(conversations)
    result.identities = _delete(session, ChannelIdentity.id, identity_ids)
    result.contacts = _delete(session, Contact.id, contact_ids)
    return result


def _people(session: Session, query: ContactQuery) -> list[ChannelIdentity]:
    """The identities `query` names, those that proved its phone or e-mail, and every identity of their contacts."""
    if query.kind == "identity":
        found = select(ChannelIdentity.contact_id).where(
            ChannelIdentity.channel == query.channel, ChannelIdentity.user_id == query.value
        )
    else:
        channels = PHONE_CHANNELS if query.kind == "phone" else ("email",)
        linked = select(IdentityLink.identity_id).where(
            IdentityLink.kind == query.kind, IdentityLink.value == query.value
        )
        found = select(ChannelIdentity.contact_id).where(
            or_(
                ChannelIdentity.channel.in_(channels) & (ChannelIdentity.user_id == query.value),
                ChannelIdentity.id.in_(linked),
            )
        )
    return list(session.scalars(select(ChannelIdentity).where(ChannelIdentity.contact_id.in_(found))))


def _records_naming(session: Session, query: ContactQuery, identities: Sequence[ChannelIdentity]) -> int:
    phones = [query.value] if query.kind == "phone" else []
    emails = [query.value] if query.kind == "email" else []
    ids = [identity.id for identity in identities]
    if ids:
        for kind, value in session.execute(
            select(IdentityLink.kind, IdentityLink.value).where(IdentityLink.identity_id.in_(ids))
        ):
            (phones if kind == "phone" else emails).append(value)
    phones += [p for i in identities if i.channel in PHONE_CHANNELS and (p := normalise_phone(i.user_id))]
    if not phones and not emails:
        return 0
    kinds = (Kind.CAMPAIGN, Kind.CONTRIBUTION, Kind.REGISTRATION)  # a payout names nobody itself
    return len(owned_records(session, phones=sorted(set(phones)), emails=sorted(set(emails)), kinds=kinds))


def _anonymise(session: Session, conversations: Sequence[Conversation]) -> int:
    """Move the conversations to placeholder identities and clear what they held of the person;
    the number of tickets they carry (kept, now anonymous)."""
    if not conversations:
        return 0
    now = utcnow()
    placeholder_contact = Contact(display_name=None)
    session.add(placeholder_contact)
    session.flush()
    placeholders: dict[str, ChannelIdentity] = {}
    for conversation in conversations:
        if conversation.channel not in placeholders:
            placeholder = ChannelIdentity(
                contact_id=placeholder_contact.id,
                channel=conversation.channel,
                user_id=f"forgotten:{uuid.uuid4().hex}",
                opted_out_at=now,
                unreachable_at=now,
            )
            session.add(placeholder)
            session.flush()
            placeholders[conversation.channel] = placeholder
        conversation.identity = placeholders[conversation.channel]
        conversation.contact_id = placeholder_contact.id
        conversation.pending_options = []
        conversation.status_step = conversation.status_reference = None
        conversation.status_topic = conversation.status_intent = conversation.status_since = None
    session.flush()
    ticket_ids = _ids(session, Ticket.id, Ticket.conversation_id, [conversation.id for conversation in conversations])
    for chunk in _chunks(ticket_ids):
        session.execute(update(Ticket).where(Ticket.id.in_(chunk)).values(csat_comment=None))
        # The desk's copies of the person's words and name; Slack's own copy is erased in Slack.
        session.execute(update(DeskPost).where(DeskPost.ticket_id.in_(chunk)).values(text=ERASED))
    return len(ticket_ids)


def purge(database: Database, *, days: int, now: datetime | None = None, batch: int = CHUNK) -> Purged:
    """Erase messages stored more than `days` days ago, with their outbox rows, in batches.

    Kept: inbound messages not answered yet and messages with a reply still waiting to be sent
    (they are still work). Verification challenges and events past the period go too.
    """
    if days < 1:
        raise ValueError("the retention period is at least one day")
    cutoff = (now or utcnow()) - timedelta(days=days)
    result = Purged()
    while True:
        with database.transaction() as session:
            message_ids = list(session.scalars(_expired_messages(cutoff).limit(batch)))
            if not message_ids:
                break
            _purge_messages(session, message_ids, result)
    with database.transaction() as session:
        result.verification += _delete_where(session, VerificationChallenge.expires_at, before=cutoff)
        result.verification += _delete_where(session, VerificationEvent.created_at, before=cutoff)
    if result.messages:
        log.info("old messages purged", extra={"messages": result.messages, "days": days})
    return result


def _expired_messages(cutoff: datetime):  # type: ignore[no-untyped-def]
    waiting = exists().where(OutboxItem.message_id == Message.id, OutboxItem.status == "pending")
    unanswered = (Message.direction == "in") & Message.processed_at.is_(None)
    return select(Message.id).where(Message.created_at < cutoff, ~unanswered, ~waiting).order_by(Message.id)


def _purge_messages(session: Session, message_ids: list[int], result: Purged) -> None:
    outbox_ids = _ids(session, OutboxItem.id, OutboxItem.message_id, message_ids)
    for table, count in unlink_unknown(session, {"messages": message_ids, "outbox": outbox_ids}).items():
        result.other_rows[table] = result.other_rows.get(table, 0) + count
    result.outbox += _delete(session, OutboxItem.id, outbox_ids)
    _set_null(session, VerificationChallenge.message_id, message_ids)
    _set_null(session, StatusNotification.message_id, message_ids)
    result.messages += _delete(session, Message.id, message_ids)


async def purge_forever(
    database: Database, *, days: int, every: float = PURGE_EVERY_SECONDS, check: float = PURGE_CHECK_SECONDS
) -> None:
    """Purge once every `every` seconds until cancelled: the loop of `run` and `worker` when
    MESSAGE_RETENTION_DAYS is set. Of several processes, the one holding the retention lease
    purges (core.cursors); the time of the last purge is kept in the database, so a restart
    neither skips nor repeats one. A database error is logged and tried again at the next check."""
    owner = new_lease_owner()
    while True:
        try:
            await asyncio.to_thread(purge_if_due, database, days=days, every=every, owner=owner, lease=check * 3)
        except SQLAlchemyError as exc:
            log.warning("retention purge failed, trying again later: %s", type(exc).__name__)
        await asyncio.sleep(check)


def purge_if_due(
    database: Database, *, days: int, every: float, owner: str, lease: float, now: datetime | None = None
) -> Purged | None:
    """Purge if this process holds the retention lease and the last purge is `every` seconds old;
    None when it was not this process's turn."""
    now = now or utcnow()
    if not lease_cursor(database, RETENTION_CURSOR, owner=owner, seconds=lease):
        return None
    last = read_cursor(database, RETENTION_CURSOR)
    if last and now - datetime.fromisoformat(last) < timedelta(seconds=every):
        return None
    result = purge(database, days=days, now=now)
    with database.transaction() as session:
        save_cursor(session, RETENTION_CURSOR, now.isoformat())
    return result


def unlink_unknown(
    session: Session, erased: dict[str, Sequence[int]], *, metadata: MetaData = Base.metadata
) -> dict[str, int]:
    """Rows of tables not handled here that point at rows about to be erased: unlinked where the
    column may be null, erased otherwise. The number of rows touched per table."""
    touched: dict[str, int] = {}
    for table in metadata.sorted_tables:
        if table.name in _HANDLED:
            continue
        for key in table.foreign_keys:
            ids = erased.get(key.column.table.name)
            if not ids:
                continue
            column = key.parent
            count = _set_null(session, column, ids) if column.nullable else _delete(session, column, ids)
            if count:
                touched[table.name] = touched.get(table.name, 0) + count
    return touched


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _column(attribute: object) -> Column[Any]:
    """The table column behind a mapped attribute (statements here are Core: no ORM bookkeeping)."""
    if isinstance(attribute, Column):
        return attribute
    return attribute.property.columns[0]  # type: ignore[attr-defined,no-any-return]


def _ids(session: Session, wanted: object, column: object, values: Sequence[int]) -> list[int]:
    found: set[int] = set()
    key, target = _column(wanted), _column(column)
    for chunk in _chunks(values):
        found.update(session.scalars(select(key).where(target.in_(chunk))))
    return sorted(found)


def _delete(session: Session, attribute: object, values: Iterable[int]) -> int:
    column = _column(attribute)
    total = 0
    for chunk in _chunks(list(values)):
        total += _count(session.execute(delete(column.table).where(column.in_(chunk))))
    return total


def _set_null(session: Session, attribute: object, values: Iterable[int]) -> int:
    column = _column(attribute)
    total = 0
    for chunk in _chunks(list(values)):
        statement = update(column.table).where(column.in_(chunk)).values({column.name: None})
        total += _count(session.execute(statement))
    return total


def _delete_where(session: Session, attribute: object, *, before: datetime) -> int:
    column = _column(attribute)
    return _count(session.execute(delete(column.table).where(column < before)))


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
