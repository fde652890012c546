"""Support hours: parsing, open or closed, and the next opening."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.hours import SupportHours

JHB = ZoneInfo("Africa/Johannesburg")
HOURS = SupportHours.parse("mon-fri 08:00-17:00", JHB)


def test_open_on_a_weekday_afternoon_in_johannesburg() -> None:
    assert HOURS.is_open(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # Monday 14:00 SAST


def test_closed_on_friday_evening_opens_monday_morning() -> None:
    friday_evening = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)  # 18:30 SAST
    assert not HOURS.is_open(friday_evening)
    assert HOURS.next_opening(friday_evening) == datetime(2026, 11, 30, 8, 0, tzinfo=JHB)


@pytest.mark.parametrize("spec", ["weekdays", "mon-fri 17:00-08:00", "mon-xyz 08:00-17:00"])
def test_malformed_hours_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        SupportHours.parse(spec, JHB)


def test_a_range_may_wrap_the_week() -> None:
    assert SupportHours.parse("sat-mon 09:00-12:00", JHB).days == frozenset({5, 6, 0})
