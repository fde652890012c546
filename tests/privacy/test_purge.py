"""Retention: messages older than N days are erased with their outbox rows; what is still work stays,
and so do conversations and tickets."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from bots.privacy_cli import retention_loops
from bots.settings import load_settings
from core import privacy
from core.messages import InboundMessage
from core.privacy import Purged, purge, purge_if_due
from core.storage.database import Database
from core.storage.models import (
    Conversation,
    Message,
    OutboxItem,
    PollerCursor,
    Ticket,
    VerificationChallenge,
    VerificationEvent,
    utcnow,
)
from tests.core.test_status_fixtures import StatusBot, seed_payout
from tests.fakes.bot import ScriptedBot
from tests.fakes.knowledge import FakeKnowledge


def age(database: Database, days: int, *, user: str | None = None) -> None:
    """Make every message (of `user`'s conversations) `days` days old, with its outbox rows and verification trail."""
    then = utcnow() - timedelta(days=days)
    with database.transaction() as session:
        query = update(Message).values(created_at=then)
        if user is not None:
            ids = [c.id for c in session.scalars(select(Conversation)) if c.identity.user_id == user]
            query = query.where(Message.conversation_id.in_(ids))
        session.execute(query)
        if user is None:
            session.execute(update(VerificationEvent).values(created_at=then))
            session.execute(update(VerificationChallenge).values(created_at=then, expires_at=then))


def count(database: Database, model, *where) -> int:  # type: ignore[no-untyped-def]
    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_old_messages_go_and_recent_ones_stay(database) -> None:  # type: ignore[no-untyped-def]
    bot = ScriptedBot(database, FakeKnowledge())
    bot.say("when is my payout", user="old")
    bot.say("talk to a person", user="old")
    bot.say("when is my payout", user="recent")
    age(database, 40, user="old")
    recent = count(database, Message, Message.created_at > utcnow() - timedelta(days=1))

    result = purge(database, days=30)

    assert result.messages == 4 and result.outbox == 2  # two questions and two answers, one outbox row each answer
    assert count(database, Message) == recent
    assert count(database, OutboxItem) == recent // 2
    assert count(database, Ticket) == 1 and count(database, Conversation) == 2  # the support figures keep their rows
    assert purge(database, days=30).messages == 0  # nothing left to do


def test_what_is_still_work_is_kept(database) -> None:  # type: ignore[no-untyped-def]
    bot = ScriptedBot(database, FakeKnowledge())
    bot.say("when is my payout", user="queued", send=False)  # answered, the reply not sent yet
    stored = bot.inbox.receive(
        InboundMessage(channel="console", user_id="waiting", provider_message_id="unanswered", text="hi")
    )
    age(database, 90)
    result = purge(database, days=30)
    assert result.messages == 1  # only the queued reply's question: its answer's row is still pending
    with database.sessions() as session:
        assert session.get(Message, stored.message_id) is not None
        assert session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")) == 1


def test_old_verification_records_go_too_and_codes_lose_their_message(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    bot = StatusBot(database)
    bot.say("status of SP-PAY-1042", user="asker")
    assert count(database, VerificationEvent) > 0 and count(database, VerificationChallenge) == 1
    age(database, 31)
    result = purge(database, days=30)
    assert result.verification >= 2
    assert count(database, VerificationEvent) == 0 and count(database, VerificationChallenge) == 0
    assert count(database, Message) == 0


def test_a_challenge_outliving_its_code_message_loses_the_link(database) -> None:  # type: ignore[no-untyped-def]
    seed_payout(database)
    StatusBot(database).say("status of SP-PAY-1042", user="asker")
    age(database, 31, user="+27825550142")  # only the code SMS in the owner's conversation is old
    purge(database, days=30)
    with database.sessions() as session:
        challenge = session.scalars(select(VerificationChallenge)).one()
        assert challenge.message_id is None


@pytest.mark.parametrize("days", [0, -3])
def test_a_retention_shorter_than_a_day_is_refused(database, days: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        purge(database, days=days)


def test_of_several_processes_one_purges_once_per_period(database) -> None:  # type: ignore[no-untyped-def]
    """The worker's periodic purge: the process holding the lease purges when the period is up;
    the others, and the same process before then, do nothing. The last run survives a restart."""
    ScriptedBot(database, FakeKnowledge()).say("when is my payout", user="old")
    age(database, 40)
    now = utcnow()
    due = {"days": 30, "every": 3600.0, "lease": 180.0}
    first = purge_if_due(database, owner="web-1", now=now, **due)
    assert first is not None and first.messages == 2
    assert purge_if_due(database, owner="worker-1", now=now, **due) is None  # web-1 holds the lease
    assert purge_if_due(database, owner="web-1", now=now + timedelta(minutes=30), **due) is None  # not due yet
    later = now + timedelta(hours=1, seconds=1)
    assert purge_if_due(database, owner="web-1", now=later, **due) == Purged()  # due again: nothing old is left
    # web-1 stops; once its lease has lapsed, worker-1 takes over, but only when the period is up.
    assert purge_if_due(database, owner="worker-1", now=later + timedelta(minutes=5), **due) is None
    with database.transaction() as session:
        session.execute(update(PollerCursor).values(leased_until=utcnow() - timedelta(seconds=1)))
    assert purge_if_due(database, owner="worker-1", now=later + timedelta(minutes=5), **due) is None
    assert purge_if_due(database, owner="worker-1", now=later + timedelta(hours=1), **due) == Purged()


def test_the_loop_purges_and_survives_a_database_error(database, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ScriptedBot(database, FakeKnowledge()).say("when is my payout", user="old")
    age(database, 40)
    calls: list[str] = []
    real = privacy.purge_if_due

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("try")
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is away"))
        return real(*args, **kwargs)

    async def run_until_purged() -> None:
        task = asyncio.create_task(privacy.purge_forever(database, days=30, check=0.01))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if count(database, Message) == 0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    monkeypatch.setattr(privacy, "purge_if_due", flaky)
    asyncio.run(run_until_purged())
    assert count(database, Message) == 0 and len(calls) >= 2


def test_the_retention_loop_runs_only_when_a_retention_is_set(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    database = Database.from_url(database_url)
    try:
        assert retention_loops(load_settings(database_url=database_url), database) == []
        [loop] = retention_loops(load_settings(database_url=database_url, message_retention_days=30), database)
        loop.close()  # never started: a coroutine object, closed so it leaves no warning
    finally:
        database.dispose()
