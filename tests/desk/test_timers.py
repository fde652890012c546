"""Service-level timers and the weekly report: rows in the database, fired by the desk loop on the desk's clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from core.storage.desk import DeskTimer
from tests.desk.conftest import DESK, ONDUTY, Desk
from tests.fakes.live import wait_for


def test_at_80_percent_a_reminder_and_at_the_target_a_breach_mention_and_a_higher_priority(
    desk: Callable[..., Desk],
) -> None:
    app = desk()
    thread = app.handed_off()
    reference = app.ticket().reference
    app.clock.advance(seconds=90)  # 75% of Telegram's 2 minutes: nothing yet
    app.user_says("hello? anyone?")
    wait_for(lambda: any("anyone?" in text for text in app.slack.thread(thread)))
    assert not any("80%" in text for text in app.slack.thread(thread))

    app.clock.advance(seconds=7)  # 97 s: past 80% (96 s)
    wait_for(lambda: any("80% of the 2 minutes first-response target" in text for text in app.slack.thread(thread)))
    assert app.ticket().priority == "normal"

    app.clock.advance(seconds=24)  # 121 s: past the target
    wait_for(lambda: any("missed its 2 minutes first-response target" in text for text in app.slack.thread(thread)))
    [breach] = [text for text in app.slack.thread(thread) if "missed its" in text]
    assert breach.startswith(f"<!subteam^{ONDUTY}> ") and "Priority is now *high*" in breach
    ticket = app.ticket()
    assert (ticket.priority, ticket.sla_breached_at) == ("high", app.clock.now)
    wait_for(
        lambda: any("priority *high*" in json.dumps(u) and reference in json.dumps(u) for u in app.slack.updates())
    )
    assert "first-response target missed" in json.dumps(app.slack.updates()[-1])
    app.clock.advance(seconds=600)
    wait_for(lambda: _statuses(app) == {"fired"})
    assert sum("missed its" in text for text in app.slack.thread(thread)) == 1  # each timer fires once


def test_an_answer_in_time_cancels_the_timers(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    app.clock.advance(seconds=60)
    app.reply(thread, "Hi, I'm here.")
    wait_for(lambda: _statuses(app) == {"cancelled"})
    app.clock.advance(seconds=600)
    app.user_says("great")
    wait_for(lambda: any("great" in text for text in app.slack.thread(thread)))
    assert not any("first-response target" in text for text in app.slack.thread(thread))
    assert app.ticket().sla_breached_at is None


def test_the_weekly_summary_is_posted_on_monday_morning_in_the_support_timezone(desk: Callable[..., Desk]) -> None:
    sunday_evening = datetime(2026, 2, 1, 18, 0, tzinfo=UTC)  # 20:00 in Johannesburg
    app = desk(now=sunday_evening)
    wait_for(lambda: any(t.kind == "weekly_report" for t in _timers(app)))
    [timer] = [t for t in _timers(app) if t.kind == "weekly_report"]
    assert timer.due_at == datetime(2026, 2, 2, 6, 0, tzinfo=UTC)  # Monday 08:00 SAST
    assert timer.key == "weekly_report:2026-02-02"
    app.clock.advance(hours=12, seconds=1)
    wait_for(lambda: any("Support figures for the week" in p["text"] for p in app.slack.posts()))
    [summary] = [p for p in app.slack.posts() if "Support figures for the week" in p["text"]]
    assert summary["channel"] == DESK and "thread_ts" not in summary
    assert "Mon 26 Jan 08:00 to Mon 02 Feb 2026 08:00" in summary["text"] and "Bot containment" in summary["text"]


def _timers(app: Desk) -> list[DeskTimer]:
    with app.services.database.sessions() as session:
        return list(session.scalars(select(DeskTimer).order_by(DeskTimer.id)))


def _statuses(app: Desk) -> set[str]:
    return {t.status for t in _timers(app) if t.kind.startswith("sla_")}
