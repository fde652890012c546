"""Conversation rows: a user's identity and contact, their current conversation, and the messages
in it, inbound and outbound with the outbox rows that send them.

Every message that comes in or goes out is written here, so rows are inserted with single
statements built once with bound parameters, not through the ORM's unit of work: building a
statement and its cache key costs more than executing it (bench/README.md, "Where the time goes").
core.inbox stores and answers through these; the desk, status look-ups, announcements and
proactive updates write their messages through `write_outbound`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.conversations import State
from core.desk import REOPEN_WITHIN, RESOLVED_TICKET_ID
from core.messages import Capabilities, InboundMessage, OutboundMessage, Template
from core.render import Part, render
from core.storage.models import ChannelIdentity, Contact, Conversation, Message, OutboxItem, utcnow

_IDENTITY = select(ChannelIdentity).where(
    ChannelIdentity.channel == bindparam("channel"), ChannelIdentity.user_id == bindparam("user_id")
)
# Where the statements of this module run: a session, or a plain connection (Inbox.receive).
Rows = Session | Connection
_contacts, _identities = Contact.__table__, ChannelIdentity.__table__
_conversations, _messages, _outbox = Conversation.__table__, Message.__table__, OutboxItem.__table__
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
_INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
_INSERT_OUTBOX = insert(_outbox).returning(_outbox.c.id)


def _set(table: Any, *columns: str, prefix: str = "new_") -> dict[str, Any]:
    """SET (or VALUES) clauses for `columns`, each bound to a parameter named after its column with
    `prefix` (a parameter named as its column is reserved in an UPDATE), typed as its column."""
    return {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in columns}


# Written for every message: the identity seen, the inbound message answered, the conversation's turn.
_ANSWERED = (
    update(_messages)
    .where(_messages.c.id == bindparam("row_id"))
    .values(_set(_messages, "processed_at", "details", "text"))
)
_SEEN = (
    update(_identities)
    .where(_identities.c.id == bindparam("row_id"))
    .values(_set(_identities, "last_seen_at", "unreachable_at", "display_name"))
)
_TURN = (
    update(_conversations)
    .where(_conversations.c.id == bindparam("row_id"))
    .values(_set(_conversations, "misses", "last_topic", "pending_options"))
)


# PostgreSQL takes INSERTs and UPDATEs as WITH clauses of another statement, so that rows written
# together cost one statement. Each part's parameters are prefixed apart, and created_at is given
# (SQLAlchemy would name two tables' created_at alike).
def _insert_row(table: Any, prefix: str, *columns: str, **earlier: Any) -> Any:
    """An INSERT of one row into `table`: `columns` bound as `_set` binds them, and the columns in
    `earlier` set from the row of an earlier WITH clause (its column given)."""
    return insert(table).values(
        {
            **{name: select(column).scalar_subquery() for name, column in earlier.items()},
            **_set(table, *columns, prefix=prefix),
        }
    )


# An answer of one reply in one part (write_answer): _ANSWERED, _TURN and the reply's record as
# WITH clauses of the INSERT of its outbox row. Every column with a default is given: with UPDATEs
# in the statement, SQLAlchemy leaves the INSERTs' defaults unset.
_REPLY = (
    _insert_row(
        _messages,
        "reply_",
        *("conversation_id", "direction", "author", "channel", "text", "options"),
        *("attachments", "details", "sent_at", "created_at"),
    )
    .returning(_messages.c.id)
    .cte("reply")
)
_ANSWER = (
    _insert_row(
        _outbox,
        "part_",
        *("conversation_id", "part", "channel", "user_id", "text", "options", "template", "after_send_text"),
        *("status", "attempts", "next_attempt_at", "created_at"),
        message_id=_REPLY.c.id,
    )
    .returning(_outbox.c.id)
    .add_cte(
        update(_messages)
        .where(_messages.c.id == bindparam("inbound_id"))
        .values(_set(_messages, "processed_at", "details", "text", prefix="answered_"))
        .cte("answered"),
        update(_conversations)
        .where(_conversations.c.id == bindparam("conversation_row_id"))
        .values(_set(_conversations, "misses", "last_topic", "pending_options", "updated_at", prefix="turn_"))
        .cte("turn"),
    )
)
# A new user's first message (store_inbound): their contact, identity and conversation as WITH
# clauses of the message's INSERT.
_NEW_CONTACT = (
    _insert_row(_contacts, "contact_", "display_name", "created_at").returning(_contacts.c.id).cte("new_contact")
)
_NEW_IDENTITY = (
    _insert_row(
        _identities,
        "identity_",
        *("channel", "user_id", "display_name", "last_seen_at", "created_at"),
        contact_id=_NEW_CONTACT.c.id,
    )
    .returning(_identities.c.id, _identities.c.contact_id)
    .cte("new_identity")
)
_NEW_CONVERSATION = (
    _insert_row(
        _conversations,
        "conversation_",
        *("channel", "created_at"),
        contact_id=_NEW_IDENTITY.c.contact_id,
        identity_id=_NEW_IDENTITY.c.id,
    )
    .returning(_conversations.c.id)
    .cte("new_conversation")
)
_FIRST_MESSAGE = _insert_row(
    _messages,
    "message_",
    *("direction", "author", "channel", "provider_message_id", "text", "attachments", "sent_at", "created_at"),
    conversation_id=_NEW_CONVERSATION.c.id,
).returning(_messages.c.id, _messages.c.conversation_id)
# The databases on which those statements are used (the others write a statement a row).
ONE_STATEMENT_DIALECTS = ("postgresql",)
# What _ANSWER gives the columns that have defaults (`now`: the moment, for those that are one).
_REPLY_DEFAULTS = {"attachments": [], "details": {}}
_PART_DEFAULTS = {"status": "pending", "attempts": 0}


def write_outbound(
    session: Session,
    conversation: Conversation,
    message: OutboundMessage,
    *,
    capabilities: Capabilities,
    author: str = "bot",
    redacted: str | None = None,
) -> list[int]:
    """Record one outbound message and queue its rendered parts; the ids of the outbox rows.

    With `redacted` the text is a secret (a one-time code): the message record keeps `redacted`
    from the start, and each outbox row holds the secret only while it waits to be sent.
    """
    return _queue(session, conversation.id, Outgoing(message, redacted), render(message, capabilities), author=author)


@dataclass(frozen=True)
class Outgoing:
    """An outbound message to record and queue; `redacted` as in `write_outbound`."""

    message: OutboundMessage
    redacted: str | None = None


def write_answer(
    session: Session,
    conversation: Conversation,
    inbound: Message,
    *,
    answered: dict[str, Any],
    turn: dict[str, Any],
    replies: list[Outgoing],
    capabilities: Capabilities,
) -> list[int]:
    """Record an answer: the inbound message as answered (`answered`: its processed_at, details
    and text), the conversation's turn (`turn`: its misses, last_topic and pending_options), and
    the replies, recorded and queued; the ids of the outbox rows.

    On PostgreSQL the usual answer, one reply in one part, is one statement (`_ANSWER`) where it
    would be four: every answer comes through here, and each statement costs the worker more
    than its rows do. Otherwise, and on SQLite (which has no INSERT or UPDATE in a WITH clause),
    a statement each.
    """
    parts = [render(reply.message, capabilities) for reply in replies]
    if len(parts) == 1 and len(parts[0]) == 1 and _dialect(session) in ONE_STATEMENT_DIALECTS:
        params = _answer_params(conversation.id, inbound.id, answered, turn, replies[0], parts[0][0])
        item_id: int = session.execute(_ANSWER, params).scalar_one()
        _committed(inbound, answered)
        _committed(conversation, turn)
        return [item_id]
    _write(session, _TURN, conversation, turn)
    _write(session, _ANSWERED, inbound, answered)
    return [
        item_id
        for reply, rendered in zip(replies, parts, strict=True)
        for item_id in _queue(session, conversation.id, reply, rendered)
    ]


def _answer_params(
    conversation_id: int, inbound_id: int, answered: dict[str, Any], turn: dict[str, Any], reply: Outgoing, part: Part
) -> dict[str, Any]:
    """_ANSWER's parameters, for `write_answer` of one reply in one part."""
    now = utcnow()
    times, part_times = {"sent_at": now, "created_at": now}, {"next_attempt_at": now, "created_at": now}
    return {
        "inbound_id": inbound_id,
        "conversation_row_id": conversation_id,
        **_prefixed("answered_", answered),
        **_prefixed("turn_", {**turn, "updated_at": now}),
        **_prefixed("reply_", {**_record(conversation_id, reply, author="bot"), **_REPLY_DEFAULTS, **times}),
        **_prefixed("part_", {**_part(conversation_id, reply, 1, part), **_PART_DEFAULTS, **part_times}),
    }


def _queue(
    session: Session, conversation_id: int, outgoing: Outgoing, parts: list[Part], *, author: str = "bot"
) -> list[int]:
    """Record an outbound message and queue its rendered `parts`, a statement each."""
    # Single INSERT statements, not the unit of work: every answer comes through here.
    record_id = session.execute(_INSERT_MESSAGE, _record(conversation_id, outgoing, author=author)).scalar_one()
    return [
        session.execute(
            _INSERT_OUTBOX, {"message_id": record_id, **_part(conversation_id, outgoing, number, part)}
        ).scalar_one()
        for number, part in enumerate(parts, start=1)
    ]


def _record(conversation_id: int, outgoing: Outgoing, *, author: str) -> dict[str, Any]:
    """The columns of an outbound message's record."""
    message = outgoing.message
    return {
        "conversation_id": conversation_id,
        "direction": "out",
        "author": author,
        "channel": message.channel,
        "text": message.text if outgoing.redacted is None else outgoing.redacted,
        "options": [{"label": o.label, "value": o.value} for o in message.options],
    }


def _part(conversation_id: int, outgoing: Outgoing, number: int, part: Part) -> dict[str, Any]:
    """The columns of the outbox row of a message's part `number` (but its message_id)."""
    message = outgoing.message
    return {
        "conversation_id": conversation_id,
        "part": number,
        "channel": message.channel,
        "user_id": message.user_id,
        "text": part.text,
        "options": [{"label": o.label, "value": o.value} for o in part.options],
        "template": _template_record(message.template),
        "after_send_text": outgoing.redacted,
    }


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in values.items()}


def _write(session: Session, statement: Any, instance: Message | Conversation, values: dict[str, Any]) -> None:
    """One UPDATE built once, instead of the unit of work's flush for every answer, and the values
    set on the loaded instance as its committed state: the session neither writes them again nor
    counts them as changes, and reads them back as written."""
    _update(session, statement, instance.id, values)
    _committed(instance, values)


def _committed(instance: Message | Conversation, values: dict[str, Any]) -> None:
    for key, value in values.items():
        set_committed_value(instance, key, value)


def _update(session: Rows, statement: Any, row_id: int, values: dict[str, Any]) -> None:
    """Run an UPDATE made with `_set` on one row: `values` by column name."""
    session.execute(statement, {"row_id": row_id, **{f"new_{key}": value for key, value in values.items()}})


def _template_record(template: Template | None) -> dict[str, object] | None:
    if template is None:
        return None
    return {"content_id": template.content_id, "variables": [list(pair) for pair in template.variables]}


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
    this runs for every message that comes in. `arrival`: what `look_up_arrival` found, if it ran."""
    sender = (arrival or look_up_arrival(session, message)).sender
    if sender is None and _dialect(session) in ONE_STATEMENT_DIALECTS:
        return _first_message(session, message)
    if sender is None:
        conversation_id = _new_user(session, message)
    else:
        _seen(session, sender, message)
        latest = (sender.latest_id, sender.latest_state) if sender.latest_id is not None else None
        conversation_id = _continue_or_open(
            session, latest, identity_id=sender.id, contact_id=sender.contact_id, channel=message.channel, now=now
        )
    message_id = session.execute(
        _INSERT_MESSAGE, {"conversation_id": conversation_id, **_inbound(message)}
    ).scalar_one()
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
            **_prefixed("contact_", {**_new_contact(message), "created_at": now}),
            **_prefixed("identity_", {**_new_identity(message), "created_at": now}),
            **_prefixed("conversation_", {"channel": message.channel, "created_at": now}),
            **_prefixed("message_", {**_inbound(message), "created_at": now}),
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


def _dialect(rows: Rows) -> str:
    """The name of the database the rows are on (postgresql, sqlite)."""
    return (rows.get_bind() if isinstance(rows, Session) else rows).dialect.name


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


def _seen(session: Rows, identity: Row[Any], message: InboundMessage) -> None:
    """A known identity just wrote: when, that it can be reached again (they just wrote to us),
    and its current name."""
    last_seen = identity.last_seen_at
    if last_seen is None or message.sent_at > last_seen:
        last_seen = message.sent_at
    name = message.display_name or identity.display_name
    if (last_seen, name) != (identity.last_seen_at, identity.display_name) or identity.unreachable_at is not None:
        _update(session, _SEEN, identity.id, {"last_seen_at": last_seen, "unreachable_at": None, "display_name": name})


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
