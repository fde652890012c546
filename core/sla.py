"""Service levels: first-response targets per channel, counted in support hours, and their timers.

The support policy's targets (live chat 2 minutes, social media 3 hours, and SMS 4 hours) count
only while the desk is open: a message at 16:30 on an SMS with the desk closing at 17:00 is due
at 11:30 the next working day. At 80% of the target the ticket's thread gets a reminder; at
100% the on-duty group is mentioned and the ticket's priority rises. Both are rows in
`desk_timers` (see core.timers), so they survive restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import desk_posts, texts
from core.handoff import ACTIVE, Priority
from core.hours import SupportHours
from core.storage.desk import DeskTimer
from core.storage.models import Conversation, Ticket
from core.timers import add_timer

log = logging.getLogger(__name__)

LIVE_CHAT = timedelta(minutes=2)
# The policy's first-response targets (shared/policy, "Support Availability and Service Levels").
DEFAULT_TARGETS: dict[str, timedelta] = {
    "telegram": LIVE_CHAT,
    "whatsapp": LIVE_CHAT,
    "slack": LIVE_CHAT,
    "api": LIVE_CHAT,
    "web": LIVE_CHAT,
    "console": LIVE_CHAT,
    "x": timedelta(hours=3),
    "sms": timedelta(hours=4),
    "email": timedelta(hours=24),
}
REMINDER_SHARE = 0.8
REMINDER, BREACH = "sla_reminder", "sla_breach"


@dataclass(frozen=True)
class ServiceLevels:
    """First-response targets by channel (unknown channels: live chat's) within support hours."""

    hours: SupportHours
    targets: Mapping[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_TARGETS))

    def target(self, channel: str) -> timedelta:
        return self.targets.get(channel, DEFAULT_TARGETS.get(channel, LIVE_CHAT))

    def due(self, channel: str, start: datetime, *, share: float = 1.0) -> datetime:
        """When `share` of the channel's target has passed, counting open hours only."""
        return add_open_time(self.hours, start, self.target(channel) * share)


def add_open_time(hours: SupportHours, start: datetime, duration: timedelta) -> datetime:
    """`start` plus `duration` of the desk's open time (closed evenings and weekends do not count)."""
    moment, left = hours.next_opening(start), duration
    for _ in range(3660):  # ten years of days: a bound, never reached with sane hours
        closes = datetime.combine(moment.date(), hours.closes, tzinfo=hours.zone)
        if moment + left <= closes:
            return moment + left
        left -= closes - moment
        moment = hours.next_opening(closes)
    raise ValueError("the support hours leave no time to count")


def describe(duration: timedelta) -> str:
    """A duration in words: "2 minutes", "3 hours", "1 hour 30 minutes"."""
    minutes = int(duration.total_seconds() // 60)
    if minutes < 1:
        return f"{int(duration.total_seconds())} seconds"
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def schedule(session: Session, ticket: Ticket, levels: ServiceLevels, *, channel: str, start: datetime) -> None:
    """The reminder and breach timers for the wait that began at `start` (once per wait)."""
    stamp = int(start.timestamp())
    for kind, share in ((REMINDER, REMINDER_SHARE), (BREACH, 1.0)):
        due_at = levels.due(channel, start, share=share)
        add_timer(session, key=f"{kind}:{ticket.id}:{stamp}", kind=kind, due_at=due_at, ticket_id=ticket.id)


def cancel(session: Session, ticket: Ticket) -> None:
    """A person answered, or the ticket closed: its pending service-level timers will not fire."""
    session.execute(
        update(DeskTimer)
        .where(DeskTimer.ticket_id == ticket.id, DeskTimer.status == "pending", DeskTimer.kind.in_((REMINDER, BREACH)))
        .values(status="cancelled")
    )


def _still_waiting(ticket: Ticket | None) -> bool:
    return ticket is not None and ticket.status in ACTIVE and ticket.waiting_since is not None


def remind(session: Session, timer: DeskTimer, levels: ServiceLevels, now: datetime) -> None:
    """80% of the target gone and nobody has answered: say so in the thread."""
    ticket = session.get(Ticket, timer.ticket_id) if timer.ticket_id else None
    if not _still_waiting(ticket):
        return
    assert ticket is not None
    channel = _channel(session, ticket)
    due = levels.due(channel, ticket.waiting_since or now)
    text = texts.DESK_SLA_REMINDER.format(
        reference=ticket.reference,
        target=describe(levels.target(channel)),
        due=f"{due.astimezone(levels.hours.zone):%H:%M}",
    )
    desk_posts.thread(session, ticket, text)


def breach(session: Session, timer: DeskTimer, levels: ServiceLevels, now: datetime) -> None:
    """The target passed with no answer: mention the on-duty group and raise the priority."""
    ticket = session.get(Ticket, timer.ticket_id) if timer.ticket_id else None
    if not _still_waiting(ticket):
        return
    assert ticket is not None
    ticket.sla_breached_at = ticket.sla_breached_at or now
    ticket.priority = Priority(ticket.priority).raised().value
    channel = _channel(session, ticket)
    text = texts.DESK_SLA_BREACH.format(
        reference=ticket.reference, target=describe(levels.target(channel)), priority=ticket.priority
    )
    desk_posts.thread(session, ticket, text, alert=True)
    desk_posts.refresh(session, ticket)
    log.warning("first-response target missed", extra={"ticket": ticket.reference, "channel": channel})


def _channel(session: Session, ticket: Ticket) -> str:
    conversation = session.get(Conversation, ticket.conversation_id)
    assert conversation is not None
    return conversation.channel
