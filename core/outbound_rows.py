"""Outbound rows: the record of each message the bot or the desk sends, its outbox rows, and an
answer's writes (the inbound message answered, the conversation's turn, the reply).

core.inbox answers through `write_answer`; the desk, status look-ups, announcements and proactive
updates write their messages through `write_outbound`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.messages import Capabilities, OutboundMessage, Template
from core.render import Part, render
from core.row_statements import INSERT_MESSAGE, insert_row, one_statement, prefixed, row_update, run_update
from core.storage.models import Conversation, Message, OutboxItem, utcnow

_conversations, _messages, _outbox = Conversation.__table__, Message.__table__, OutboxItem.__table__
_INSERT_OUTBOX = insert(_outbox).returning(_outbox.c.id)

# Written for every message: the inbound message answered, the conversation's turn.
_ANSWERED = row_update(_messages, "processed_at", "details", "text")
_TURN = row_update(_conversations, "misses", "last_topic", "pending_options")


# An answer of one reply in one part (write_answer): _ANSWERED, _TURN and the reply's record as
# WITH clauses of the INSERT of its outbox row. Every column with a default is given: with UPDATEs
# in the statement, SQLAlchemy leaves the INSERTs' defaults unset.
_REPLY = (
    insert_row(
        _messages,
        "reply_",
        *("conversation_id", "direction", "author", "channel", "text", "options"),
        *("attachments", "details", "sent_at", "created_at"),
    )
    .returning(_messages.c.id)
    .cte("reply")
)
_ANSWER = (
    insert_row(
        _outbox,
        "part_",
        *("conversation_id", "part", "channel", "user_id", "text", "options", "template", "after_send_text"),
        *("status", "attempts", "next_attempt_at", "created_at"),
        message_id=_REPLY.c.id,
    )
    .returning(_outbox.c.id)
    .add_cte(
        row_update(_messages, "processed_at", "details", "text", prefix="answered_", row_id="inbound_id").cte(
            "answered"
        ),
        row_update(
            _conversations,
            *("misses", "last_topic", "pending_options", "updated_at"),
            prefix="turn_",
            row_id="conversation_row_id",
        ).cte("turn"),
    )
)
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
    if len(parts) == 1 and len(parts[0]) == 1 and one_statement(session):
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
        **prefixed("answered_", answered),
        **prefixed("turn_", {**turn, "updated_at": now}),
        **prefixed("reply_", {**_record(conversation_id, reply, author="bot"), **_REPLY_DEFAULTS, **times}),
        **prefixed("part_", {**_part(conversation_id, reply, 1, part), **_PART_DEFAULTS, **part_times}),
    }


def _queue(
    session: Session, conversation_id: int, outgoing: Outgoing, parts: list[Part], *, author: str = "bot"
) -> list[int]:
    """Record an outbound message and queue its rendered `parts`, a statement each."""
    # Single INSERT statements, not the unit of work: every answer comes through here.
    record_id = session.execute(INSERT_MESSAGE, _record(conversation_id, outgoing, author=author)).scalar_one()
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


def _write(session: Session, statement: Any, instance: Message | Conversation, values: dict[str, Any]) -> None:
    """One UPDATE built once, instead of the unit of work's flush for every answer, and the values
    set on the loaded instance as its committed state: the session neither writes them again nor
    counts them as changes, and reads them back as written."""
    run_update(session, statement, instance.id, values)
    _committed(instance, values)


def _committed(instance: Message | Conversation, values: dict[str, Any]) -> None:
    for key, value in values.items():
        set_committed_value(instance, key, value)


def _template_record(template: Template | None) -> dict[str, object] | None:
    if template is None:
        return None
    return {"content_id": template.content_id, "variables": [list(pair) for pair in template.variables]}
