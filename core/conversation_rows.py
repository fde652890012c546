"""Conversation rows: a user's identity and contact, their current conversation, and the messages
they send into it.

Every message that comes in is stored here (core.inbox), with single statements built once
(core.row_statements); what goes out is written by core.outbound_rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, insert, select
from sqlalchemy.orm import Session

from core.conversations import State
from core.desk import REOPEN_WITHIN, RESOLVED_TICKET_ID
from core.messages import InboundMessage
from core.row_statements import INSERT_MESSAGE, Rows, insert_row, one_statement, prefixed, row_update, run_update
from core.storage.models import ChannelIdentity, Contact, Conversation, Message, utcnow

_IDENTITY = select(ChannelIdentity).where(
    ChannelIdentity.channel == bindparam("channel"), ChannelIdentity.user_id == bindparam("user_id")
)
_contacts, _identities = Contact.__table__, ChannelIdentity.__table__
_conversations, _messages = Conversation.__table__, Message.__table__
# What storing a message needs, in one statement (look_up_arrival): the sender's identity, its
# latest conversation, and the message itself if it was stored before.
_latest, _stored = _conversations.alias("latest"), _messages.alias("stored")
_ARRIVAL = (
    select(
        _identities.c.id,
        _identities.c.contact_id,
        _identities.c.last_seen_at,
        _identities.c.unreachable_at,
        _identities.c.display_name,
        _latest.c.id.label("latest_id"),
        _latest.c.state.label("latest_state"),
        _stored.c.id.label("stored_id"),
        _stored.c.conversation_id.label("stored_conversation_id"),
    )
    .select_from(
        _identities.outerjoin(
            _latest,
            _latest.c.id
            == select(func.max(_conversations.c.id))
            .where(_conversations.c.identity_id == _identities.c.id)
            .scalar_subquery(),
        ).outerjoin(
            _stored,
            and_(
                _stored.c.channel == bindparam("channel"),
                _stored.c.provider_message_id == bindparam("provider_message_id"),
            ),
        )
    )
    .where(_identities.c.channel == bindparam("channel"), _identities.c.user_id == bindparam("user_id"))
)
_LATEST_ROW = (
    select(_conversations.c.id, _conversations.c.state)
    .where(_conversations.c.identity_id == bindparam("identity_id"))
    .order_by(_conversations.c.id.desc())
    .limit(1)
)
# On the table: a statement on the mapped class costs about twice as much to run.
_FIND = select(_messages.c.id, _messages.c.conversation_id).where(
    _messages.c.channel == bindparam("channel"), _messages.c.provider_message_id == bindparam("provider_message_id")
)
_INSERT_CONTACT = insert(_contacts).returning(_contacts.c.id)
_INSERT_IDENTITY = insert(_identities).returning(_identities.c.id)
_INSERT_CONVERSATION = insert(_conversations).returning(_conversations.c.id)
# A known identity seen again (_seen).
_SEEN_COLUMNS = ("last_seen_at", "unreachable_at", "display_name")
_SEEN = row_update(_identities, *_SEEN_COLUMNS)
# A known sender's message in their current conversation, on PostgreSQL: _SEEN as a WITH clause of
# the message's INSERT. Every column with a default is given: with an UPDATE in the statement,
# SQLAlchemy leaves the INSERT's defaults unset.
_NEXT_MESSAGE = (
    insert_row(
        _messages,
        "message_",
        *("conversation_id", "direction", "author", "channel", "provider_message_id", "text", "attachments"),
        *("options", "details", "sent_at", "created_at"),
    )
    .returning(_messages.c.id)
    .add_cte(row_update(_identities, *_SEEN_COLUMNS, prefix="seen_", row_id="identity_row_id").cte("seen"))
)
_MESSAGE_DEFAULTS = {"options": [], "details": {}}
# A new user's first message (store_inbound), on PostgreSQL: their contact, identity and
# conversation as WITH clauses of the message's INSERT.
_NEW_CONTACT = (
    insert_row(_contacts, "contact_", "display_name", "created_at").returning(_contacts.c.id).cte("new_contact")
)
_NEW_IDENTITY = (
    insert_row(
        _identities,
        "identity_",
        *("channel", "user_id", "display_name", "last_seen_at", "created_at"),
        contact_id=_NEW_CONTACT.c.id,
    )
    .returning(_identities.c.id, _identities.c.contact_id)
    .cte("new_identity")
)
_NEW_CONVERSATION = (
    insert_row(
        _conversations,
        "conversation_",
        *("channel", "created_at"),
        contact_id=_NEW_IDENTITY.c.contact_id,
        identity_id=_NEW_IDENTITY.c.id,
    )
    .returning(_conversations.c.id)
    .cte("new_conversation")
)
_FIRST_MESSAGE = insert_row(
    _messages,
    "message_",
    *("direction", "author", "channel", "provider_message_id", "text", "attachments", "sent_at", "created_at"),
    conversation_id=_NEW_CONVERSATION.c.id,
).returning(_messages.c.id, _messages.c.conversation_id)


def find_inbound(session: Rows, message: InboundMessage) -> tuple[int, int] | None:
    """The stored message's id and conversation id, if this message was received before."""
    found = session.execute(
        _FIND, {"channel": message.channel, "provider_message_id": message.provider_message_id}
    ).first()
    return (found[0], found[1]) if found is not None else None


@dataclass(frozen=True)
class Arrival:
    """What `look_up_arrival` found of an inbound message before it is stored."""

    stored: tuple[int, int] | None  # the message's id and conversation id, if it was stored before
    sender: Row[Any] | None  # the sender's identity on the channel and its latest conversation (_ARRIVAL)


def look_up_arrival(session: Rows, message: InboundMessage) -> Arrival:
    """In one statement: the sender's identity with its latest conversation, and the message if stored before.

    A sender without an identity has no stored message either (`forget` erases both), so their
    message is taken for a new one; should it have been stored after all, storing it again fails
    on the unique message, and the caller looks again with `find_inbound`.
    """
    row = session.execute(
        _ARRIVAL,
        {"channel": message.channel, "user_id": message.user_id, "provider_message_id": message.provider_message_id},
    ).first()
    if row is None:
        return Arrival(None, None)
    stored = (int(row.stored_id), int(row.stored_conversation_id)) if row.stored_id is not None else None
    return Arrival(stored, row)


def store_inbound(
    session: Rows, message: InboundMessage, *, now: datetime, arrival: Arrival | None = None
) -> tuple[int, int]:
    """Store an inbound message (with its identity, contact and conversation if new): its id and
    its conversation's. Rows are inserted with single statements, not through the unit of work:
    this runs for every message that comes in. `arrival`: what `look_up_arrival` found, if it ran.

    On PostgreSQL a new user's message is one statement (_FIRST_MESSAGE), and so is a known one's
    in their current conversation with their last-seen time (_NEXT_MESSAGE); otherwise, and on
    SQLite, a statement a row."""
    sender = (arrival or look_up_arrival(session, message)).sender
    if sender is None and one_statement(session):
        return _first_message(session, message)
    if sender is None:
        conversation_id = _new_user(session, message)
    else:
        seen = _seen(sender, message)
        current = sender.latest_id is not None and sender.latest_state != State.RESOLVED.value
        if seen is not None and current and one_statement(session):
            return _next_message(session, message, sender, seen)
        if seen is not None:
            run_update(session, _SEEN, sender.id, seen)
        latest = (sender.latest_id, sender.latest_state) if sender.latest_id is not None else None
        conversation_id = _continue_or_open(
            session, latest, identity_id=sender.id, contact_id=sender.contact_id, channel=message.channel, now=now
        )
    message_id = session.execute(INSERT_MESSAGE, {"conversation_id": conversation_id, **_inbound(message)}).scalar_one()
    return message_id, conversation_id


def _inbound(message: InboundMessage) -> dict[str, Any]:
    """The columns of an inbound message's record (but its conversation_id)."""
    return {
        "direction": "in",
        "author": "user",
        "channel": message.channel,
        "provider_message_id": message.provider_message_id,
        "text": message.text,
        "attachments": [{"url": a.url, "content_type": a.content_type, "name": a.name} for a in message.attachments],
        "sent_at": message.sent_at,
    }


def _new_user(session: Rows, message: InboundMessage) -> int:
    """A contact, identity and conversation for someone who never wrote on this channel: the
    conversation's id. A concurrent first message from them fails here on the unique identity."""
    contact_id = session.execute(_INSERT_CONTACT, _new_contact(message)).scalar_one()
    identity_id = session.execute(_INSERT_IDENTITY, {"contact_id": contact_id, **_new_identity(message)}).scalar_one()
    return session.execute(
        _INSERT_CONVERSATION, {"contact_id": contact_id, "identity_id": identity_id, "channel": message.channel}
    ).scalar_one()


def _first_message(session: Rows, message: InboundMessage) -> tuple[int, int]:
    """`_new_user` and the message's INSERT in one statement (_FIRST_MESSAGE): the message's id and
    its conversation's. A concurrent first message from them fails here on the unique identity."""
    now = utcnow()
    row = session.execute(
        _FIRST_MESSAGE,
        {
            **prefixed("contact_", {**_new_contact(message), "created_at": now}),
            **prefixed("identity_", {**_new_identity(message), "created_at": now}),
            **prefixed("conversation_", {"channel": message.channel, "created_at": now}),
            **prefixed("message_", {**_inbound(message), "created_at": now}),
        },
    ).one()
    return int(row.id), int(row.conversation_id)


def _new_contact(message: InboundMessage) -> dict[str, Any]:
    return {"display_name": message.display_name}


def _new_identity(message: InboundMessage) -> dict[str, Any]:
    """The columns of a new user's identity (but its contact_id)."""
    return {
        "channel": message.channel,
        "user_id": message.user_id,
        "display_name": message.display_name,
        "last_seen_at": message.sent_at,
    }


def find_or_add_identity(
    session: Session, *, channel: str, user_id: str, display_name: str | None = None
) -> ChannelIdentity:
    """The identity for (`channel`, `user_id`), created with a new contact if there is none yet."""
    identity = session.scalars(_IDENTITY, {"channel": channel, "user_id": user_id}).first()
    if identity is None:
        contact = Contact(display_name=display_name)
        session.add(contact)
        session.flush()
        identity = ChannelIdentity(contact_id=contact.id, channel=channel, user_id=user_id, display_name=display_name)
        session.add(identity)
        session.flush()
    return identity


def _seen(identity: Row[Any], message: InboundMessage) -> dict[str, Any] | None:
    """A known identity just wrote: what _SEEN sets (when, that it can be reached again since they
    just wrote to us, and its current name), or None when that is already so."""
    last_seen = identity.last_seen_at
    if last_seen is None or message.sent_at > last_seen:
        last_seen = message.sent_at
    name = message.display_name or identity.display_name
    if (last_seen, name) != (identity.last_seen_at, identity.display_name) or identity.unreachable_at is not None:
        return {"last_seen_at": last_seen, "unreachable_at": None, "display_name": name}
    return None


def _next_message(session: Rows, message: InboundMessage, sender: Row[Any], seen: dict[str, Any]) -> tuple[int, int]:
    """A known sender's message in their current conversation, with _SEEN, in one statement
    (_NEXT_MESSAGE): the message's id and its conversation's."""
    values = {"conversation_id": sender.latest_id, **_inbound(message), **_MESSAGE_DEFAULTS, "created_at": utcnow()}
    message_id = session.execute(
        _NEXT_MESSAGE, {"identity_row_id": sender.id, **prefixed("seen_", seen), **prefixed("message_", values)}
    ).scalar_one()
    return int(message_id), int(sender.latest_id)


def _current_conversation(session: Rows, *, identity_id: int, contact_id: int, channel: str, now: datetime) -> int:
    """The id of the identity's current conversation (`open_conversation`), read and written as rows."""
    latest = session.execute(_LATEST_ROW, {"identity_id": identity_id}).first()
    return _continue_or_open(
        session,
        (latest.id, latest.state) if latest is not None else None,
        identity_id=identity_id,
        contact_id=contact_id,
        channel=channel,
        now=now,
    )


def _continue_or_open(
    session: Rows, latest: tuple[int, str] | None, *, identity_id: int, contact_id: int, channel: str, now: datetime
) -> int:
    """The latest conversation's id (`latest`: its id and state) while it is current, else a new one's."""
    if latest is not None and latest[1] != State.RESOLVED.value:
        return int(latest[0])
    if latest is not None:
        reopened = session.execute(RESOLVED_TICKET_ID, {"conversation_id": latest[0], "since": now - REOPEN_WITHIN})
        if reopened.first() is not None:
            return int(latest[0])
    return int(
        session.execute(
            _INSERT_CONVERSATION, {"contact_id": contact_id, "identity_id": identity_id, "channel": channel}
        ).scalar_one()
    )


def open_conversation(session: Session, identity: ChannelIdentity, *, now: datetime | None = None) -> Conversation:
    """The identity's current conversation, or a new one when it has none or the last is resolved.

    A conversation whose ticket was resolved within core.desk.REOPEN_WITHIN stays current: the user's next
    message is their rating, or reopens the same ticket and thread (core.desk).
    """
    conversation_id = _current_conversation(
        session,
        identity_id=identity.id,
        contact_id=identity.contact_id,
        channel=identity.channel,
        now=now or utcnow(),
    )
    conversation = session.get(Conversation, conversation_id)
    assert conversation is not None
    return conversation
