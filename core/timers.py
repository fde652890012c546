"""Timers kept as database rows: claimed with a lease so one process fires each, once, even across restarts.

A timer is fired in one transaction with whatever its handler writes (a thread post, a raised
priority): either all of it happens and the row says `fired`, or none of it and the row is
taken up again when its lease runs out. The weekly report is a timer too, scheduled one week
ahead each time, under a key naming its date so two processes scheduling it make one row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.hours import DAYS
from core.storage.database import Database
from core.storage.desk import DeskTimer

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
WEEKLY_REPORT = "weekly_report"
Handler = Callable[[Session, DeskTimer, datetime], None]
_WEEKLY = re.compile(r"^\s*([a-z]{3})\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class WeeklyTime:
    """A day of the week and a time of day, in the support timezone: ``mon 08:00``."""

    weekday: int
    at: time

    @classmethod
    def parse(cls, spec: str) -> WeeklyTime:
        match = _WEEKLY.match(spec)
        if not match or match.group(1).lower() not in DAYS:
            raise ValueError(f"expected a day and a time such as 'mon 08:00', got {spec!r}")
        return cls(DAYS.index(match.group(1).lower()), time(int(match.group(2)), int(match.group(3))))

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first such moment strictly after `moment`."""
        local = moment.astimezone(zone)
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            candidate = datetime.combine(day, self.at, tzinfo=zone)
            if day.weekday() == self.weekday and candidate > local:
                return candidate
        raise AssertionError("unreachable: every weekday comes within 8 days")


def add_timer(session: Session, *, key: str, kind: str, due_at: datetime, ticket_id: int | None = None) -> bool:
    """Schedule a timer once: False when one with `key` exists already."""
    if session.scalars(select(DeskTimer.id).where(DeskTimer.key == key)).first() is not None:
        return False
    try:
        with session.begin_nested():
            session.add(DeskTimer(key=key, kind=kind, due_at=due_at, ticket_id=ticket_id))
            session.flush()
    except IntegrityError:  # another process scheduled it at the same moment
        return False
    return True


class Timers:
    """Finds due timers, claims each with a conditional UPDATE, and fires it with its kind's handler."""

    def __init__(self, database: Database, handlers: Mapping[str, Handler]) -> None:
        self.database = database
        self.handlers = dict(handlers)

    def fire_due(self, now: datetime, *, limit: int = 50) -> int:
        """Fire every timer due at `now`; how many this process fired."""
        fired = 0
        for timer_id in self._due(now, limit):
            if self._claim(timer_id, now) and self._fire(timer_id, now):
                fired += 1
        return fired

    def schedule_weekly(self, weekly: WeeklyTime, zone: ZoneInfo, now: datetime) -> None:
        """Make sure the next weekly report is scheduled."""
        due_at = weekly.next_after(now, zone)
        with self.database.transaction() as session:
            add_timer(session, key=f"{WEEKLY_REPORT}:{due_at.date().isoformat()}", kind=WEEKLY_REPORT, due_at=due_at)

    def _due(self, now: datetime, limit: int) -> list[int]:
        query = (
            select(DeskTimer.id)
            .where(
                DeskTimer.status == "pending",
                DeskTimer.due_at <= now,
                or_(DeskTimer.leased_until.is_(None), DeskTimer.leased_until < now),
            )
            .order_by(DeskTimer.due_at, DeskTimer.id)
            .limit(limit)
        )
        with self.database.sessions() as session:
            return list(session.scalars(query))

    def _claim(self, timer_id: int, now: datetime) -> bool:
        with self.database.transaction() as session:
            taken = session.execute(
                update(DeskTimer)
                .where(
                    and_(
                        DeskTimer.id == timer_id,
                        DeskTimer.status == "pending",
                        or_(DeskTimer.leased_until.is_(None), DeskTimer.leased_until < now),
                    )
                )
                .values(leased_until=now + LEASE)
            ).rowcount
        return taken == 1

    def _fire(self, timer_id: int, now: datetime) -> bool:
        with self.database.transaction() as session:
            # Locked until this transaction ends: a process that took the timer over after a lapsed
            # lease (this one being slow, not dead) waits here, then finds it fired.
            timer = session.get(DeskTimer, timer_id, with_for_update=True)
            if timer is None or timer.status != "pending":  # cancelled or fired since it was claimed
                return False
            handler = self.handlers.get(timer.kind)
            if handler is None:
                log.error("no handler for timer kind %s", timer.kind, extra={"timer_id": timer_id})
            else:
                handler(session, timer, now)
            timer.status, timer.fired_at, timer.leased_until = "fired", now, None
        log.info("timer fired", extra={"timer_id": timer_id, "kind": timer.kind})
        return True
