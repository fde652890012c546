"""The desk in the core: tickets' moves, the handoff's wait, masking, ratings, the incident note, dialogue reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core import csat, incidents
from core.channels import ChannelRegistry
from core.conversation_rows import find_or_add_identity, open_conversation
from core.desk import HumanDesk
from core.desk_summary import mask_numbers
from core.dialogue import Reply
from core.errors import InvalidTransition
from core.handoff import (
    HandoffRequest,
    Priority,
    TicketStatus,
    move_ticket,
    open_ticket,
)
from core.hours import SupportHours
from core.sla import ServiceLevels
from core.storage.database import Database
from core.storage.models import Ticket
from tests.fakes.bot import ScriptedBot
from tests.fakes.knowledge import FakeKnowledge

ZONE = ZoneInfo("Africa/Johannesburg")


def desk_at(moment: datetime) -> HumanDesk:
    levels = ServiceLevels(SupportHours.parse("mon-fri 08:00-17:00", ZONE))
    return HumanDesk(live=True, levels=levels, channels=ChannelRegistry(), clock=lambda: moment)


@pytest.mark.parametrize(
    ("moment", "said"),
    [
        (datetime(2026, 2, 2, 10, 0, tzinfo=ZONE), "Someone usually answers within 2 minutes."),
        (datetime(2026, 2, 2, 7, 0, tzinfo=ZONE), "they're back today at 08:00 SAST"),
        (datetime(2026, 2, 2, 18, 0, tzinfo=ZONE), "they're back tomorrow at 08:00 SAST"),
        (datetime(2026, 2, 6, 18, 0, tzinfo=ZONE), "they're back on Monday at 08:00 SAST"),
    ],
)
def test_the_expected_wait_is_the_target_or_when_the_desk_opens(moment: datetime, said: str) -> None:
    assert said in desk_at(moment).expected_wait("telegram", moment)
    assert "4 hours" in desk_at(datetime(2026, 2, 2, 10, tzinfo=ZONE)).expected_wait(
        "sms", datetime(2026, 2, 2, 10, tzinfo=ZONE)
    )


def test_ticket_moves_are_written_down_and_a_bad_one_raises() -> None:
    ticket = Ticket(reference="SP-AAAAAA", conversation_id=1, reason="x", status="open")
    for target in (TicketStatus.ASSIGNED, TicketStatus.RESOLVED, TicketStatus.OPEN, TicketStatus.RETURNED):
        move_ticket(ticket, target)
    with pytest.raises(InvalidTransition, match="from returned to resolved"):
        move_ticket(ticket, TicketStatus.RESOLVED)
    assert Priority.NORMAL.raised() is Priority.HIGH and Priority.HIGH.raised() is Priority.URGENT
    assert Priority.URGENT.raised() is Priority.URGENT


def test_a_handed_back_ticket_is_reused_and_priority_only_rises(database: Database) -> None:
    with database.transaction() as session:
        conversation = open_conversation(session, find_or_add_identity(session, channel="telegram", user_id="7"))
        ticket = open_ticket(session, conversation, HandoffRequest("asked", Priority.HIGH))
        move_ticket(ticket, TicketStatus.RETURNED)
        again = open_ticket(session, conversation, HandoffRequest("asked again"))
        assert (again.id, again.status, again.priority) == (ticket.id, "open", "high")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("my account 1234567890 please", "my account ••••7890 please"),
        ("card 4111 1111 1111 1111", "card ••••1111"),
        ("call +27 82 000 0002", "call ••••0002"),
        ("reference SP-PAY-1042 and 2026", "reference SP-PAY-1042 and 2026"),
    ],
)
def test_long_numbers_keep_only_their_last_four_digits(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


@pytest.mark.parametrize(
    ("text", "score", "comment"),
    [
        ("5", 5, None),
        ("4/5", 4, None),
        ("3 stars - slow but kind", 3, "slow but kind"),
        ("5 (excellent)", 5, None),
        ("1, never again", 1, "never again"),
    ],
)
def test_a_rating_and_its_comment_are_read(database: Database, text: str, score: int, comment: str | None) -> None:
    with database.transaction() as session:
        conversation = open_conversation(session, find_or_add_identity(session, channel="telegram", user_id="8"))
        ticket = open_ticket(session, conversation, HandoffRequest("asked"))
        csat.ask(ticket)
        turn = csat.take(session, ticket, text, name="Thandi", now=datetime.now(UTC))
        assert turn is not None and (ticket.csat_score, ticket.csat_comment) == (score, comment)
        assert ticket.csat_step == (None if comment else "comment")
        ticket.csat_step = "rating"
        assert csat.take(session, ticket, "when is my payout", name="Thandi", now=datetime.now(UTC)) is None
        assert csat.take(session, ticket, "15", name="Thandi", now=datetime.now(UTC)) is None


def test_the_incident_note_goes_above_the_first_reply_but_never_above_a_code(database: Database) -> None:
    with database.transaction() as session:
        assert incidents.with_note(session, [Reply("hi")]) == [Reply("hi")]
        incidents.set_note(session, "Payouts are late today.", agent_id="U1", agent_name="Sipho", now=datetime.now(UTC))
        [code, answer] = incidents.with_note(session, [Reply("123456", redacted="●●●"), Reply("Thanks")])
        assert code.text == "123456" and answer.text.startswith("⚠️ **Service notice:** Payouts are late today.")
        incidents.clear(session, agent_id="U2", agent_name="Lerato", now=datetime.now(UTC))
        assert incidents.with_note(session, [Reply("hi")]) == [Reply("hi")]


def test_a_note_set_in_another_process_shows_within_a_few_seconds(
    database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process keeps the note it read for NOTE_SECONDS; its own changes show at once."""
    now = [1000.0]
    monkeypatch.setattr(incidents, "_clock", lambda: now[0])
    other = Database.from_url(database_url)  # another process's engine on the same database
    try:

        def answer() -> str:
            with database.transaction() as session:
                return incidents.with_note(session, [Reply("hi")])[0].text

        assert answer() == "hi"
        with other.transaction() as session:
            incidents.set_note(session, "Payouts are late.", agent_id="U1", agent_name=None, now=datetime.now(UTC))
        assert answer() == "hi"  # kept
        now[0] += incidents.NOTE_SECONDS
        assert "Payouts are late." in answer()
        with database.transaction() as session:  # cleared here: gone at once
            incidents.clear(session, agent_id="U1", agent_name=None, now=datetime.now(UTC))
        assert answer() == "hi"
        with database.transaction() as session:  # set and rolled back here: never kept
            incidents.set_note(session, "Not sent.", agent_id="U1", agent_name=None, now=datetime.now(UTC))
            assert "Not sent." in incidents.with_note(session, [Reply("hi")])[0].text
            session.rollback()
        assert answer() == "hi"
    finally:
        other.dispose()


def test_accepting_a_person_after_two_misses_is_recorded_as_the_bot_not_answering(database: Database) -> None:
    class OpenDesk:
        def accepts_handoffs(self) -> bool:
            return True

    bot = ScriptedBot(database, FakeKnowledge(), desk=OpenDesk())
    bot.say("qwerty")
    assert "pass you to a person" in bot.say("asdfgh")
    bot.say("yes")
    [ticket] = bot.tickets()
    assert ticket.reason == "bot could not answer"


def test_without_a_live_desk_nothing_is_posted(database: Database) -> None:
    from sqlalchemy import select

    from core.storage.desk import DeskPost

    bot = ScriptedBot(
        database,
        FakeKnowledge(),
        desk=HumanDesk(
            live=False,
            levels=ServiceLevels(SupportHours.parse("mon-sun 00:00-23:59", ZONE)),
            channels=ChannelRegistry(),
        ),
    )
    said = bot.say("agent")
    assert "can't take over chats here yet" in said
    with database.sessions() as session:
        assert list(session.scalars(select(DeskPost))) == []
