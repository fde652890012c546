"""WhatsApp conversations on the desk: the 24-hour window on the parent, agent replies after it closes,
and replies Twilio refuses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update

from core.storage.desk import DeskRelay
from core.storage.models import ChannelIdentity, utcnow
from tests.desk.conftest import Desk
from tests.fakes.live import wait_for
from tests.fakes.twilio_api import MESSAGES_PATH, twilio_error

TEMPLATE = "HX" + "ab" * 16


def handed_off_on_whatsapp(app: Desk) -> str:
    app.whatsapp_says("I need a person please", sid="SM" + "1" * 32)
    wait_for(lambda: any("SP-" in sent.get("Body", "") for sent in app.whatsapp_sent()))
    return app.parent_ts()


def close_the_window(app: Desk) -> None:
    with app.services.database.transaction() as session:
        session.execute(
            update(ChannelIdentity)
            .where(ChannelIdentity.channel == "whatsapp")
            .values(last_seen_at=utcnow() - timedelta(hours=25))
        )


def test_the_parent_shows_the_window_and_a_reply_inside_it_is_sent_as_text(desk: Callable[..., Desk]) -> None:
    app = desk(now=utcnow())
    thread = handed_off_on_whatsapp(app)
    parent = json.dumps(app.slack.parents()[0])
    assert "WhatsApp window" in parent and "open until" in parent
    before = len(app.whatsapp_sent())
    app.reply(thread, "Hello, I can help with that.")
    wait_for(lambda: len(app.whatsapp_sent()) == before + 1)
    sent = app.whatsapp_sent()[-1]
    assert (
        sent["To"] == "whatsapp:+27820000002" and sent["Body"] == "Sipho (SayPro support): Hello, I can help with that."
    )
    wait_for(lambda: any("✓ Sent to Thandi on WhatsApp." == text for text in app.slack.thread(thread)))


def test_after_the_window_closes_without_a_template_the_thread_says_it_could_not_be_delivered(
    desk: Callable[..., Desk],
) -> None:
    app = desk(now=utcnow())
    thread = handed_off_on_whatsapp(app)
    close_the_window(app)
    before = len(app.whatsapp_sent())
    app.reply(thread, "Are you still there?")
    wait_for(lambda: any("Not delivered" in text for text in app.slack.thread(thread)))
    [line] = [text for text in app.slack.thread(thread) if "Not delivered" in text]
    assert "24-hour window closed" in line and "WHATSAPP_AGENT_REPLY_TEMPLATE" in line
    assert len(app.whatsapp_sent()) == before
    assert not any(text.startswith("✓") for text in app.slack.thread(thread))


def test_after_the_window_closes_the_reply_goes_as_the_configured_template(desk: Callable[..., Desk]) -> None:
    app = desk(now=utcnow(), whatsapp_agent_reply_template=TEMPLATE)
    thread = handed_off_on_whatsapp(app)
    close_the_window(app)
    before = len(app.whatsapp_sent())
    app.reply(thread, "Your payout was sent.")
    wait_for(lambda: len(app.whatsapp_sent()) == before + 1)
    sent = app.whatsapp_sent()[-1]
    assert sent["ContentSid"] == TEMPLATE and "Body" not in sent
    assert json.loads(sent["ContentVariables"]) == {"1": "Sipho", "2": "Your payout was sent."}
    wait_for(lambda: any("as the approved template" in text for text in app.slack.thread(thread)))


def test_a_reply_twilio_refuses_is_said_plainly_in_the_thread(desk: Callable[..., Desk]) -> None:
    app = desk(now=utcnow())
    thread = handed_off_on_whatsapp(app)
    app.twilio.routes = [("POST", re.compile(MESSAGES_PATH), [twilio_error(400, 21610)])]  # the user blocked the number
    app.reply(thread, "Is the payout there now?")
    wait_for(lambda: any("Not delivered" in text for text in app.slack.thread(thread)))
    [line] = [text for text in app.slack.thread(thread) if "Not delivered" in text]
    assert "Twilio answered 400 (error 21610)" in line
    assert not any(text.startswith("✓") for text in app.slack.thread(thread))
    with app.services.database.sessions() as session:
        [relay] = session.scalars(select(DeskRelay))
        assert relay.outcome == "not_delivered"
