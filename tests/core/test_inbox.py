"""The inbox: every message stored with its time, a provider's retry handled once, nothing stranded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from core.messages import InboundMessage
from core.storage.models import ChannelIdentity, Conversation, Message, OutboxItem


def count(database, model, *where) -> int:  # type: ignore[no-untyped-def]
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_every_message_in_and_out_is_stored_with_its_time(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("hello")
    fake_bot.say("when is my payout")
    with database.sessions() as session:
        stored = list(session.scalars(select(Message).order_by(Message.id)))
    assert [(m.direction, m.author) for m in stored] == [("in", "user"), ("out", "bot"), ("in", "user"), ("out", "bot")]
    assert all(m.created_at.tzinfo is not None and m.sent_at <= datetime.now(UTC) for m in stored)
    assert stored[2].processed_at is not None and stored[2].details["topic"] == "disbursement-timeline"


def test_a_repeated_delivery_is_stored_once_and_answered_once(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    first = fake_bot.say("when is my payout", message_id="provider-42")
    again = fake_bot.say("when is my payout", message_id="provider-42")
    assert "Payouts are sent" in first and again.text == ""
    assert count(database, Message, Message.direction == "in") == 1
    assert count(database, OutboxItem) == 1
    assert len(fake_bot.channel.sent) == 1


def test_concurrent_deliveries_of_one_message_are_stored_once(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    message = InboundMessage(channel="console", user_id="new-user", provider_message_id="dup-1", text="payout?")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: fake_bot.inbox.handle(message), range(8)))
    assert sum(not accepted.duplicate for accepted, _ in results) == 1
    assert sum(len(items) for _, items in results) == 1
    assert count(database, Message, Message.direction == "in") == 1


def test_the_same_id_on_another_channel_is_another_message(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    for channel in ("console", "api"):
        fake_bot.inbox.handle(InboundMessage(channel=channel, user_id="u", provider_message_id="7", text="hi"))
    assert count(database, Message, Message.direction == "in") == 2


def test_a_message_id_seen_before_is_a_duplicate_whoever_it_claims_to_come_from(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    """The id is the provider's, unique on its channel: a delivery under it from a sender never seen
    (whose first look finds no identity, so stores, fails on the id and looks again) or from
    another known sender is the first message again, not a new one."""
    first = fake_bot.inbox.receive(InboundMessage(channel="console", user_id="a", provider_message_id="m1", text="hi"))
    fake_bot.inbox.receive(InboundMessage(channel="console", user_id="b", provider_message_id="m2", text="hi"))
    for sender in ("never-seen", "b"):
        again = fake_bot.inbox.receive(
            InboundMessage(channel="console", user_id=sender, provider_message_id="m1", text="other")
        )
        assert again.duplicate and (again.message_id, again.conversation_id) == (
            first.message_id,
            first.conversation_id,
        )
    assert count(database, Message, Message.direction == "in") == 2
    assert count(database, Conversation) == 2


def test_each_user_has_their_own_conversation(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("hi", user="alice")
    fake_bot.say("hi", user="bob")
    fake_bot.say("payout?", user="alice")
    assert count(database, Conversation) == 2


def test_a_message_stored_but_never_answered_is_found_and_answered(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    # A process that died between storing and answering leaves the message unprocessed.
    accepted = fake_bot.inbox.receive(
        InboundMessage(channel="console", user_id="u", provider_message_id="crash-1", text="when is my payout")
    )
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert fake_bot.inbox.pending(before=later) == [accepted.message_id]
    items = fake_bot.inbox.process(accepted.message_id)
    asyncio.run(fake_bot.dispatcher.dispatch(items))
    assert "Payouts are sent" in fake_bot.channel.sent[-1].text
    assert fake_bot.inbox.pending(before=later) == []
    assert fake_bot.inbox.process(accepted.message_id) == []  # answering twice is impossible


def test_nul_bytes_and_control_characters_are_removed_before_storing(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    fake_bot.say("when is my\x00 payout\x07")
    with database.sessions() as session:
        inbound = session.scalars(select(Message).where(Message.direction == "in")).one()
    assert inbound.text == "when is my payout"


def test_messages_waiting_in_a_conversation_are_answered_in_the_order_written(fake_bot) -> None:  # type: ignore[no-untyped-def]
    first = fake_bot.inbox.receive(InboundMessage(channel="console", user_id="u", provider_message_id="a", text="hi"))
    second = fake_bot.inbox.receive(
        InboundMessage(channel="console", user_id="u", provider_message_id="b", text="payout")
    )
    items = fake_bot.inbox.process(second.message_id)  # the later one is picked up first
    asyncio.run(fake_bot.dispatcher.dispatch(items))
    texts = [message.text for message in fake_bot.channel.sent]
    assert "support assistant" in texts[0] and "Payouts are sent" in texts[1]
    assert fake_bot.inbox.process(first.message_id) == []


def test_a_transaction_that_fails_or_is_only_read_hands_the_write_turn_on(database) -> None:  # type: ignore[no-untyped-def]
    """Writers of one process queue for SQLite's lock on a lock of their own (core.storage.database):
    every way out of a transaction must release it, or the next one would wait its 30 s."""
    import threading
    import time

    import pytest

    def fail() -> None:
        with database.transaction() as session:
            session.scalar(select(func.count()).select_from(Message))
            raise ValueError("a bug half-way")

    with pytest.raises(ValueError):
        fail()
    with database.sessions() as session:  # a read, ended by a rollback
        session.scalar(select(func.count()).select_from(Message))
    finished: list[float] = []

    def write() -> None:
        started = time.monotonic()
        with database.transaction() as session:
            session.scalar(select(func.count()).select_from(Message))
        finished.append(time.monotonic() - started)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(finished) == 8 and max(finished) < 5


def test_messages_are_stored_and_answered_without_the_unit_of_work(fake_bot, database) -> None:  # type: ignore[no-untyped-def]
    """Every message is stored and answered with statements built once (core.conversation_rows):
    the session's flush, which costs more than those statements, is left to the rarer turns (a
    handoff, a status question)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    fake_bot.say("hello", send=False)  # the new user's rows
    flushed: list[str] = []

    def note(session: Session, _context: object, _instances: object) -> None:
        flushed.extend(type(instance).__name__ for instance in session.dirty | session.new)

    event.listen(Session, "before_flush", note)
    try:
        fake_bot.say("hi", send=False)  # a greeting ends any status question: there is none to end
        fake_bot.say("when is my payout", send=False)
        fake_bot.say("qwerty", send=False)  # a miss
    finally:
        event.remove(Session, "before_flush", note)
    assert flushed == []
    with database.sessions() as session:
        [_, _, payout, miss] = session.scalars(
            select(Message).where(Message.direction == "in").order_by(Message.id)
        ).all()
        conversation = session.get(Conversation, miss.conversation_id)
        identity = conversation.identity if conversation is not None else None
    assert payout.processed_at is not None and miss.processed_at is not None
    assert payout.details["topic"] == "disbursement-timeline" and payout.text == "when is my payout"
    assert conversation is not None and conversation.last_topic == "disbursement-timeline" and conversation.misses == 1
    assert identity is not None and identity.last_seen_at == miss.sent_at


ONE_STATEMENT_ONLY = pytest.mark.only_on(
    "postgresql", reason="SQLite has no INSERT or UPDATE inside WITH: there, rows are written a statement each"
)


@contextmanager
def writes(database) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """The INSERT and UPDATE statements (WITH ones too) run meanwhile."""
    from sqlalchemy import event

    seen: list[str] = []

    def note(_connection, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "WITH")):
            seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", note)


Rows = dict[str, dict[str, object]]


def one_statement_against_several(  # type: ignore[no-untyped-def]
    monkeypatch, write: Callable[[str], tuple[list[str], Rows]], *, several: int = 4
) -> Rows:
    """`write` for one user on PostgreSQL's one statement, then for another a statement a row
    (`several` of them): the first's rows, checked to be the second's."""
    import core.row_statements

    at_once, rows = write("one-statement")
    monkeypatch.setattr(core.row_statements, "ONE_STATEMENT_DIALECTS", ())
    each, expected = write("statement-each")
    assert len(at_once) == 1 and at_once[0].lstrip().upper().startswith("WITH"), at_once
    assert len(each) == several, each
    assert rows == expected
    return rows


@ONE_STATEMENT_ONLY
def test_an_answer_of_one_reply_is_one_statement_that_leaves_the_rows_of_four(fake_bot, database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL the usual answer (one reply in one part) is written in one statement
    (core.outbound_rows._ANSWER): the inbound message answered, the conversation's turn, the
    reply's record and its outbox row, exactly as the four statements written one by one."""

    def answered(user: str) -> tuple[list[str], Rows]:
        accepted = fake_bot.inbox.receive(
            InboundMessage(channel="console", user_id=user, provider_message_id=user, text="when is my payout")
        )
        with writes(database) as written:
            [item_id] = fake_bot.inbox.process(accepted.message_id)
        with database.sessions() as session:
            item = session.get(OutboxItem, item_id)
            assert item is not None
            rows = {
                "inbound": session.get(Message, accepted.message_id),
                "conversation": session.get(Conversation, accepted.conversation_id),
                "reply": session.get(Message, item.message_id),
                "item": item,
            }
            return written, {name: _columns(row) for name, row in rows.items()}

    rows = one_statement_against_several(monkeypatch, answered)
    assert rows["inbound"]["details"]["topic"] == "disbursement-timeline"
    assert rows["conversation"]["last_topic"] == "disbursement-timeline"
    assert "Payouts are sent" in str(rows["reply"]["text"]) and rows["item"]["status"] == "pending"


@ONE_STATEMENT_ONLY
def test_a_new_users_first_message_is_one_statement_that_leaves_the_rows_of_four(
    fake_bot, database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a new user's contact, identity and conversation are written with their first
    message in one statement (core.conversation_rows._FIRST_MESSAGE), as four would write them."""

    def stored(user: str) -> tuple[list[str], Rows]:
        message = InboundMessage(
            channel="console", user_id=user, provider_message_id=user, text="hi", display_name="Thandi"
        )
        with writes(database) as written:
            accepted = fake_bot.inbox.receive(message)
        with database.sessions() as session:
            conversation = session.get(Conversation, accepted.conversation_id)
            assert conversation is not None
            rows = {
                "message": session.get(Message, accepted.message_id),
                "conversation": conversation,
                "identity": conversation.identity,
                "contact": conversation.identity.contact,
            }
            return written, {name: _columns(row) for name, row in rows.items()}

    rows = one_statement_against_several(monkeypatch, stored)
    assert rows["identity"]["display_name"] == "Thandi" and rows["conversation"]["state"] == "bot"
    assert rows["message"]["text"] == "hi" and rows["message"]["processed_at"] is None
    # and the user's next message is theirs: the same identity and conversation
    with database.sessions() as session:
        first = session.scalars(select(Message).where(Message.provider_message_id == "one-statement")).one()
    again = fake_bot.inbox.receive(
        InboundMessage(channel="console", user_id="one-statement", provider_message_id="next", text="payout?")
    )
    assert not again.duplicate and again.conversation_id == first.conversation_id


@ONE_STATEMENT_ONLY
def test_a_known_users_next_message_is_one_statement_that_leaves_the_rows_of_two(
    fake_bot, database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a known user's message in their current conversation is written with the
    identity's last-seen time in one statement (core.conversation_rows._NEXT_MESSAGE), as two would."""

    def stored(user: str) -> tuple[list[str], Rows]:
        def sent(number: int, name: str | None) -> InboundMessage:
            at = datetime(2026, 11, 25, 9, 0, number, tzinfo=UTC)
            return InboundMessage(
                channel="console",
                user_id=user,
                provider_message_id=f"{user}-{number}",
                text="payout?",
                display_name=name,
                sent_at=at,
            )

        first = fake_bot.inbox.receive(sent(1, "Thandi"))
        with database.transaction() as session:  # as after the user's earlier message bounced
            gone = datetime(2026, 11, 25, tzinfo=UTC)
            session.execute(update(ChannelIdentity).where(ChannelIdentity.user_id == user).values(unreachable_at=gone))
        with writes(database) as written:
            accepted = fake_bot.inbox.receive(sent(2, "Thandi M."))
        assert accepted.conversation_id == first.conversation_id and not accepted.duplicate
        with database.sessions() as session:
            conversation = session.get(Conversation, accepted.conversation_id)
            assert conversation is not None
            rows = {"message": session.get(Message, accepted.message_id), "identity": conversation.identity}
            return written, {name: _columns(row) for name, row in rows.items()}

    rows = one_statement_against_several(monkeypatch, stored, several=2)
    assert rows["identity"]["display_name"] == "Thandi M." and rows["identity"]["unreachable_at"] is None
    assert rows["message"]["text"] == "payout?" and rows["message"]["options"] == []


def _columns(row: object) -> dict[str, object]:
    """A row's columns but those that differ between two users' answers; a time, as that it is set."""
    differ = {"id", "conversation_id", "message_id", "identity_id", "contact_id", "user_id", "provider_message_id"}
    values = {column.key: getattr(row, column.key) for column in row.__table__.columns}  # type: ignore[attr-defined]
    return {
        key: "a time" if isinstance(value, datetime) else value for key, value in values.items() if key not in differ
    }
