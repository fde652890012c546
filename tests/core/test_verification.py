"""Verification: phone match, one-time codes (expiry, lockout, rate limit), linking, and codes never kept."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from core.records import Kind
from core.storage.models import IdentityLink, Message, OutboxItem, VerificationChallenge, VerificationEvent
from core.verification import Policy
from tests.core.test_status_fixtures import StatusBot, seed, seed_payout

THANDI_SMS = "+27825550142"
ANSWER = "Payout *SP-PAY-1042* for *Clean Water Gqeberha*"


@pytest.mark.parametrize(
    ("channel", "user"),
    [("sms", "+27825550142"), ("whatsapp", "whatsapp:+27825550142"), ("whatsapp", "+27 82 555 0142")],
)
def test_writing_from_the_records_phone_on_sms_or_whatsapp_is_enough(database, channel: str, user: str) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, live=("console", "sms", "whatsapp"))
    assert ANSWER in bot.say("status of SP-PAY-1042", user=user, channel=channel)
    assert bot.codes() == []


def test_the_same_number_on_another_channel_is_not_enough(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    said = bot.say(
        "status of SP-PAY-1042", user=THANDI_SMS, channel="console"
    )  # a console user may call themselves anything
    assert ANSWER not in said and "a code is on its way" in said


def test_another_number_on_sms_gets_a_code_sent_to_the_records_phone(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    said = bot.say("status of SP-PAY-1042", user="+27829999999", channel="sms")
    assert "a code is on its way" in said and len(bot.codes(to=THANDI_SMS)) == 1


def test_a_code_by_sms_verifies_and_links_the_identity_so_no_code_is_needed_next_time(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    seed(database, Kind.DISBURSEMENT, "SP-PAY-2042", status="received")
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    [code] = bot.codes(to=THANDI_SMS)
    said = bot.say(code)
    assert said.text.startswith("Thanks, that's the right code.") and ANSWER in said
    with database.sessions() as session:
        link = session.scalars(select(IdentityLink)).one()
        assert (link.kind, link.value) == ("phone", THANDI_SMS)
    # The same person, the same channel: their other payout needs no code either.
    assert "Payout *SP-PAY-2042*" in bot.say("and SP-PAY-2042?")
    assert len(bot.codes()) == 1


def test_a_code_by_email_when_only_email_is_live(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, live=("console", "email"))
    bot.say("status of SP-PAY-1042")
    [code] = bot.codes("email", to="thandi@example.org")
    assert ANSWER in bot.say(code)
    with database.sessions() as session:
        assert session.scalars(select(IdentityLink.kind)).one() == "email"


def test_sms_is_preferred_and_email_used_when_the_record_has_no_phone(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", owner_phone=None)
    seed(database, Kind.DISBURSEMENT, "SP-PAY-1042")
    bot = StatusBot(database, live=("console", "sms", "email"))
    bot.say("status of SP-PAY-1042")
    assert bot.codes("sms") == [] and len(bot.codes("email")) == 1


def test_with_neither_sms_nor_email_the_bot_says_so_and_offers_a_person(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, live=("console",))
    said = bot.say("status of SP-PAY-1042")
    assert "can't send you a verification code from here right now" in said
    assert "1. Talk to a person" in said
    assert "SP-" in bot.say("1").text  # picking it opens a ticket


def test_the_code_is_never_kept_in_clear(database, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    [code] = bot.codes(to=THANDI_SMS)
    assert "Your SayPro verification code is" in bot.channels["sms"].sent[-1].text  # it did go out
    bot.say(f"{code[:3]} {code[3:]}")  # typed with a space
    with database.sessions() as session:
        stored = [m.text for m in session.scalars(select(Message))] + [
            o.text for o in session.scalars(select(OutboxItem))
        ]
        challenge = session.scalars(select(VerificationChallenge)).one()
        assert challenge.code_hash and code not in challenge.code_hash and challenge.consumed_at is not None
    assert not any(code in text for text in stored)
    assert "Your SayPro verification code is ●●●●●● (removed once sent)." in stored
    assert "●●●●●● (a one-time code, not kept)" in stored  # what the user typed
    assert not any(code in record.getMessage() or code in str(vars(record)) for record in caplog.records)
    assert not any(THANDI_SMS in str(vars(record)) for record in caplog.records)


def test_a_code_expires_after_ten_minutes(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    [code] = bot.codes(to=THANDI_SMS)
    bot.clock.advance(minutes=10, seconds=1)
    said = bot.say(code)
    assert "That code is no longer valid (codes work for 10 minutes)" in said and ANSWER not in said
    assert bot.conversation().status_step is None


def test_a_code_typed_within_ten_minutes_works(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    bot.clock.advance(minutes=9, seconds=59)
    assert ANSWER in bot.say(bot.codes(to=THANDI_SMS)[0])


def test_a_new_code_replaces_the_last_and_an_unsent_one_is_never_sent(database) -> None:  # type: ignore[no-untyped-def]
    from core.messages import InboundMessage

    seed_payout(database)
    bot = StatusBot(database)
    # The first request's code is still queued (not sent) when the second one is asked for.
    bot.inbox.handle(
        InboundMessage(channel="console", user_id="mallory", provider_message_id="q1", text="status of SP-PAY-1042")
    )
    bot.say("status of SP-PAY-1042")
    [code] = bot.codes(to=THANDI_SMS)
    with database.sessions() as session:
        first, second = session.scalars(select(OutboxItem).where(OutboxItem.channel == "sms").order_by(OutboxItem.id))
    assert (first.status, first.last_error) == ("withheld", "the one-time code is no longer valid")
    assert first.text == "Your SayPro verification code is ●●●●●● (removed once sent)." and second.status == "sent"
    assert ANSWER in bot.say(code)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_five_wrong_codes_lock_the_reference_for_an_hour_for_everyone(
    database, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    code = bot.codes(to=THANDI_SMS)[0]
    for _ in range(4):
        assert "That code isn't right" in bot.say(_wrong(code))
    said = bot.say(_wrong(code))
    assert "locked for an hour" in said and "1. Talk to a person" in said
    assert bot.conversation().status_step is None
    # Even the right code is refused now, and so is anyone else asking for a new one.
    assert "locked for an hour" in bot.say("status of SP-PAY-1042")
    assert "locked for an hour" in bot.say("status of SP-PAY-1042", user="someone-else")
    assert len(bot.codes()) == 1
    assert any("code verification locked" in r.getMessage() and r.reference == "SP-PAY-1042" for r in caplog.records)
    assert sum("one-time code attempt" in r.getMessage() for r in caplog.records) == 5
    with database.sessions() as session:
        events = [e.event for e in session.scalars(select(VerificationEvent).order_by(VerificationEvent.id))]
    assert events.count("code_wrong") == 5 and "locked" in events
    # An hour later the owner can verify again.
    bot.clock.advance(hours=1, seconds=1)
    bot.say("status of SP-PAY-1042")
    assert ANSWER in bot.say(bot.codes(to=THANDI_SMS)[-1])


def test_wrong_codes_from_several_identities_add_up(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, policy=Policy(max_wrong_codes=3))
    replies = []
    for user in ("a", "b", "c"):
        bot.say("status of SP-PAY-1042", user=user)
        replies.append(bot.say(_wrong(bot.codes()[-1]), user=user).text)
    assert ["That code isn't right" in r for r in replies] == [True, True, False]
    assert "locked for an hour" in replies[-1]


def test_look_ups_are_rate_limited_per_identity(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database, policy=Policy(lookups_per_window=3))
    for number in range(3):
        assert "You've checked several references" not in bot.say(f"status of SP-PAY-{9000 + number}")
    said = bot.say("status of SP-PAY-1042")
    assert "You've checked several references in a short time" in said and bot.codes() == []
    assert "a code is on its way" in bot.say("status of SP-PAY-1042", user="another-person")
    bot.clock.advance(hours=1, seconds=1)
    assert "a code is on its way" in bot.say("status of SP-PAY-1042")


def test_no_more_than_three_codes_an_hour_go_to_one_owner(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    for user in ("a", "b", "c", "d", "e"):
        assert "a code is on its way" in bot.say("status of SP-PAY-1042", user=user)
    assert len(bot.codes(to=THANDI_SMS)) == 3


def test_a_code_for_one_reference_does_not_unlock_another(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    code = bot.codes(to=THANDI_SMS)[0]
    bot.say("status of SP-DON-1001")  # asks about something else: a new challenge, for Lerato's record
    assert "That code isn't right" in bot.say(code)
