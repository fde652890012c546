"""Forgetting a person (POPIA's erasure on request): their messages, identities, proofs and verification
trail are gone from every table; their tickets and conversations stay, with nothing about them;
everybody else is untouched."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
)

from core.privacy import ERASED, ContactQuery, forget, unlink_unknown
from core.records import Kind
from core.storage.database import Database
from core.storage.desk import DeskPost
from core.storage.models import (
    Base,
    ChannelIdentity,
    Conversation,
    IdentityLink,
    Message,
    Ticket,
    VerificationEvent,
)
from core.storage.records import StatusNotification
from tests.core.test_status_fixtures import StatusBot, seed, seed_payout

PHONE = "+27825550142"
PLATFORM_TABLES = {"campaigns", "disbursements", "contributions", "registrations", "alembic_version"}
THANDI_SAYS = "Thandi's own words: where is my payout SP-PAY-1042?"


def everything(database: Database, *, skip: set[str] = PLATFORM_TABLES) -> str:
    """Every value in every table but the platform's records, as one string to search."""
    with database.sessions() as session:
        rows = [
            repr(row)
            for table in Base.metadata.sorted_tables
            if table.name not in skip
            for row in session.execute(select(table))
        ]
    return "\n".join(rows)


def count(database: Database, model: Any, *where: Any) -> int:
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture()
def people(database: Database) -> StatusBot:
    """Thandi on SMS (with a ticket), Thandi's app on the console proving her phone with a code,
    and Sipho, who has nothing to do with her."""
    seed_payout(database)
    bot = StatusBot(database)
    bot.say(THANDI_SAYS, user=PHONE, channel="sms")
    bot.say("I want to talk to a person", user=PHONE, channel="sms")
    bot.say("status of SP-PAY-1042", user="thandi-app")
    [code] = bot.codes(to=PHONE)
    assert "Thanks, that's the right code" in bot.say(code, user="thandi-app")
    bot.say("when is my payout", user="sipho")
    bot.say("talk to a person please", user="sipho")
    with database.transaction() as session:
        identity = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id == PHONE)).one()
        session.add(
            StatusNotification(
                kind="disbursement",
                reference="SP-PAY-1042",
                change="disbursement.sent",
                identity_id=identity.id,
                delivery="text",
            )
        )
    return bot


def test_forgetting_a_phone_erases_the_person_everywhere_and_keeps_their_tickets_anonymous(database, people) -> None:  # type: ignore[no-untyped-def]
    tickets_before = [(t.reference, t.status) for t in people.tickets()]
    sipho_before = count(database, Message, Message.conversation_id == people.conversation("sipho").id)
    assert PHONE in everything(database) and "thandi-app" in everything(database)

    result = forget(database, PHONE)

    assert (result.identities, result.contacts, result.records_kept) == (2, 2, 1)  # SMS and the app; her campaign stays
    assert result.messages > 0 and result.identity_links == 1 and result.verification > 0
    left = everything(database)
    for trace in (PHONE, "825550142", "thandi-app", "Thandi's own words", "right code"):
        assert trace not in left, trace
    assert count(database, IdentityLink) == 0
    assert [(t.reference, t.status) for t in people.tickets()] == tickets_before  # both tickets kept
    assert count(database, Message, Message.conversation_id == people.conversation("sipho").id) == sipho_before
    with database.sessions() as session:
        notification = session.scalars(select(StatusNotification)).one()
        assert notification.identity_id is None  # the platform's change is kept, not who it was sent to
        placeholders = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id.like("forgotten:%"))).all()
        assert {p.channel for p in placeholders} == {"sms", "console"}
        assert all(p.opted_out_at and p.unreachable_at and p.display_name is None for p in placeholders)
        for conversation in session.scalars(
            select(Conversation).where(Conversation.identity_id.in_([p.id for p in placeholders]))
        ):
            assert conversation.status_reference is None and conversation.pending_options == []


def test_the_person_can_write_again_as_somebody_new(database, people) -> None:  # type: ignore[no-untyped-def]
    forget(database, PHONE)
    assert "Payouts are sent" in people.say("when is my payout", user=PHONE, channel="sms")
    assert count(database, ChannelIdentity, ChannelIdentity.user_id == PHONE) == 1


def test_forgetting_one_identity_leaves_everybody_else(database, people) -> None:  # type: ignore[no-untyped-def]
    thandi_before = count(database, Message) - count(
        database, Message, Message.conversation_id == people.conversation("sipho").id
    )
    result = forget(database, "console:sipho")
    assert (result.identities, result.tickets) == (1, 1)
    assert count(database, ChannelIdentity, ChannelIdentity.user_id == "sipho") == 0
    assert count(database, Message) == thandi_before
    assert count(database, ChannelIdentity, ChannelIdentity.user_id == PHONE) == 1


def test_forgetting_an_email_takes_the_identities_that_proved_it(database) -> None:  # type: ignore[no-untyped-def]
    seed(database, Kind.REGISTRATION, "SP-ENTRY-1042")  # Ayanda's: e-mail only
    bot = StatusBot(database, live=("console", "email"))
    bot.say("status of SP-ENTRY-1042", user="ayanda-app")
    [code] = bot.codes(channel="email")
    bot.say(code, user="ayanda-app")
    assert count(database, IdentityLink, IdentityLink.value == "ayanda@example.org") == 1
    result = forget(database, "Ayanda@Example.org")
    assert result.identities == 2  # the e-mail the code went to, and the app that proved it
    assert "ayanda" not in everything(database).lower()


def test_a_dry_run_counts_and_changes_nothing(database, people) -> None:  # type: ignore[no-untyped-def]
    before = everything(database)
    dry = forget(database, PHONE, dry_run=True)
    assert everything(database) == before
    assert forget(database, PHONE) == dry


def test_nobody_known_erases_nothing(database, people) -> None:  # type: ignore[no-untyped-def]
    before = everything(database)
    result = forget(database, "+27829999999")
    assert (result.identities, result.messages, result.records_kept) == (0, 0, 0)
    assert everything(database) == before


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("telegram:5550001", ContactQuery("identity", "5550001", "telegram")),
        ("whatsapp:+27 82 555 0142", ContactQuery("identity", PHONE, "whatsapp")),
        ("sms:0825550142", ContactQuery("identity", PHONE, "sms")),
        ("+27 82 555 0142", ContactQuery("phone", PHONE)),
        ("082 555 0142", ContactQuery("phone", PHONE)),
        (" Thandi@Example.org ", ContactQuery("email", "thandi@example.org")),
        ("email:thandi@example.org", ContactQuery("identity", "thandi@example.org", "email")),
    ],
)
def test_a_contact_is_a_channel_identity_a_phone_or_an_email(text: str, parsed: ContactQuery) -> None:
    assert ContactQuery.parse(text) == parsed


@pytest.mark.parametrize("text", ["", "nobody", "telegram:", "12", "@"])
def test_anything_else_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="channel:user_id, a phone number or an e-mail"):
        ContactQuery.parse(text)


def test_a_table_added_later_cannot_keep_an_erased_row_alive(database) -> None:  # type: ignore[no-untyped-def]
    """Rows of tables this module does not know are unlinked (nullable) or erased (not nullable)."""
    extra = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(extra)
    notes = Table(
        "desk_notes",
        extra,
        Column("id", Integer, primary_key=True),
        Column("message_id", ForeignKey("messages.id"), nullable=False),
        Column("note", String(50)),
    )
    echoes = Table(
        "desk_echoes",
        extra,
        Column("id", Integer, primary_key=True),
        Column("message_id", ForeignKey("messages.id"), nullable=True),
    )
    bot = StatusBot(database)
    bot.say("hello", user="u1")
    # All in one transaction, rolled back: the extra tables never outlive the test (DDL is
    # transactional on SQLite and PostgreSQL alike).
    with database.sessions() as session:
        session.begin()
        [message_id] = session.scalars(select(Message.id).where(Message.direction == "in")).all()
        notes.create(session.connection())
        echoes.create(session.connection())
        session.execute(insert(notes).values(message_id=message_id, note="typed by u1"))
        session.execute(insert(echoes).values(message_id=message_id))
        touched = unlink_unknown(session, {"messages": [message_id]}, metadata=extra)
        assert touched == {"desk_notes": 1, "desk_echoes": 1}
        assert session.scalar(select(func.count()).select_from(notes)) == 0
        assert session.scalar(select(echoes.c.message_id)) is None
        session.rollback()


def test_verification_events_of_others_about_the_same_reference_stay(database, people) -> None:  # type: ignore[no-untyped-def]
    people.say("status of SP-PAY-1042", user="mallory")  # somebody else asks about her payout
    forget(database, PHONE)
    assert count(database, VerificationEvent) >= 1  # mallory's look-up is mallory's record, kept
    assert count(database, Ticket) == 2


def test_a_ticket_keeps_its_rating_but_not_the_persons_words_on_the_desk(database, people) -> None:  # type: ignore[no-untyped-def]
    thandi, sipho = people.conversation(PHONE).id, people.conversation("sipho").id
    with database.transaction() as session:
        for ticket in session.scalars(select(Ticket)):
            ticket.csat_score, ticket.csat_comment = (
                5,
                f"comment on {ticket.conversation_id}: Thandi Mokoena 0825550142",
            )
            session.add(
                DeskPost(ticket_id=ticket.id, kind="thread", text=f"> {THANDI_SAYS} ({ticket.conversation_id})")
            )
    forget(database, PHONE)
    with database.sessions() as session:
        tickets = {t.conversation_id: t for t in session.scalars(select(Ticket))}
        posts = {p.ticket_id: p.text for p in session.scalars(select(DeskPost))}
    forgotten = tickets[thandi]  # the same ticket, in the same conversation, now the placeholder's
    assert forgotten.csat_score == 5 and forgotten.csat_comment is None
    assert posts[forgotten.id] == ERASED
    assert tickets[sipho].csat_comment is not None and "Thandi's own words" in posts[tickets[sipho].id]
