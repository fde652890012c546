"""The desk's tables: posts to Slack waiting to go, relayed agent replies, timers, incidents, announcements.

`desk_posts` is the desk's own outbox: every parent message, thread note and parent update is
written in the transaction that decided it and sent afterwards, so a crash loses none and two
processes never send one twice (a lease, as in the user outbox). `desk_timers` are the
service-level reminders and the weekly report: rows, claimed with a lease, fired once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.storage.models import Base, utcnow


class DeskPost(Base):
    """One message for the agents' channel: a ticket's parent, a note in its thread, or a parent refresh.

    `kind`: parent (the one message per ticket), thread (a line in its thread), refresh (the
    parent redrawn from the ticket's state) or channel (top-level, no ticket: reports, notices).
    `text` is Markdown; `alert` asks the sender to mention the on-duty group.
    """

    __tablename__ = "desk_posts"
    __table_args__ = (Index("ix_desk_posts_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text, default="")
    alert: Mapped[bool] = mapped_column(default=False)
    # Makes a post written on behalf of a Slack event idempotent across Slack's retries.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    leased_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class DeskRelay(Base):
    """An agent's thread reply passed to the user; unique per Slack message, so a retry relays nothing."""

    __tablename__ = "desk_relays"
    __table_args__ = (UniqueConstraint("slack_channel", "slack_ts"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    slack_channel: Mapped[str] = mapped_column(String(32))
    slack_ts: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str] = mapped_column(String(32))
    # The user's copy; None when it could not be sent at all (the thread was told at once).
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # sent, not_delivered: what the thread was told, once the outbox knew it
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeskTimer(Base):
    """A moment the desk must act at: a service-level reminder or breach, or the weekly report.

    `key` names the occasion once (``sla_breach:12:0``, ``weekly_report:2026-02-02``), so a timer
    scheduled twice, by two processes, is one row.
    """

    __tablename__ = "desk_timers"
    __table_args__ = (Index("ix_desk_timers_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # sla_reminder, sla_breach, weekly_report
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, fired, cancelled
    leased_until: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeskAction(Base):
    """The audit trail of what agents did on the desk, and who did it."""

    __tablename__ = "desk_actions"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    agent_id: Mapped[str] = mapped_column(String(32))
    agent_name: Mapped[str | None] = mapped_column(String(100))
    # claim, resolve, back_to_bot, reply, note, status_set, status_clear, announce, refused
    action: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(Base):
    """A current-incident note (`/saypro status TEXT`), shown above the bot's answers until cleared."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    set_by_id: Mapped[str] = mapped_column(String(32))
    set_by_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[datetime | None]
    cleared_by_id: Mapped[str | None] = mapped_column(String(32))
    cleared_by_name: Mapped[str | None] = mapped_column(String(100))


class Announcement(Base):
    """A message to everyone who wrote lately (`/saypro announce`), drafted, then confirmed and sent."""

    __tablename__ = "announcements"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft, sent, cancelled
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)  # channel -> people, when drafted
    created_by_id: Mapped[str] = mapped_column(String(32))
    created_by_name: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[str | None] = mapped_column(String(32))
    decided_by_name: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None]
    queued: Mapped[int] = mapped_column(Integer, default=0)  # messages written to the outbox
    as_template: Mapped[int] = mapped_column(Integer, default=0)  # of those, WhatsApp templates
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # outside the window with no template
