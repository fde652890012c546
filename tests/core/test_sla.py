"""Service levels count support hours only; timers are rows fired once, by one process, after restarts too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.conversation_rows import find_or_add_identity, open_conversation
from core.handoff import HandoffRequest, open_ticket
from core.hours import SupportHours
from core.sla import BREACH, REMINDER, ServiceLevels, add_open_time, describe, schedule
from core.storage.database import Database
from core.storage.desk import DeskPost, DeskTimer
from core.timers import Timers, WeeklyTime

ZONE = ZoneInfo("Africa/Johannesburg")
HOURS = SupportHours.parse("mon-fri 08:00-17:00", ZONE)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 2, day, hour, minute, tzinfo=ZONE)  # 2 February 2026 is a Monday


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (local(2, 10), timedelta(minutes=2), local(2, 10, 2)),  # inside hours
        (local(2, 16, 30), timedelta(hours=4), local(3, 11, 30)),  # SMS at 16:30: 30 minutes today, 3.5 h tomorrow
        (local(6, 16, 0), timedelta(hours=3), local(9, 10, 0)),  # Friday afternoon runs over the weekend
        (local(7, 11, 0), timedelta(minutes=2), local(9, 8, 2)),  # Saturday: counted from Monday's opening
        (local(2, 7, 0), timedelta(hours=9, minutes=1), local(3, 8, 1)),  # a whole day and a minute
    ],
)
def test_targets_count_only_the_desks_open_time(start: datetime, duration: timedelta, due: datetime) -> None:
    assert add_open_time(HOURS, start, duration) == due


def test_the_policy_defaults_and_overrides() -> None:
    levels = ServiceLevels(HOURS)
    assert [levels.target(c) for c in ("telegram", "whatsapp", "slack", "api", "x", "sms")] == [
        timedelta(minutes=2)
    ] * 4 + [timedelta(hours=3), timedelta(hours=4)]
    assert levels.target("some-new-chat") == timedelta(minutes=2)
    assert ServiceLevels(HOURS, {"sms": timedelta(hours=1)}).target("sms") == timedelta(hours=1)
    assert levels.due("sms", local(2, 16, 0), share=0.8) == local(
        3, 10, 12
    )  # 3 h 12 min: 1 h today, 2 h 12 min tomorrow
    assert [describe(timedelta(seconds=s)) for s in (30, 120, 3600, 5400)] == [
        "30 seconds",
        "2 minutes",
        "1 hour",
        "1 hour 30 minutes",
    ]


def _ticket(database: Database, start: datetime) -> int:
    with database.transaction() as session:
        identity = find_or_add_identity(session, channel="telegram", user_id="42")
        conversation = open_conversation(session, identity)
        ticket = open_ticket(session, conversation, HandoffRequest("asked for a person"))
        ticket.waiting_since = start
        schedule(session, ticket, ServiceLevels(HOURS), channel="telegram", start=start)
        schedule(session, ticket, ServiceLevels(HOURS), channel="telegram", start=start)  # once per wait
        return ticket.id


def _fired(database: Database) -> list[tuple[str, str]]:
    with database.sessions() as session:
        return [(t.kind, t.status) for t in session.scalars(select(DeskTimer).order_by(DeskTimer.id))]


def test_a_timer_fires_once_even_with_two_processes_and_after_a_restart(database: Database) -> None:
    from core.channels import ChannelRegistry
    from core.desk import HumanDesk

    start = local(2, 10).astimezone(UTC)
    _ticket(database, start)
    assert _fired(database) == [(REMINDER, "pending"), (BREACH, "pending")]
    handlers = HumanDesk(live=True, levels=ServiceLevels(HOURS), channels=ChannelRegistry()).timer_handlers()
    first, second = Timers(database, handlers), Timers(database, handlers)  # two processes
    assert first.fire_due(start + timedelta(seconds=60)) == 0
    assert first.fire_due(start + timedelta(seconds=100)) == 1
    assert second.fire_due(start + timedelta(seconds=100)) == 0
    restarted = Timers(database, handlers)  # a new process after a restart finds the rest in the database
    assert restarted.fire_due(start + timedelta(minutes=5)) == 1
    assert first.fire_due(start + timedelta(minutes=6)) == 0
    assert _fired(database) == [(REMINDER, "fired"), (BREACH, "fired")]
    with database.sessions() as session:
        posts = list(session.scalars(select(DeskPost).order_by(DeskPost.id)))
    assert [(p.kind, p.alert) for p in posts] == [("thread", False), ("thread", True), ("refresh", False)]


def test_a_claimed_timer_is_not_taken_by_another_until_its_lease_runs_out(database: Database) -> None:
    start = local(2, 10).astimezone(UTC)
    _ticket(database, start)
    timers = Timers(database, {})
    [reminder, _breach] = timers._due(start + timedelta(minutes=5), 10)
    assert timers._claim(reminder, start + timedelta(minutes=5))
    assert not timers._claim(reminder, start + timedelta(minutes=5, seconds=30))
    assert timers._claim(reminder, start + timedelta(minutes=7))  # the first claimant died: taken again


def test_the_weekly_report_is_scheduled_once_for_the_next_monday_morning(database: Database) -> None:
    weekly = WeeklyTime.parse("mon 08:00")
    assert weekly.next_after(local(1, 20), ZONE) == local(2, 8)
    assert weekly.next_after(local(2, 8), ZONE) == local(9, 8)
    timers = Timers(database, {})
    for _ in range(3):
        timers.schedule_weekly(weekly, ZONE, local(4, 12).astimezone(UTC))
    with database.sessions() as session:
        [timer] = session.scalars(select(DeskTimer))
    assert (timer.key, timer.due_at) == ("weekly_report:2026-02-09", local(9, 8))
    with pytest.raises(ValueError, match="mon 08:00"):
        WeeklyTime.parse("monday at eight")


def test_the_weekly_summary_is_posted_by_one_process_only(database: Database) -> None:
    from core.channels import ChannelRegistry
    from core.desk import HumanDesk

    handlers = HumanDesk(live=True, levels=ServiceLevels(HOURS), channels=ChannelRegistry()).timer_handlers()
    weekly = WeeklyTime.parse("mon 08:00")
    sunday = local(1, 20).astimezone(UTC)
    first, second = Timers(database, handlers), Timers(database, handlers)  # `run` and `worker`
    first.schedule_weekly(weekly, ZONE, sunday)
    second.schedule_weekly(weekly, ZONE, sunday)
    monday = local(2, 8, 1).astimezone(UTC)
    assert first.fire_due(monday) + second.fire_due(monday) == 1
    first.schedule_weekly(weekly, ZONE, monday)  # the next one, a week on
    with database.sessions() as session:
        posts = list(session.scalars(select(DeskPost)))
        timers = [(t.key, t.status) for t in session.scalars(select(DeskTimer).order_by(DeskTimer.id))]
    assert [(p.kind, p.dedupe_key) for p in posts] == [("channel", "weekly_report:2026-02-02")]
    assert "Support figures for the week Mon 26 Jan 08:00 to Mon 02 Feb 2026 08:00" in posts[0].text
    assert timers == [("weekly_report:2026-02-02", "fired"), ("weekly_report:2026-02-09", "pending")]
