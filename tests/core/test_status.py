"""Status answers, as conversations: every status of every record type, in plain words, to its owner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.records import Kind, find
from core.storage.records import Contribution
from tests.core.test_status_fixtures import LERATO, NOW, StatusBot, seed, seed_payout

THANDI_SMS = "+27825550142"  # the organiser's verified phone: on SMS and WhatsApp that is enough
LERATO_SMS = LERATO["owner_phone"]
HEAD = "Payout *SP-PAY-1042* for *Clean Water Gqeberha*: R4,750.00 (R5,000.00 minus R250.00 fees), by bank transfer."


def ask_as_organiser(database, text: str = "Where is my payout?"):  # type: ignore[no-untyped-def]
    bot = StatusBot(database)
    return bot, bot.say(text, user=THANDI_SMS, channel="sms")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"status": "pending_kyc"},
            "It's waiting for your identity check (KYC). Please upload the identity documents requested in your account's verification step",
        ),
        (
            {"status": "pending_kyc", "kyc_documents": ["a certified copy of your ID", "proof of address"]},
            "Please upload a certified copy of your ID, proof of address in your SayPro account",
        ),
        ({"status": "scheduled"}, "It's scheduled for Saturday 5 December 2026."),
        ({"status": "processing"}, "It's being processed, expected by Saturday 5 December 2026."),
        (
            {"status": "sent", "paid_at": NOW - timedelta(days=1)},
            "It was sent to the bank account ending 4821 on Wednesday 2 December 2026.",
        ),
        (
            {"status": "received", "paid_at": NOW},
            "It was paid into the bank account ending 4821 on Thursday 3 December 2026.",
        ),
        (
            {"status": "sent", "method": "paypal", "destination_last4": None, "paid_at": NOW},
            "by PayPal.\n\nIt was sent to your PayPal account on",
        ),
        (
            {"status": "sent", "method": "mobile_money", "destination_last4": "0142", "paid_at": NOW},
            "the mobile money number ending 0142",
        ),
    ],
)
def test_each_payout_status_is_told_in_plain_words(database, fields, expected: str) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database, **fields)
    bot, said = ask_as_organiser(database)
    assert expected in said
    assert said.text.startswith(HEAD.split(":")[0]) and "R4,750.00" in said
    assert "1. Main menu\n2. Talk to a person" in said and bot.tickets() == []


def test_the_whole_payout_answer_reads_like_this(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database, status="sent", paid_at=NOW - timedelta(days=1))
    _bot, said = ask_as_organiser(database)
    assert said.text == (
        f"{HEAD}\n\nIt was sent to the bank account ending 4821 on Wednesday 2 December 2026. Depending on "
        "your bank, it can take a few business days to show.\n\n1. Main menu\n2. Talk to a person\n\nReply with a number."
    )


@pytest.mark.parametrize(
    ("fields", "expected", "reason"),
    [
        (
            {"status": "failed", "failure_reason": "The bank rejected the account number."},
            "The payment failed: The bank rejected the account number. To fix it, check the payout details",
            "payout failed",
        ),
        (
            {"status": "on_hold", "failure_reason": "a dispute from a backer"},
            "It's on hold while our team reviews it: a dispute from a backer.",
            "payout on hold",
        ),
        (
            {"status": "scheduled", "expected_at": NOW - timedelta(days=3)},
            "It was expected by Monday 30 November 2026 and is late.",
            "payout late",
        ),
        (
            {"status": "processing", "expected_at": NOW - timedelta(days=1)},
            "and is late. I'm sorry about that",
            "payout late",
        ),
    ],
)
def test_a_failed_held_or_late_payout_opens_a_high_priority_ticket(
    database, fields, expected: str, reason: str
) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database, **fields)
    bot, said = ask_as_organiser(database)
    [ticket] = bot.tickets()
    assert expected in said and ticket.reference in said and "support@example.org" in said
    assert (ticket.priority, ticket.reason) == ("high", reason)


def test_a_payout_due_today_is_not_late(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database, status="processing", expected_at=NOW - timedelta(hours=2))
    bot, said = ask_as_organiser(database)
    assert "late" not in said.text and bot.tickets() == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("succeeded", "Contribution *SP-DON-1001* of R500.00 to *Clean Water Gqeberha*: the payment went through."),
        ("failed", "the payment didn't go through, so you weren't charged."),
        ("refund_requested", "your refund was requested on Wednesday 2 December 2026 and is being processed."),
        ("refunded", "it was refunded on Wednesday 2 December 2026. It can take a few business days"),
    ],
)
def test_each_contribution_status_is_told_to_its_backer(database, status: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001", status=status)
    bot = StatusBot(database)
    said = bot.say("did my refund go through? SP-DON-1001", user=LERATO_SMS, channel="sms")
    assert expected in said and bot.tickets() == []


def test_a_chargeback_opens_a_high_priority_ticket(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001", status="charged_back")
    bot = StatusBot(database)
    said = bot.say("what happened to SP-DON-1001", user=LERATO_SMS, channel="sms")
    assert "your bank reversed the payment (a chargeback)" in said
    assert [t.priority for t in bot.tickets()] == ["high"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"submission_status": "not_submitted"},
            "- Submission: not submitted yet\n\nYou have until Sunday 13 December 2026 to submit.",
        ),
        ({"submission_status": "received"}, "- Submission: received\n\nThe deadline is Sunday 13 December 2026."),
        ({"submission_status": "under_review"}, "- Submission: received and being judged"),
        ({"submission_status": "accepted"}, "- Submission: accepted"),
        (
            {"submission_status": "disqualified"},
            "- Submission: disqualified\n\nThe deadline is Sunday 13 December 2026.\n\nIf you think this is a mistake, you can appeal",
        ),
        ({"fee_status": "pending"}, "- Entry fee: not paid yet: pay it on your entry page"),
        ({"fee_status": "failed", "status": "pending"}, "- Registration: pending\n- Entry fee: the payment failed"),
        ({"status": "waitlisted"}, "- Registration: waitlisted"),
        ({"deadline": NOW - timedelta(days=2)}, "The deadline passed on Tuesday 1 December 2026."),
    ],
)
def test_each_contest_entry_status_is_told_to_its_participant(database, fields, expected: str) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.REGISTRATION, "SP-ENTRY-5005", owner_phone="+27830000001", **fields)
    bot = StatusBot(database)
    said = bot.say("has my entry been received?", user="+27830000001", channel="sms")
    assert said.text.startswith("Entry *SP-ENTRY-5005* for *SayPro Youth Innovation Challenge*:")
    assert expected in said


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", "it's live and has raised R5,000.00 so far."),
        ("ended", "it has ended, having raised R5,000.00.\n- Payout *SP-PAY-1042*: scheduled"),
        ("cancelled", "it was cancelled, having raised R5,000.00. Backers can ask for a refund."),
        ("failed", "it didn't reach its goal (it raised R5,000.00)."),
    ],
)
def test_each_campaign_status_is_told_to_its_organiser(database, status: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", status=status)
    if status == "ended":
        seed(database, Kind.DISBURSEMENT, "SP-PAY-1042")
    bot = StatusBot(database)
    said = bot.say("status of SP-CAMP-1042", user=THANDI_SMS, channel="sms")
    assert said.text.startswith("Campaign *SP-CAMP-1042*, *Clean Water Gqeberha*:") and expected in said


def test_amounts_are_said_as_their_currency_shows_them(database) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from core.status_answers import money

    assert money(Decimal(4750), "ZAR") == "R4,750.00"
    assert money(Decimal("1234567.5"), "USD") == "$1,234,567.50"
    assert money(Decimal("99.999"), "XOF") == "XOF 100.00"


# --- The conversation around the answer ---------------------------------------------------------


def test_without_a_reference_the_bot_asks_for_it_and_then_sends_a_code(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    said = bot.say("Where is my payout?")
    assert "Please send me the reference of the payout" in said and said.options == []
    assert bot.conversation().status_step == "reference"
    said = bot.say("sp-pay-1042")  # a bare reference answers the question
    assert "If this reference is yours, a code is on its way to the phone or email on its record" in said
    assert bot.conversation().status_step == "code" and bot.conversation().status_reference == "SP-PAY-1042"
    assert len(bot.codes(to=THANDI_SMS)) == 1


def test_a_refund_request_asks_for_the_contribution(database) -> None:  # type: ignore[no-untyped-def]
    said = StatusBot(database).say("I want a refund for my donation")
    assert "the reference of the contribution" in said and "SP-DON-1042" in said


def test_an_owner_with_several_records_picks_one_from_a_list(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database, status="sent", paid_at=NOW)
    seed(database, Kind.DISBURSEMENT, "SP-PAY-2042", status="processing", expected_at=NOW + timedelta(days=1))
    bot = StatusBot(database)
    said = bot.say("where is my payout", user=THANDI_SMS, channel="sms")
    assert "Which one do you mean?" in said
    assert "1. SP-PAY-1042 · Clean Water Gqeberha\n2. SP-PAY-2042 · Clean Water Gqeberha\n3. Talk to a person" in said
    assert "It's being processed, expected by Friday 4 December 2026." in bot.say("2", user=THANDI_SMS, channel="sms")


def test_a_backer_of_a_cancelled_campaign_gets_a_refund_request_and_a_ticket(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", status="cancelled")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    bot = StatusBot(database)
    said = bot.say("I want a refund for my donation", user=LERATO_SMS, channel="sms")
    [ticket] = bot.tickets()
    assert said.text.startswith("Backers can get a refund when a campaign is cancelled or doesn't reach its goal.")
    assert "Your contribution *SP-DON-1001* of R500.00 qualifies, because the campaign was cancelled." in said
    assert ticket.reference in said and (ticket.priority, ticket.reason, ticket.topic) == (
        "normal",
        "refund request",
        "refund-request",
    )
    with database.sessions() as session:
        contribution = session.scalars(select(Contribution)).one()
        assert contribution.refund_ticket == ticket.reference and contribution.refund_requested_at is not None
        assert contribution.history[-1]["field"] == "refund_request"
    again = bot.say("did my refund go through?", user=LERATO_SMS, channel="sms")
    assert (
        f"You asked for a refund on Thursday 3 December 2026; our team is handling it under reference *{ticket.reference}*."
        in again
    )
    assert len(bot.tickets()) == 1


def test_the_refund_option_on_a_status_answer_records_the_request(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", status="failed")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    bot = StatusBot(database)
    said = bot.say("status of SP-DON-1001", user=LERATO_SMS, channel="sms")
    assert (
        "This campaign didn't reach its goal, so you can ask for a refund.\n\n1. Ask for a refund\n2. Talk to a person"
        in said
    )
    assert "I've recorded your refund request." in bot.say("1", user=LERATO_SMS, channel="sms")


def test_a_contribution_to_a_running_campaign_does_not_qualify(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", status="active")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    bot = StatusBot(database)
    said = bot.say("please refund my contribution SP-DON-1001", user=LERATO_SMS, channel="sms")
    assert "is to a campaign that is still running, so it doesn't qualify for a refund on those grounds" in said
    assert bot.tickets() == []
    with database.sessions() as session:
        assert isinstance(found := find(session, "SP-DON-1001"), Contribution) and found.refund_requested_at is None


def test_the_menu_ends_a_pending_status_question_and_a_faq_question_does_not(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042")
    assert "Payouts are sent after the campaign ends" in bot.say("when is my payout")  # an FAQ in between
    assert bot.conversation().status_step == "code"
    bot.say("menu")
    assert bot.conversation().status_step is None


def test_a_pending_verification_survives_a_restart_of_every_process(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    before = StatusBot(database)
    before.say("status of SP-PAY-1042")
    [code] = before.codes(to=THANDI_SMS)
    after = StatusBot(database, clock=before.clock)  # new inbox, status service, dispatcher: nothing in memory
    assert "Thanks, that's the right code." in after.say(code)


def test_a_status_answer_is_never_given_to_a_quiet_conversation_with_an_agent(database) -> None:  # type: ignore[no-untyped-def]
    class OpenDesk:
        def accepts_handoffs(self) -> bool:
            return True

    seed_payout(database)
    bot = StatusBot(database, desk=OpenDesk())
    bot.say("agent", user=THANDI_SMS, channel="sms")
    assert bot.say("where is my payout", user=THANDI_SMS, channel="sms").text == ""
