"""Support hours such as ``mon-fri 08:00-17:00`` in a timezone: whether the desk is open, and when it opens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", re.IGNORECASE
)


@dataclass(frozen=True)
class SupportHours:
    """Days of the week (0 = Monday) and the daily opening and closing time, in `zone`."""

    days: frozenset[int]
    opens: time
    closes: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, zone: ZoneInfo) -> SupportHours:
        """Read ``mon-fri 08:00-17:00``; ValueError says what is wrong."""
        match = _SPEC.match(spec)
        if not match:
            raise ValueError(f"expected a form like 'mon-fri 08:00-17:00', got {spec!r}")
        first, last, h1, m1, h2, m2 = match.groups()
        start, end = _day(first), _day(last or first)
        days = frozenset((start + offset) % 7 for offset in range((end - start) % 7 + 1))
        opens, closes = time(int(h1), int(m1)), time(int(h2), int(m2))
        if opens >= closes:
            raise ValueError("the desk must open before it closes on the same day")
        return cls(days=days, opens=opens, closes=closes, zone=zone)

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return local.weekday() in self.days and self.opens <= local.time() < self.closes

    def next_opening(self, moment: datetime) -> datetime:
        """`moment` itself when open, else the next time the desk opens (in the desk's zone)."""
        local = moment.astimezone(self.zone)
        if self.is_open(local):
            return local
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            opening = datetime.combine(day, self.opens, tzinfo=self.zone)
            if day.weekday() in self.days and opening > local:
                return opening
        raise ValueError("support hours name no day")


def _day(name: str) -> int:
    try:
        return DAYS.index(name.lower())
    except ValueError:
        raise ValueError(f"unknown day {name!r}; use mon, tue, wed, thu, fri, sat, sun") from None
