"""The outbox's statements, built once with bound parameters, and a stored template read back.

Every reply is leased, checked and settled through these (core.outbox), so they are built once
(core.conversation_rows says why) and on the tables rather than the mapped classes: a statement on
a mapped class costs more to run (an UPDATE through the ORM about five times as much), and these
return plain rows.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, exists, func, literal_column, or_, select, update

from core.messages import Template
from core.storage.models import ChannelIdentity, OutboxItem

_outbox, _identities = OutboxItem.__table__, ChannelIdentity.__table__


def lease_free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """No lease on the row, or one that has run out."""
    return or_(_outbox.c.leased_until.is_(None), _outbox.c.leased_until < now)


@cache  # built once: a new alias per call costs more than the query it goes into (bench/load.py)
def behind_a_pending_row() -> ColumnElement[bool]:
    """An earlier row of the same conversation is still pending: this one must wait for it."""
    earlier = _outbox.alias("earlier")
    return exists().where(
        earlier.c.conversation_id == _outbox.c.conversation_id,
        earlier.c.status == "pending",
        earlier.c.id < _outbox.c.id,
    )


def _recipients(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`column` of the identity an outbox row goes to, for the row's RETURNING (NULL without one).

    The row's columns are named with their table: SQLAlchemy writes SQLite's RETURNING columns
    without it, and inside the subquery `channel` alone would be the identity's own.
    """
    return (
        select(column)
        .where(
            _identities.c.channel == literal_column("outbox.channel"),
            _identities.c.user_id == literal_column("outbox.user_id"),
        )
        .scalar_subquery()
    )


def _lease(rows: ColumnElement[bool]) -> Any:
    """A lease: the same conditions as a due row's claim (core.outbox's `_due_query`), on `rows`."""
    return (
        update(_outbox)
        .where(rows, _outbox.c.status == "pending", lease_free(bindparam("now")), ~behind_a_pending_row())
        .values(leased_until=bindparam("lease"))
        .returning(*_outbox.c)
    )


def _and_reach(lease: Any) -> Any:
    """The lease returning too what core.outbox's `_refusal` asks of the recipient (REACH): one
    statement instead of two, on PostgreSQL. SQLite reads a table in a RETURNING subquery whole,
    without its index (EXPLAIN QUERY PLAN, SQLite 3.40), so it runs the two."""
    return lease.returning(
        _recipients(_identities.c.id).label("recipient_id"),
        _recipients(_identities.c.unreachable_at).label("recipient_unreachable_at"),
        _recipients(_identities.c.last_seen_at).label("recipient_last_seen_at"),
    )


# One row, and several (a batch of answers' first rows, core.outbox's `lease_all`).
LEASE = _lease(_outbox.c.id == bindparam("item_id"))
LEASE_AND_REACH = _and_reach(LEASE)
LEASE_ALL = _lease(_outbox.c.id.in_(bindparam("item_ids", expanding=True)))
LEASE_ALL_AND_REACH = _and_reach(LEASE_ALL)
REACH = select(_identities.c.unreachable_at, _identities.c.last_seen_at).where(
    _identities.c.channel == bindparam("channel"), _identities.c.user_id == bindparam("user_id")
)
# Sent: a secret's row keeps its `after_send_text` from now on, as OutboxItem's status validator
# does for rows changed through the ORM.
SENT = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("item_id"))
    .values(
        status="sent",
        sent_at=bindparam("now"),
        leased_until=None,
        attempts=_outbox.c.attempts + 1,
        receipt_id=bindparam("receipt_id"),
        text=func.coalesce(_outbox.c.after_send_text, _outbox.c.text),
    )
)


def template_of(record: dict[str, Any] | None) -> Template | None:
    """The template an outbox row stores (OutboxItem.template), as a message carries it."""
    if not record:
        return None
    return Template(record["content_id"], tuple((str(k), str(v)) for k, v in record.get("variables", [])))
