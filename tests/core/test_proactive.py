"""Proactive updates: a status change pushed by the platform reaches the owner's last channel, or is recorded as not sent."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.messages import Template
from core.proactive import Notifier, change_key
from core.records import Change, Kind, upsert
from core.storage.models import ChannelIdentity, OutboxItem
from core.storage.records import StatusNotification
from tests.core.test_status_fixtures import DEFAULTS, NOW, StatusBot, seed, seed_payout

THANDI_SMS = "+27825550142"
SENT_SID = "HX" + "0" * 31 + "1"
_versions = itertools.count(1)


@pytest.fixture()
def bot(database):  # type: ignore[no-untyped-def]
    seed_payout(database)
    return StatusBot(database, live=("console", "sms", "whatsapp"))


def push(
    bot: StatusBot,
    kind: Kind,
    reference: str,
    *,
    templates: dict[str, str] | None = None,
    again: bool = False,
    **fields: Any,
) -> list[int]:
    """The platform pushes a newer version of a record (`again`: the last one again); the outbox rows written."""
    now = datetime.now(UTC)
    notifier = Notifier(bot.registry, templates=templates, clock=lambda: now)
    version = NOW + timedelta(minutes=next(_versions) - (1 if again else 0))
    with bot.database.transaction() as session:
        result = upsert(session, kind, reference, {**DEFAULTS[kind], **fields, "updated_at": version})
        item_ids = notifier.notify(session, result)
    asyncio.run(bot.dispatcher.dispatch(item_ids))
    return item_ids


def notifications(bot: StatusBot) -> list[StatusNotification]:
    with bot.database.sessions() as session:
        return list(session.scalars(select(StatusNotification).order_by(StatusNotification.id)))


def test_a_payout_sent_is_told_to_the_owner_on_the_channel_they_last_used(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="sms")
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", paid_at=datetime.now(UTC))
    message = bot.channels["sms"].sent[-1]
    assert message.user_id == THANDI_SMS and message.template is None
    assert message.text == (
        "Your payout of R4,750.00 for Clean Water Gqeberha was sent by bank transfer today. (Reference SP-PAY-1042.)"
    )
    [note] = notifications(bot)
    assert (note.change, note.delivery, note.reason) == ("disbursement.sent", "text", None) and note.message_id


def test_nothing_is_sent_for_a_new_record_the_same_version_again_or_an_older_one(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="sms")
    before = len(bot.channels["sms"].sent)
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="scheduled")  # newer, but the status is the same
    seed(bot.database, Kind.DISBURSEMENT, "SP-PAY-7777", status="sent")  # created: not a change
    assert len(bot.channels["sms"].sent) == before and notifications(bot) == []
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent")
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", again=True)  # the same PUT again
    assert len(bot.channels["sms"].sent) == before + 1 and len(notifications(bot)) == 1


def test_an_owner_who_never_talked_to_the_bot_gets_nothing_and_it_is_recorded(bot: StatusBot) -> None:
    assert push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="failed", failure_reason="bank closed") == []
    [note] = notifications(bot)
    assert (note.delivery, note.identity_id) == ("no_one", None) and note.reason.startswith("the owner has not written")


def test_the_latest_channel_wins_and_an_opted_out_one_is_passed_over(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="sms")
    bot.say("hi", user=f"whatsapp:{THANDI_SMS}", channel="whatsapp")
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="processing")
    assert "is being processed" in bot.channels["whatsapp"].sent[-1].text
    bot.say("STOP", user=f"whatsapp:{THANDI_SMS}", channel="whatsapp")
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="failed", failure_reason="The bank rejected the account number.")
    assert bot.channels["sms"].sent[-1].text == (
        "Your payout of R4,750.00 for Clean Water Gqeberha could not be paid: The bank rejected the account number. "
        "Reply here and I'll tell you how to fix it. (Reference SP-PAY-1042.)"
    )


def test_an_identity_linked_by_a_code_is_the_owners_too(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, live=("console", "sms", "telegram"))
    bot.say("status of SP-PAY-1042", user="tg-77", channel="telegram")
    bot.say(bot.codes(to=THANDI_SMS)[0], user="tg-77", channel="telegram")
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="on_hold")
    assert bot.channels["telegram"].sent[-1].user_id == "tg-77"
    assert "is on hold while our team reviews it" in bot.channels["telegram"].sent[-1].text


def test_the_terminal_and_the_platform_api_get_no_updates_nobody_would_see(bot: StatusBot) -> None:
    bot.say("status of SP-PAY-1042", user="thandi-console")
    bot.say(bot.codes(to=THANDI_SMS)[0], user="thandi-console")
    before = len(bot.channels["console"].sent)
    assert push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="on_hold") == []
    assert len(bot.channels["console"].sent) == before and notifications(bot)[-1].delivery == "no_one"


def _last_seen(bot: StatusBot, hours_ago: float) -> None:
    with bot.database.transaction() as session:
        session.execute(
            update(ChannelIdentity)
            .where(ChannelIdentity.channel == "whatsapp")
            .values(last_seen_at=datetime.now(UTC) - timedelta(hours=hours_ago))
        )


def test_on_whatsapp_inside_the_window_a_plain_message_goes(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="whatsapp")
    _last_seen(bot, 23)
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", paid_at=NOW, templates={"disbursement.sent": SENT_SID})
    assert bot.channels["whatsapp"].sent[-1].template is None
    assert notifications(bot)[-1].delivery == "text"


def test_on_whatsapp_outside_the_window_the_configured_template_goes(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="whatsapp")
    _last_seen(bot, 30)
    today = datetime.now(UTC)
    push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="sent", paid_at=today, templates={"disbursement.sent": SENT_SID})
    message = bot.channels["whatsapp"].sent[-1]  # the dispatcher let it through: templates may go outside the window
    assert message.template == Template(
        SENT_SID,
        (
            ("1", "R4,750.00"),
            ("2", "Clean Water Gqeberha"),
            ("3", "bank transfer"),
            ("4", "today"),
            ("5", "SP-PAY-1042"),
        ),
    )
    assert message.text.startswith("Your payout of R4,750.00")  # the readable record of what the template says
    assert notifications(bot)[-1].delivery == "template"


def test_on_whatsapp_outside_the_window_without_a_template_nothing_goes_and_that_is_recorded(bot: StatusBot) -> None:
    bot.say("hi", user=THANDI_SMS, channel="whatsapp")
    _last_seen(bot, 30)
    before = len(bot.channels["whatsapp"].sent)
    assert (
        push(bot, Kind.DISBURSEMENT, "SP-PAY-1042", status="received", templates={"disbursement.sent": SENT_SID}) == []
    )
    assert len(bot.channels["whatsapp"].sent) == before
    note = notifications(bot)[-1]
    assert note.delivery == "skipped" and note.change == "disbursement.received"
    assert note.reason == "outside the 24-hour window, and no template is set for disbursement.received"
    with bot.database.sessions() as session:
        assert (
            session.scalars(
                select(OutboxItem).where(OutboxItem.channel == "whatsapp", OutboxItem.status == "pending")
            ).all()
            == []
        )


def test_contribution_registration_and_campaign_changes_are_told_too(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    seed(database, Kind.REGISTRATION, "SP-ENTRY-5005", owner_phone="+27830000001", submission_status="under_review")
    bot = StatusBot(database)
    for user in (THANDI_SMS, "+27821110000", "+27830000001"):
        bot.say("hi", user=user, channel="sms")
    push(bot, Kind.CONTRIBUTION, "SP-DON-1001", status="refunded")
    push(bot, Kind.REGISTRATION, "SP-ENTRY-5005", owner_phone="+27830000001", submission_status="accepted")
    push(bot, Kind.CAMPAIGN, "SP-CAMP-1042", status="cancelled")
    texts = {m.user_id: m.text for m in bot.channels["sms"].sent if m.text.startswith("Your")}
    assert texts["+27821110000"].startswith("Your contribution of R500.00 to Clean Water Gqeberha was refunded on")
    assert texts["+27830000001"] == (
        "Your entry for SayPro Youth Innovation Challenge: submission accepted. (Reference SP-ENTRY-5005.)"
    )
    assert (
        texts[THANDI_SMS]
        == "Your campaign Clean Water Gqeberha was cancelled. It raised R5,000.00. (Reference SP-CAMP-1042.)"
    )
    assert [n.change for n in notifications(bot)] == [
        "contribution.refunded",
        "registration.submission.accepted",
        "campaign.cancelled",
    ]


def test_change_keys_name_the_field_for_contest_entries() -> None:
    assert change_key(Kind.DISBURSEMENT, Change("status", "processing", "sent")) == "disbursement.sent"
    assert change_key(Kind.REGISTRATION, Change("fee_status", "pending", "paid")) == "registration.fee.paid"
