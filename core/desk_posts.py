"""The desk's outbox: messages for the agents' channel, written with the change they report, sent later.

Posts of one ticket go strictly in order (its parent first, then its thread), and a post is
claimed with a lease before it is sent, as in core.outbox, so two processes never post one
twice and a post whose sender died is taken up again when its lease runs out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.storage.database import Database
from core.storage.desk import DeskPost
from core.storage.models import Ticket

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=60)


class PostKind:
    PARENT = "parent"  # the ticket's one message in the agents' channel
    THREAD = "thread"  # a line in the parent's thread
    REFRESH = "refresh"  # the parent redrawn from the ticket's current state
    CHANNEL = "channel"  # a top-level message with no ticket (reports, notices)


def post(
    session: Session,
    kind: str,
    text: str = "",
    *,
    ticket: Ticket | None = None,
    alert: bool = False,
    dedupe_key: str | None = None,
) -> DeskPost | None:
    """Queue one post; None when a post with `dedupe_key` was queued before (a retried event)."""
    row = DeskPost(kind=kind, text=text, ticket_id=ticket.id if ticket else None, alert=alert, dedupe_key=dedupe_key)
    if dedupe_key is None:
        session.add(row)
        session.flush()
        return row
    if session.scalars(select(DeskPost.id).where(DeskPost.dedupe_key == dedupe_key)).first() is not None:
        return None
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # the same event, handled at the same moment by another request
        return None
    return row


def thread(session: Session, ticket: Ticket, text: str, *, alert: bool = False, dedupe_key: str | None = None) -> None:
    """A line in the ticket's thread."""
    post(session, PostKind.THREAD, text, ticket=ticket, alert=alert, dedupe_key=dedupe_key)


def refresh(session: Session, ticket: Ticket) -> None:
    """Redraw the ticket's parent (status, assignee, priority); one pending refresh is enough."""
    pending = select(DeskPost.id).where(
        DeskPost.ticket_id == ticket.id,
        DeskPost.kind == PostKind.REFRESH,
        DeskPost.status == "pending",
        DeskPost.leased_until.is_(None),
    )
    if session.scalars(pending).first() is None:
        post(session, PostKind.REFRESH, ticket=ticket)


def has_parent(session: Session, ticket: Ticket) -> bool:
    """Whether the ticket's parent message is posted or on its way."""
    if ticket.desk_ts:
        return True
    query = select(DeskPost.id).where(
        DeskPost.ticket_id == ticket.id, DeskPost.kind == PostKind.PARENT, DeskPost.status != "dead"
    )
    return session.scalars(query).first() is not None


@dataclass(frozen=True)
class Claimed:
    """A post taken for sending: what to send, and where its ticket's parent is."""

    id: int
    kind: str
    text: str
    alert: bool
    ticket_id: int | None
    parent_channel: str | None
    parent_ts: str | None


def due(database: Database, now: datetime, *, limit: int = 50) -> list[int]:
    """Posts ready to go, oldest first; a post waits while an earlier one of its ticket is pending."""
    earlier = aliased(DeskPost)
    blocked = exists().where(
        earlier.ticket_id == DeskPost.ticket_id, earlier.status == "pending", earlier.id < DeskPost.id
    )
    query = (
        select(DeskPost.id)
        .where(
            DeskPost.status == "pending",
            DeskPost.next_attempt_at <= now,
            or_(DeskPost.leased_until.is_(None), DeskPost.leased_until < now),
            ~blocked,
        )
        .order_by(DeskPost.id)
        .limit(limit)
    )
    with database.sessions() as session:
        return list(session.scalars(query))


def claim(database: Database, post_id: int, now: datetime) -> Claimed | None:
    """Take one post for sending with a conditional UPDATE; None if someone else has it."""
    with database.transaction() as session:
        taken = session.execute(
            update(DeskPost)
            .where(
                and_(
                    DeskPost.id == post_id,
                    DeskPost.status == "pending",
                    or_(DeskPost.leased_until.is_(None), DeskPost.leased_until < now),
                )
            )
            .values(leased_until=now + LEASE)
        ).rowcount
        if taken != 1:
            return None
        row = session.get(DeskPost, post_id)
        assert row is not None
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        return Claimed(
            row.id,
            row.kind,
            row.text,
            row.alert,
            row.ticket_id,
            ticket.desk_channel if ticket else None,
            ticket.desk_ts if ticket else None,
        )


def sent(database: Database, claimed: Claimed, *, ts: str | None, channel: str, now: datetime) -> None:
    """Record a post as sent; a parent's ts becomes its ticket's thread."""
    with database.transaction() as session:
        row = session.get(DeskPost, claimed.id)
        assert row is not None
        row.status, row.slack_ts, row.sent_at, row.leased_until = "sent", ts, now, None
        row.attempts += 1
        if claimed.kind == PostKind.PARENT and claimed.ticket_id is not None:
            ticket = session.get(Ticket, claimed.ticket_id)
            assert ticket is not None
            ticket.desk_channel, ticket.desk_ts = channel, ts


def failed(
    database: Database,
    claimed: Claimed,
    error: str,
    *,
    now: datetime,
    permanent: bool,
    retry_after: float | None = None,
) -> str:
    """Record a failed attempt: retried with backoff, or dead; the row's new status."""
    with database.transaction() as session:
        row = session.get(DeskPost, claimed.id)
        assert row is not None
        row.attempts += 1
        row.leased_until, row.last_error = None, error[:500]
        if permanent or row.attempts >= MAX_ATTEMPTS:
            row.status = "dead"
        else:
            delay = retry_after if retry_after is not None else min(2.0 * 2 ** (row.attempts - 1), 300.0)
            row.next_attempt_at = now + timedelta(seconds=delay * random.uniform(0.8, 1.0))
        return row.status
