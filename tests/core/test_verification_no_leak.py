"""The no-leak rule: somebody else's reference and a reference that does not exist get identical answers.

Each test plays the same conversation twice, about a real record that is not the asker's and
about a reference nobody has, and compares everything the asker is sent, byte for byte.
"""

from __future__ import annotations

import pytest

from core.records import Kind
from core.verification import Policy
from tests.core.test_status_fixtures import StatusBot, seed, seed_payout

REAL, MISSING = "SP-PAY-1042", "SP-PAY-9999"


def transcript(bot: StatusBot, user: str, lines: list[str]) -> list[tuple[bytes, tuple[str, ...]]]:
    return [(said.text.encode(), tuple(said.options)) for said in (bot.say(line, user=user) for line in lines)]


def both(
    bot: StatusBot, lines: list[str]
) -> tuple[list[tuple[bytes, tuple[str, ...]]], list[tuple[bytes, tuple[str, ...]]]]:
    real = transcript(bot, "alice", [line.format(ref=REAL) for line in lines])
    missing = transcript(bot, "bob", [line.format(ref=MISSING) for line in lines])
    return real, missing


@pytest.fixture()
def records(database):  # type: ignore[no-untyped-def]
    seed_payout(database, status="sent")
    return database


def test_asking_guessing_codes_and_getting_locked_out_read_the_same(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records)
    lines = ["Where is my payout?", "{ref}", *["123456"] * 5, "status of {ref}", "is {ref} paid?"]
    real, missing = both(bot, lines)
    assert real == missing
    assert b"a code is on its way" in real[1][0] and b"locked for an hour" in real[6][0]
    assert len(bot.codes()) == 1  # out of sight, the real owner did get a code


def test_without_code_channels_the_answers_read_the_same(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records, live=("console",))
    real, missing = both(bot, ["status of {ref}", "status of {ref}"])
    assert real == missing and b"can't send you a verification code" in real[0][0]


def test_rate_limited_askers_read_the_same(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records, policy=Policy(lookups_per_window=1))
    real, missing = both(bot, ["status of SP-PAY-5000", "status of {ref}"])
    assert real == missing and b"You've checked several references" in real[1][0]


def test_an_expired_code_reads_the_same(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records)
    bot.say(f"status of {REAL}", user="alice")
    bot.say(f"status of {MISSING}", user="bob")
    bot.clock.advance(minutes=11)
    assert bot.say("654321", user="alice") == bot.say("654321", user="bob")


def test_a_refund_request_for_somebody_elses_contribution_reads_the_same(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", status="cancelled")
    seed(database, Kind.CONTRIBUTION, "SP-DON-1001")
    bot = StatusBot(database)
    real = transcript(bot, "alice", ["I want a refund for SP-DON-1001", "000000"])
    missing = transcript(bot, "bob", ["I want a refund for SP-DON-9999", "000000"])
    assert real == missing and bot.tickets() == []


def test_a_record_with_no_phone_to_send_to_reads_the_same(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.CAMPAIGN, "SP-CAMP-1042", owner_phone=None)  # only an e-mail, and e-mail is off
    seed(database, Kind.DISBURSEMENT, REAL)
    bot = StatusBot(database)
    real, missing = both(bot, ["status of {ref}", "111111"])
    assert real == missing and bot.codes() == []


def test_an_unverified_asker_learns_nothing_about_the_record(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records)
    text = "\n".join(bot.say(line, user="alice").text for line in (f"status of {REAL}", "999999"))
    for secret in (
        "4,750",
        "5,000",
        "250",
        "4821",
        "Clean Water",
        "Thandi",
        "It was sent",
        "December",
        "+2782",
        "example.org",
    ):
        assert secret not in text


def test_the_owner_on_the_other_hand_gets_the_answer(records) -> None:  # type: ignore[no-untyped-def]
    bot = StatusBot(records)
    assert "R4,750.00" in bot.say(f"status of {REAL}", user="+27825550142", channel="sms")
