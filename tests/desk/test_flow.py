"""A Telegram user and the agents in Slack, end to end through slack-bolt, slack-sdk and python-telegram-bot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

from sqlalchemy import select

from core.storage.desk import DeskAction, DeskRelay
from core.storage.models import Conversation, Message
from tests.desk.conftest import AGENT, COLLEAGUE, DESK, ONDUTY, OUTSIDER, Desk
from tests.fakes.live import wait_for


def test_a_handoff_posts_one_parent_with_buttons_and_tells_the_user_the_reference_and_wait(
    desk: Callable[..., Desk],
) -> None:
    app = desk()
    app.user_says("I want to talk to a human")
    wait_for(lambda: len(app.slack.parents()) == 1)
    ticket = app.ticket()
    [parent] = app.slack.parents()
    assert parent["channel"] == DESK and ticket.reference in parent["text"]
    [actions] = [block for block in parent["blocks"] if block["type"] == "actions"]
    assert [(b["action_id"], b["text"]["text"], b["value"]) for b in actions["elements"]] == [
        ("desk_claim", "Claim", ticket.reference),
        ("desk_resolve", "Resolve", ticket.reference),
        ("desk_back", "Back to bot", ticket.reference),
    ]
    shown = json_text(parent)
    assert "Thandi" in shown and "Telegram" in shown and "priority *normal*" in shown
    assert "asked for a person" in shown and "I want to talk to a human" in shown
    wait_for(lambda: any(ticket.reference in text for text in app.telegram_texts()))
    told = app.telegram_texts()[-1]
    assert ticket.reference in told and "A person will reply here" in told and "within 2 minutes" in told
    assert app.parent_ts() == parent_ts_of(app)


def test_the_users_next_messages_land_in_the_thread_and_the_bot_stays_quiet(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    answered = len(app.telegram_texts())
    app.user_says("my account is 1234 5678 9012 and the payout is late")
    wait_for(lambda: any("payout is late" in text for text in app.slack.thread(thread)))
    line = next(text for text in app.slack.thread(thread) if "payout is late" in text)
    assert "••••9012" in line and "1234 5678" not in line  # never a full account number
    assert len(app.telegram_texts()) == answered  # the bot did not answer over the agent


def test_while_a_person_has_the_conversation_the_bot_answers_only_stop(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    answered = len(app.telegram_texts())
    app.user_says("menu")
    wait_for(lambda: any("menu" in text for text in app.slack.thread(thread)))
    app.user_says("STOP")
    wait_for(lambda: len(app.telegram_texts()) == answered + 1)
    assert "You won't get any more updates" in app.telegram_texts()[-1]
    wait_for(lambda: any("STOP" in text for text in app.slack.thread(thread)))  # the agent sees it too
    assert app.ticket().status == "open"


def test_an_agents_reply_reaches_the_user_on_telegram_once_despite_slack_retries(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    before = len(app.telegram_texts())
    ts = app.reply(thread, "Hi Thandi, I'm looking at your payout now.")
    app.reply(thread, "Hi Thandi, I'm looking at your payout now.", ts=ts, retry=1)
    app.reply(thread, "Hi Thandi, I'm looking at your payout now.", ts=ts, retry=2)
    wait_for(lambda: len(app.telegram_texts()) == before + 1)
    wait_for(lambda: any(text.startswith("✓ Sent to") for text in app.slack.thread(thread)))
    assert "<b>Sipho</b> (SayPro support): Hi Thandi, I'm looking at your payout now." == app.telegram_texts()[-1]
    with app.services.database.sessions() as session:
        assert len(list(session.scalars(select(DeskRelay)))) == 1
    ticket = app.ticket()
    assert (ticket.status, ticket.assignee_id, ticket.assignee_name) == ("assigned", AGENT, "Sipho Dlamini")
    assert ticket.first_response_at is not None  # the first human reply claims it and answers the wait
    assert any("Claimed by *Sipho Dlamini*" in text for text in app.slack.thread(thread))
    assert sum("✓ Sent to" in text for text in app.slack.thread(thread)) == 1


def test_notes_starting_with_two_slashes_stay_internal(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    before = len(app.telegram_texts())
    app.reply(thread, "// this one is a known fraud case, careful")
    app.reply(thread, "Thanks for waiting, checking now.")
    wait_for(lambda: len(app.telegram_texts()) == before + 1)
    assert "fraud" not in " ".join(app.telegram_texts())
    assert "Thanks for waiting" in app.telegram_texts()[-1]


def test_a_reply_from_someone_outside_the_agents_channel_is_refused_and_logged(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    before = len(app.telegram_texts())
    app.reply(thread, "Send me your password", user=OUTSIDER)
    wait_for(lambda: any("was not passed on" in text for text in app.slack.thread(thread)))
    assert len(app.telegram_texts()) == before
    with app.services.database.sessions() as session:
        [refusal] = session.scalars(select(DeskAction).where(DeskAction.action == "refused"))
        assert (refusal.agent_id, refusal.details) == (OUTSIDER, {"tried": "reply"})
    assert app.ticket().status == "open"
    assert app.press("desk_claim", app.ticket().reference, user=OUTSIDER).status_code == 200
    wait_for(lambda: len(app.slack.ephemerals()) == 1)
    assert app.slack.ephemerals()[0]["user"] == OUTSIDER and app.ticket().status == "open"


def test_claim_then_resolve_with_buttons_then_the_rating_is_stored(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    reference = app.ticket().reference
    assert app.press("desk_claim", reference).status_code == 200
    wait_for(lambda: any("Claimed by" in text for text in app.slack.thread(thread)))
    wait_for(lambda: any("with *Sipho Dlamini*" in json_text(update) for update in app.slack.updates()))
    assert app.ticket().status == "assigned"
    assert app.press("desk_claim", reference, user=COLLEAGUE).status_code == 200
    wait_for(lambda: any("took over from Sipho Dlamini" in text for text in app.slack.thread(thread)))

    assert app.press("desk_resolve", reference).status_code == 200
    wait_for(lambda: any("How would you rate" in text for text in app.telegram_texts()))
    wait_for(lambda: any("Resolved by" in text for text in app.slack.thread(thread)))
    rating_buttons = app.telegram.method("sendMessage")[-1].form["reply_markup"]
    assert "5 (excellent)" in rating_buttons
    assert app.ticket().status == "resolved"

    app.user_says("5")
    wait_for(lambda: any("anything you'd like to tell us" in text for text in app.telegram_texts()))
    app.user_says("Quick and kind, thank you")
    wait_for(lambda: app.ticket().csat_comment == "Quick and kind, thank you")
    ticket = app.ticket()
    assert (ticket.csat_score, ticket.csat_step, ticket.status) == (5, None, "resolved")
    wait_for(lambda: any("rated the help *5/5*" in text for text in app.slack.thread(thread)))
    assert app.press("desk_resolve", reference).status_code == 200  # a second press changes nothing
    wait_for(lambda: any("already resolved" in e["text"] for e in app.slack.ephemerals()))


def test_writing_again_within_seven_days_reopens_the_same_ticket_and_thread(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    reference = app.ticket().reference
    app.reply(thread, "Your payout was sent today.")
    app.press("desk_resolve", reference)
    wait_for(lambda: app.ticket().status == "resolved")
    app.clock.advance(days=6)
    app.user_says("It still has not arrived")
    wait_for(lambda: app.ticket().status == "open")
    ticket = app.ticket()
    assert (ticket.reference, ticket.reopened_count, ticket.desk_ts) == (reference, 1, thread)
    wait_for(lambda: any("Reopened" in text for text in app.slack.thread(thread)))
    wait_for(lambda: any("still has not arrived" in text for text in app.slack.thread(thread)))
    assert len(app.slack.parents()) == 1  # the same parent and thread
    assert any("reopened your request" in text for text in app.telegram_texts())
    with app.services.database.sessions() as session:
        assert len(list(session.scalars(select(Conversation)))) == 1


def test_after_seven_days_a_message_starts_afresh_with_the_bot(desk: Callable[..., Desk]) -> None:
    app = desk()
    app.handed_off()
    app.press("desk_resolve", app.ticket().reference)
    wait_for(lambda: any("How would you rate" in text for text in app.telegram_texts()))
    app.clock.advance(days=8)
    before = len(app.telegram_texts())
    app.user_says("when is my payout")
    wait_for(lambda: len(app.telegram_texts()) > before)
    assert "Payouts are sent after the campaign ends." in app.telegram_texts()[-1]
    assert app.ticket().reopened_count == 0
    with app.services.database.sessions() as session:
        assert len(list(session.scalars(select(Conversation)))) == 2


def test_back_to_bot_hands_the_conversation_back(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    app.press("desk_back", app.ticket().reference)
    wait_for(lambda: any("handed you back to me" in text for text in app.telegram_texts()))
    wait_for(lambda: any("Handed back to the bot" in text for text in app.slack.thread(thread)))
    app.user_says("when is my payout")
    wait_for(lambda: "Payouts are sent after the campaign ends." in app.telegram_texts()[-1])
    app.user_says("agent please")  # the same ticket and thread again
    wait_for(lambda: app.ticket().status == "open")
    wait_for(lambda: any("asked for a person again" in text for text in app.slack.thread(thread)))
    assert len(app.slack.parents()) == 1


def test_edits_and_deletions_of_a_sent_reply_are_not_relayed_and_the_thread_says_so(desk: Callable[..., Desk]) -> None:
    app = desk()
    thread = app.handed_off()
    ts = app.reply(thread, "Your refund is R500.")
    wait_for(lambda: any("R500" in text for text in app.telegram_texts()))
    before = len(app.telegram_texts())
    edit = {
        "type": "message",
        "subtype": "message_changed",
        "channel": DESK,
        "hidden": True,
        "ts": "1770200001.1",
        "event_ts": "1770200001.1",
        "message": {
            "type": "message",
            "user": AGENT,
            "text": "Your refund is R50.",
            "ts": ts,
            "thread_ts": thread,
            "edited": {"user": AGENT, "ts": "1"},
        },
    }
    assert app.event(edit).status_code == 200
    assert app.event(edit, retry=1).status_code == 200
    delete = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": DESK,
        "hidden": True,
        "ts": "1770200002.1",
        "event_ts": "1770200002.1",
        "deleted_ts": ts,
        "previous_message": {"type": "message", "user": AGENT, "text": "x", "ts": ts, "thread_ts": thread},
    }
    assert app.event(delete).status_code == 200
    wait_for(lambda: any("does not unsend it" in text for text in app.slack.thread(thread)))
    assert sum("not passed on: the user still has the first version" in t for t in app.slack.thread(thread)) == 1
    assert len(app.telegram_texts()) == before


def test_the_policys_urgent_topics_go_to_a_person_with_priority_high(desk: Callable[..., Desk]) -> None:
    from tests.fakes.knowledge import TOPICS

    TOPICS["campaign-dispute"] = ("Report a campaign", "backer", "Report it from the campaign page.")
    try:
        app = desk()
        app.services.knowledge.lookup = lambda text: app.services.knowledge.answer_for("campaign-dispute")  # type: ignore[method-assign]
        app.user_says("I think this campaign is a scam")
        wait_for(lambda: len(app.slack.parents()) == 1)
        ticket = app.ticket()
        assert (ticket.priority, ticket.reason, ticket.topic) == (
            "high",
            "dispute or suspected scam",
            "campaign-dispute",
        )
        assert "priority *high*" in json_text(app.slack.parents()[0])
        wait_for(lambda: any(ticket.reference in text for text in app.telegram_texts()))
        assert any("Report it from the campaign page." in text for text in app.telegram_texts())
    finally:
        del TOPICS["campaign-dispute"]


def test_outside_support_hours_the_user_is_told_when_the_desk_opens(desk: Callable[..., Desk]) -> None:
    from datetime import datetime

    app = desk(now=datetime(2026, 2, 7, 9, 0, tzinfo=UTC))  # Saturday 11:00 in Johannesburg
    app.user_says("agent")
    wait_for(lambda: any("SP-" in text for text in app.telegram_texts()))
    assert "back on Monday at 08:00 SAST" in app.telegram_texts()[-1]


def json_text(message: dict[str, object]) -> str:
    import json

    return json.dumps(message, ensure_ascii=False)


def parent_ts_of(app: Desk) -> str:
    [call] = [
        c
        for c in app.slack.calls("POST", "/api/chat.postMessage")
        if c.json.get("blocks") and c.json["channel"] == DESK
    ]
    return str(call.json.get("ts") or app.ticket().desk_ts)


__all__ = ["ONDUTY", "Message"]
