"""Support figures over a period, from the stored records: volume, containment, times, satisfaction.

What counts where (all times UTC, the period is [since, until)):
- conversations: those started in the period with at least one message from the user (a
  conversation holding only a code delivery or an announcement is the system's, not a contact);
- bot containment: the share of those conversations that never got a ticket;
- tickets, first response: tickets opened in the period; first response = the first agent reply;
- resolution and first-contact resolution: tickets resolved in the period (resolution = resolved
  minus opened; first contact = never reopened);
- SLA breaches: tickets that missed their first-response target in the period;
- CSAT: ratings given in the period: the share of 4s and 5s, and the mean;
- median and p90: the median of the values (the mean of the middle two for an even count) and
  the 90th percentile by nearest rank.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from core.desk_summary import mask_numbers
from core.storage.database import Database
from core.storage.models import Conversation, Message, OutboxItem, Ticket, utcnow

TOP = 10


def support_report(
    database: Database, *, days: int = 7, now: datetime | None = None, since: datetime | None = None
) -> dict[str, Any]:
    """The figures for the last `days` days (or from `since`) up to `now`, as plain data."""
    until = now or utcnow()
    start = since or until - timedelta(days=days)
    with database.sessions() as session:
        return figures(session, since=start, until=until)


def figures(session: Session, *, since: datetime, until: datetime) -> dict[str, Any]:
    """Every figure for [since, until); see the module's docstring for what counts."""
    volume, conversations, escalated = _volume(session, since, until)
    tickets = _in_period(session, Ticket.created_at, since, until)
    resolved = [t for t in _in_period(session, Ticket.resolved_at, since, until) if t.status == "resolved"]
    rated = _in_period(session, Ticket.csat_at, since, until)
    scores = [t.csat_score for t in rated if t.csat_score is not None]
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "volume": dict(sorted(volume.items())),
        "conversations": conversations,
        "bot_containment": None if conversations == 0 else round(1 - escalated / conversations, 4),
        "tickets": dict(Counter(t.status for t in tickets)),
        "first_response_seconds": spread(
            [(t.first_response_at - t.created_at).total_seconds() for t in tickets if t.first_response_at]
        ),
        "resolution_seconds": spread(
            [(t.resolved_at - t.created_at).total_seconds() for t in resolved if t.resolved_at]
        ),
        "tickets_resolved": len(resolved),
        "first_contact_resolution": _share(sum(1 for t in resolved if t.reopened_count == 0), len(resolved)),
        "sla_breaches": len(_in_period(session, Ticket.sla_breached_at, since, until)),
        "csat": {
            "responses": len(scores),
            "satisfied": _share(sum(1 for s in scores if s >= 4), len(scores)),
            "mean": round(statistics.fmean(scores), 2) if scores else None,
        },
        "top_faq_topics": _top_topics(session, since, until),
        "top_unanswered": _top_unanswered(session, since, until),
        "delivery": _delivery(session, since, until),
    }


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """How many, the median and the 90th percentile (nearest rank), in the values' unit."""
    if not values:
        return {"n": 0, "median": None, "p90": None}
    ordered = sorted(values)
    p90 = ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]
    return {"n": len(ordered), "median": round(statistics.median(ordered), 1), "p90": round(p90, 1)}


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _in_period(session: Session, column: Any, since: datetime, until: datetime) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(column >= since, column < until)))


def _volume(session: Session, since: datetime, until: datetime) -> tuple[dict[str, dict[str, int]], int, int]:
    """Per channel: conversations, tickets, messages in and out; and the totals containment needs."""
    volume: dict[str, dict[str, int]] = defaultdict(
        lambda: {"conversations": 0, "tickets": 0, "messages_in": 0, "messages_out": 0}
    )
    has_inbound = exists().where(Message.conversation_id == Conversation.id, Message.direction == "in")
    has_ticket = exists().where(Ticket.conversation_id == Conversation.id)
    started = select(Conversation.channel, has_ticket).where(
        Conversation.created_at >= since, Conversation.created_at < until, has_inbound
    )
    escalated = 0
    for channel, ticketed in session.execute(started):
        volume[channel]["conversations"] += 1
        escalated += int(bool(ticketed))
    ticket_channels = select(Conversation.channel, func.count()).join(Ticket, Ticket.conversation_id == Conversation.id)
    for channel, count in session.execute(
        ticket_channels.where(Ticket.created_at >= since, Ticket.created_at < until).group_by(Conversation.channel)
    ):
        volume[channel]["tickets"] = count
    for channel, direction, count in session.execute(
        select(Message.channel, Message.direction, func.count())
        .where(Message.created_at >= since, Message.created_at < until)
        .group_by(Message.channel, Message.direction)
    ):
        volume[channel]["messages_in" if direction == "in" else "messages_out"] = count
    return volume, sum(v["conversations"] for v in volume.values()), escalated


def _inbound_details(session: Session, since: datetime, until: datetime) -> list[tuple[str, dict[str, Any]]]:
    query = select(Message.text, Message.details).where(
        Message.direction == "in", Message.created_at >= since, Message.created_at < until
    )
    return [(text, details or {}) for text, details in session.execute(query)]


def _top_topics(session: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    counts = Counter(
        str(details["topic"])
        for _text, details in _inbound_details(session, since, until)
        if details.get("decision") == "answer" and details.get("topic")
    )
    return [{"topic": topic, "count": count} for topic, count in _ranked(counts)]


_PUNCTUATION = re.compile(r"[\s?!.,;:]+$")


def _top_unanswered(session: Session, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The questions the matcher had no answer for, grouped by their wording (case and spacing aside)."""
    counts = Counter(
        _PUNCTUATION.sub("", " ".join(mask_numbers(text).casefold().split()))
        for text, details in _inbound_details(session, since, until)
        if details.get("decision") == "unknown" and text.strip()
    )
    return [{"question": question, "count": count} for question, count in _ranked(counts)]


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most frequent first, ties alphabetically, at most TOP."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP]


def _delivery(session: Session, since: datetime, until: datetime) -> dict[str, dict[str, int]]:
    delivery: dict[str, dict[str, int]] = defaultdict(dict)
    for channel, status, count in session.execute(
        select(OutboxItem.channel, OutboxItem.status, func.count())
        .where(OutboxItem.created_at >= since, OutboxItem.created_at < until)
        .group_by(OutboxItem.channel, OutboxItem.status)
    ):
        delivery[channel][status] = count
    return dict(sorted(delivery.items()))
