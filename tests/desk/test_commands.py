"""`/saypro` from Slack: queue, ticket, stats, note, the incident note, and announcements with a confirmation."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.storage.desk import Announcement, DeskAction, Incident
from core.storage.models import ChannelIdentity, OutboxItem, utcnow
from tests.desk.conftest import AGENT, COLLEAGUE, DESK, OUTSIDER, Desk
from tests.fakes.live import wait_for


def test_queue_ticket_and_note(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    reference = app.ticket().reference
    app.clock.advance(minutes=5)
    queue = app.command("queue")
    assert queue.status_code == 200
    assert "1 open ticket" in queue.text and reference in queue.text and "5 min" in queue.text
    assert "unassigned" in queue.text and f"https://slack.com/archives/{DESK}/p{thread.replace('.', '')}" in queue.text

    one = app.command(f"ticket {reference.lower()}")
    assert reference in one.text and "waiting for a person" in one.text and "asked for a person" in one.text
    assert app.command("ticket SP-ZZZZZZ").text.startswith("No ticket found")

    noted = app.command(f"note {reference} the user called the office too")
    assert "Note added" in noted.text
    wait_for(
        lambda: any("Note from Sipho Dlamini:* the user called the office too" in t for t in app.slack.thread(thread))
    )
    assert not any("called the office" in text for text in app.telegram_texts())


def test_stats_gives_todays_figures(desk: Callable[..., Desk]) -> None:
    app = desk(now=utcnow())
    thread = app.handed_off()
    app.clock.advance(seconds=30)
    app.reply(thread, "On it.")
    wait_for(lambda: app.ticket().first_response_at is not None)
    stats = app.command("stats")
    assert "Today so far" in stats.text and "Conversations: 1 (Telegram 1)" in stats.text
    assert "Tickets: 1 (Telegram 1)" in stats.text and "median 30 s" in stats.text


def test_the_incident_note_tops_every_answer_until_cleared_and_is_recorded(desk: Callable[..., Desk]) -> None:
    app = desk()
    response = app.command("status Payouts are delayed by a bank outage; we expect them tomorrow.")
    assert "Incident note set" in response.text
    wait_for(lambda: any("set the incident note" in p["text"] for p in app.slack.posts()))
    app.user_says("when is my payout")
    wait_for(lambda: len(app.telegram_texts()) == 1)
    assert app.telegram_texts()[0].startswith("⚠️ <b>Service notice:</b> Payouts are delayed by a bank outage")
    assert "Payouts are sent after the campaign ends." in app.telegram_texts()[0]
    assert "Payouts are delayed" in app.command("status", user=COLLEAGUE).text
    assert "cleared" in app.command("status clear", user=COLLEAGUE).text
    app.user_says("when is my payout")
    wait_for(lambda: len(app.telegram_texts()) == 2)
    assert app.telegram_texts()[1] == "Payouts are sent after the campaign ends."
    with app.services.database.sessions() as session:
        [incident] = session.scalars(select(Incident))
        assert (incident.set_by_id, incident.set_by_name, incident.cleared_by_id) == (AGENT, "Sipho Dlamini", COLLEAGUE)
        actions = [a.action for a in session.scalars(select(DeskAction).order_by(DeskAction.id))]
        assert actions == ["status_set", "status_clear"]


def test_announce_shows_how_many_it_reaches_and_sends_once_confirmed(desk: Callable[..., Desk]) -> None:
    app = desk(now=utcnow())
    app.user_says("when is my payout")
    app.whatsapp_says("hi", sid="SM" + "2" * 32)
    wait_for(lambda: len(app.telegram_texts()) == 1 and len(app.whatsapp_sent()) == 1)
    with app.services.database.transaction() as session:  # Telegram wrote yesterday; WhatsApp 20 days ago: not reached
        for channel, days in (("telegram", 1), ("whatsapp", 20)):
            session.execute(
                update(ChannelIdentity)
                .where(ChannelIdentity.channel == channel)
                .values(last_seen_at=utcnow() - timedelta(days=days))
            )
    check = app.command("announce The site is back up. Thank you for your patience!")
    body = check.json()
    assert "1 people" not in body["text"] and "reach" in json.dumps(body["blocks"])
    assert "*1* person (Telegram 1)" in body["blocks"][0]["text"]["text"]
    send = body["blocks"][1]["elements"][0]
    assert (send["action_id"], send["text"]["text"]) == ("desk_announce_send", "Send to 1")
    assert app.press("desk_announce_send", send["value"], user=OUTSIDER).status_code == 200  # refused
    assert app.press("desk_announce_send", send["value"]).status_code == 200
    assert app.press("desk_announce_send", send["value"]).status_code == 200  # a second click sends nothing more
    wait_for(lambda: len(app.telegram_texts()) == 2)
    assert app.telegram_texts()[1].startswith("📣 <b>SayPro:</b> The site is back up.")
    wait_for(lambda: any("sent an announcement to 1 person" in p["text"] for p in app.slack.posts()))
    with app.services.database.sessions() as session:
        [announcement] = session.scalars(select(Announcement))
        assert (announcement.status, announcement.queued, announcement.decided_by_id) == ("sent", 1, AGENT)
        assert len(list(session.scalars(select(OutboxItem).where(OutboxItem.text.like("%back up%"))))) == 1
    assert any("Only members" in e["text"] for e in app.slack.ephemerals() if e["user"] == OUTSIDER)


def test_a_command_from_outside_the_agents_channel_is_refused(desk: Callable[..., Desk]) -> None:
    app = desk()
    response = app.command("queue", user=OUTSIDER)
    assert response.status_code == 200 and "Only members" in response.text
    with app.services.database.sessions() as session:
        [refusal] = session.scalars(select(DeskAction))
        assert (refusal.action, refusal.agent_id) == ("refused", OUTSIDER)
    assert "/saypro queue" in app.command("").text


@pytest.mark.parametrize("template", [None, "HX" + "cd" * 16])
def test_an_announcement_reaches_whatsapp_outside_the_window_only_as_the_template(
    desk: Callable[..., Desk], template: str | None
) -> None:
    app = desk(now=utcnow(), whatsapp_announcement_template=template)
    app.user_says("when is my payout")
    app.whatsapp_says("hi", sid="SM" + "3" * 32)
    wait_for(lambda: len(app.telegram_texts()) == 1 and len(app.whatsapp_sent()) == 1)
    with (
        app.services.database.transaction() as session
    ):  # WhatsApp wrote 3 days ago: in the audience, out of the window
        for channel, ago in (("telegram", timedelta(hours=1)), ("whatsapp", timedelta(days=3))):
            session.execute(
                update(ChannelIdentity).where(ChannelIdentity.channel == channel).values(last_seen_at=utcnow() - ago)
            )
    body = app.command("announce Payouts resume on Monday.").json()
    shown = body["blocks"][0]["text"]["text"]
    send = body["blocks"][1]["elements"][0]
    if template is None:
        assert "*1* person (Telegram 1); 1 on WhatsApp outside the 24-hour window will not get it" in shown
        assert send["text"]["text"] == "Send to 1"
    else:
        assert "*2* people (Telegram 1, WhatsApp 1)" in shown and "will not get it" not in shown
    assert app.press("desk_announce_send", send["value"]).status_code == 200
    wait_for(lambda: len(app.telegram_texts()) == 2)
    with app.services.database.sessions() as session:
        [announcement] = session.scalars(select(Announcement))
        assert (announcement.queued, announcement.as_template, announcement.skipped) == (
            (1, 0, 1) if template is None else (2, 1, 0)
        )
    if template is not None:
        wait_for(lambda: len(app.whatsapp_sent()) == 2)
        sent = app.whatsapp_sent()[-1]
        assert sent["ContentSid"] == template and "Body" not in sent
        assert json.loads(sent["ContentVariables"]) == {"1": "Payouts resume on Monday."}
        wait_for(lambda: any(", 1 as the WhatsApp template" in p["text"] for p in app.slack.posts()))
    else:
        wait_for(
            lambda: any(
                "1 outside WhatsApp's window with no template were left out" in p["text"] for p in app.slack.posts()
            )
        )
        assert len(app.whatsapp_sent()) == 1
