"""The outbox: replies are sent in order, retried with backoff, and dead-lettered after the last try."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.channels import ChannelRegistry
from core.deliveries import record_delivery
from core.errors import PermanentChannelError, TransientChannelError
from core.messages import Capabilities
from core.outbox import Dispatcher, RetryPolicy
from core.storage.database import Database
from core.storage.models import OutboxItem
from tests.fakes.channels import RecordingChannel


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture()
def queued(fake_bot):  # type: ignore[no-untyped-def]
    """Two replies queued for the same user and not yet sent."""
    fake_bot.say("hello", send=False)
    fake_bot.say("when is my payout", send=False)
    return fake_bot


def rows(database: Database) -> list[OutboxItem]:
    with database.sessions() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def test_replies_are_written_to_the_outbox_before_any_send(queued) -> None:  # type: ignore[no-untyped-def]
    items = rows(queued.database)
    assert [item.status for item in items] == ["pending", "pending"]
    assert "Payouts are sent" in items[1].text


def test_a_transient_failure_is_retried_after_backoff_then_sent(queued) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = RecordingChannel("console", failures=[TransientChannelError("503 from provider")])
    dispatcher = Dispatcher(queued.database, ChannelRegistry([channel]), clock=clock, policy=RetryPolicy(base_delay=10))
    for item in rows(queued.database):
        _move_due(queued.database, item.id, clock.now)

    assert asyncio.run(dispatcher.dispatch_due()) == 1  # the first row fails; the second waits behind it
    first, second = rows(queued.database)
    assert (first.status, first.attempts, second.status) == ("pending", 1, "pending")
    assert "503 from provider" in (first.last_error or "")
    assert first.next_attempt_at > clock.now

    assert asyncio.run(dispatcher.dispatch_due()) == 0  # not due yet, and order is kept
    clock.advance(11)
    assert asyncio.run(dispatcher.dispatch_due()) == 1  # the first row, then the one behind it
    assert asyncio.run(dispatcher.dispatch_due()) == 1
    assert [m.text.split(".")[0] for m in channel.sent][1] == "Payouts are sent after the campaign ends"
    assert [item.status for item in rows(queued.database)] == ["sent", "sent"]


def test_the_providers_retry_after_is_honoured(queued) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = RecordingChannel("console", failures=[TransientChannelError("429", retry_after=42)])
    dispatcher = Dispatcher(queued.database, ChannelRegistry([channel]), clock=clock)
    _move_due(queued.database, rows(queued.database)[0].id, clock.now)
    asyncio.run(dispatcher.dispatch_due())
    assert rows(queued.database)[0].next_attempt_at == clock.now + timedelta(seconds=42)


def test_after_the_last_attempt_a_row_is_dead_and_the_next_one_goes(queued) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    failures = [TransientChannelError("timeout") for _ in range(3)]
    channel = RecordingChannel("console", failures=failures)
    dispatcher = Dispatcher(
        queued.database, ChannelRegistry([channel]), clock=clock, policy=RetryPolicy(max_attempts=3, base_delay=1)
    )
    for _ in range(3):
        for item in rows(queued.database):
            _move_due(queued.database, item.id, clock.now)
        asyncio.run(dispatcher.dispatch_due())
        clock.advance(5)
    asyncio.run(dispatcher.dispatch_due())
    first, second = rows(queued.database)
    assert (first.status, first.attempts) == ("dead", 3)
    assert second.status == "sent"
    assert channel.attempts == 4


def test_a_permanent_failure_is_dead_at_once(queued) -> None:  # type: ignore[no-untyped-def]
    channel = RecordingChannel("console", failures=[PermanentChannelError("user blocked the bot")])
    dispatcher = Dispatcher(queued.database, ChannelRegistry([channel]))
    asyncio.run(dispatcher.dispatch([rows(queued.database)[0].id]))
    assert rows(queued.database)[0].status == "dead"


def test_a_leased_row_is_not_sent_twice_until_the_lease_expires(queued) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    channel = RecordingChannel("console")
    dispatcher = Dispatcher(
        queued.database, ChannelRegistry([channel]), clock=clock, policy=RetryPolicy(lease_seconds=30)
    )
    first = rows(queued.database)[0]
    _move_due(queued.database, first.id, clock.now)
    assert dispatcher._claim_checked(first.id) is not None  # a dispatcher took it and died before sending
    assert asyncio.run(dispatcher.dispatch([first.id])) == 0
    clock.advance(31)
    assert asyncio.run(dispatcher.dispatch([first.id])) == 1
    assert len(channel.sent) == 1


def test_the_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=2, max_delay=60)
    assert 1 <= policy.delay(1) <= 2
    assert 16 <= policy.delay(5) <= 32
    assert policy.delay(20) <= 60


def _move_due(database: Database, item_id: int, now: datetime) -> None:
    with database.transaction() as session:
        item = session.get(OutboxItem, item_id)
        assert item is not None
        item.next_attempt_at = now


def test_outside_the_reply_window_a_reply_is_withheld_not_sent(queued) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(hours=25)  # the user wrote 25 hours ago
    channel = RecordingChannel("console", capabilities=Capabilities(reply_window_hours=24))
    dispatcher = Dispatcher(queued.database, ChannelRegistry([channel]), clock=clock)
    first = rows(queued.database)[0]
    asyncio.run(dispatcher.dispatch([first.id]))
    first = rows(queued.database)[0]
    assert (first.status, first.last_error) == ("withheld", "outside the 24-hour reply window")
    assert channel.attempts == 0


def test_inside_the_reply_window_a_reply_goes(queued) -> None:  # type: ignore[no-untyped-def]
    channel = RecordingChannel("console", capabilities=Capabilities(reply_window_hours=24))
    asyncio.run(Dispatcher(queued.database, ChannelRegistry([channel])).dispatch([rows(queued.database)[0].id]))
    assert rows(queued.database)[0].status == "sent"


def test_an_unreachable_user_is_marked_and_not_tried_again_until_they_write(queued) -> None:  # type: ignore[no-untyped-def]
    channel = RecordingChannel("console", failures=[PermanentChannelError("bot was blocked", unreachable=True)])
    dispatcher = Dispatcher(queued.database, ChannelRegistry([channel]))
    first, second = rows(queued.database)
    asyncio.run(dispatcher.dispatch([first.id, second.id]))
    assert [row.status for row in rows(queued.database)] == ["dead", "withheld"]
    assert channel.attempts == 1
    said = queued.say("payout again")  # writing again makes them reachable: the reply goes
    assert "Payouts are sent" in said


def test_a_delivery_report_is_recorded_on_the_row(queued) -> None:  # type: ignore[no-untyped-def]
    channel = RecordingChannel("console")
    asyncio.run(Dispatcher(queued.database, ChannelRegistry([channel])).dispatch([rows(queued.database)[0].id]))
    assert record_delivery(queued.database, channel="console", receipt_id="console-1", status="delivered")
    assert not record_delivery(queued.database, channel="console", receipt_id="nope", status="delivered")
    assert rows(queued.database)[0].delivery_status == "delivered"


def test_a_template_may_go_outside_the_reply_window(queued) -> None:  # type: ignore[no-untyped-def]
    from core.messages import OutboundMessage, Template
    from core.outbound_rows import write_outbound
    from core.storage.models import Conversation

    # The two queued replies go first: a row waits behind earlier pending ones of its conversation.
    asyncio.run(
        Dispatcher(queued.database, ChannelRegistry([RecordingChannel("console")])).dispatch(
            [r.id for r in rows(queued.database)]
        )
    )
    with queued.database.transaction() as session:
        conversation = session.scalars(select(Conversation)).one()
        [item_id] = write_outbound(
            session,
            conversation,
            OutboundMessage(
                "console", "user-1", "Your payout was sent.", template=Template("HX123", (("1", "R4,750.00"),))
            ),
            capabilities=Capabilities(),
        )
    clock = Clock()
    clock.now = datetime.now(UTC) + timedelta(hours=30)
    channel = RecordingChannel("console", capabilities=Capabilities(reply_window_hours=24))
    asyncio.run(Dispatcher(queued.database, ChannelRegistry([channel]), clock=clock).dispatch([item_id]))
    assert channel.sent[0].template == Template("HX123", (("1", "R4,750.00"),))


def test_a_late_report_never_moves_delivery_backwards(queued) -> None:  # type: ignore[no-untyped-def]
    channel = RecordingChannel("console")
    asyncio.run(Dispatcher(queued.database, ChannelRegistry([channel])).dispatch([rows(queued.database)[0].id]))
    for status in ("delivered", "sent", "queued"):
        record_delivery(queued.database, channel="console", receipt_id="console-1", status=status)
    assert rows(queued.database)[0].delivery_status == "delivered"


def test_an_unreachable_report_marks_the_identity(queued) -> None:  # type: ignore[no-untyped-def]
    from core.storage.models import ChannelIdentity

    channel = RecordingChannel("console")
    asyncio.run(Dispatcher(queued.database, ChannelRegistry([channel])).dispatch([rows(queued.database)[0].id]))
    record_delivery(queued.database, channel="console", receipt_id="console-1", status="undelivered", unreachable=True)
    with queued.database.sessions() as session:
        assert session.scalars(select(ChannelIdentity)).one().unreachable_at is not None


async def test_a_stop_while_the_lease_renewer_winds_down_still_stops_the_dispatcher(database: Database) -> None:
    """A task cancelled just as a send's lease renewer is being wound down must end, not carry on."""
    dispatcher = Dispatcher(database, ChannelRegistry([]))

    async def sending_forever() -> None:
        while True:
            async with dispatcher._renewing({1}):
                await asyncio.sleep(0)

    for turns in range(12):  # cancel at each point of the loop in turn
        task = asyncio.create_task(sending_forever())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=2)
        assert task in done, f"the cancellation after {turns} turns was swallowed"
        assert task.cancelled()


def test_rows_leased_where_they_were_written_go_first_in_their_conversation_and_only_once(fake_bot) -> None:  # type: ignore[no-untyped-def]
    from core.messages import InboundMessage

    fake_bot.say("hello", send=False)  # an earlier reply of the same user, not sent yet
    database = fake_bot.database
    channel = RecordingChannel("console")
    dispatcher = Dispatcher(database, ChannelRegistry([channel]))
    accepted = fake_bot.inbox.receive(
        InboundMessage(channel="console", user_id="user-1", provider_message_id="lease-1", text="when is my payout")
    )
    leased: list = []  # type: ignore[type-arg]
    written = fake_bot.inbox.process(
        accepted.message_id, written=lambda session, ids: leased.extend(dispatcher.lease(session, ids))
    )
    assert written and leased == []  # behind the earlier pending reply: not leased, left to dispatch
    earlier = rows(database)[0]
    assert asyncio.run(dispatcher.dispatch([earlier.id])) == 1

    fake_bot.say("hi", user="user-2", send=False)  # a second user's first reply is first in line
    accepted = fake_bot.inbox.receive(
        InboundMessage(channel="console", user_id="user-3", provider_message_id="lease-2", text="hello")
    )
    leased.clear()
    written = fake_bot.inbox.process(
        accepted.message_id, written=lambda session, ids: leased.extend(dispatcher.lease(session, ids))
    )
    assert [item.id for item, _refusal in leased] == written[:1]
    assert dispatcher._claim_checked(written[0]) is None  # the lease holds: no other dispatcher takes it
    assert asyncio.run(dispatcher.dispatch_answers([(written, leased)])) == len(written)
    assert asyncio.run(dispatcher.dispatch(written)) == 0  # sent, never again
    assert [row.status for row in rows(database) if row.id in written] == ["sent"] * len(written)
    assert [message.user_id for message in channel.sent] == ["user-1", "user-3"]


def test_a_lease_reads_its_own_recipients_reach(fake_bot) -> None:  # type: ignore[no-untyped-def]
    """The lease returns each row with its recipient's identity, as the refusal check reads it."""
    from core.storage.models import ChannelIdentity

    fake_bot.say("hello", user="blocked", send=False)
    fake_bot.say("hello", user="reachable", send=False)
    with fake_bot.database.transaction() as session:
        blocked = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id == "blocked")).one()
        blocked.unreachable_at = datetime.now(UTC)
    dispatcher = Dispatcher(fake_bot.database, ChannelRegistry([RecordingChannel("console")]))
    first, second = rows(fake_bot.database)
    with fake_bot.database.transaction() as session:
        claims = dispatcher.lease(session, [first.id]) + dispatcher.lease(session, [second.id])
    assert {item.user_id: refusal for item, refusal in claims} == {
        "blocked": "the user cannot be reached on this channel",
        "reachable": None,
    }


def test_a_batchs_leases_in_one_statement_are_those_of_one_lease_after_the_other(fake_bot) -> None:  # type: ignore[no-untyped-def]
    """lease_all (a batch of answers) leases each answer's first row when nothing of its conversation
    is pending before it, and reads each recipient's reach, exactly as `lease` per answer does."""
    from core.storage.models import ChannelIdentity

    fake_bot.say("hello", user="twice", send=False)
    first_answer = len(rows(fake_bot.database))
    fake_bot.say("hi again", user="twice", send=False)  # behind the first answer's rows
    fake_bot.say("hello", user="blocked", send=False)
    fake_bot.say("hello", user="reachable", send=False)
    with fake_bot.database.transaction() as session:
        blocked = session.scalars(select(ChannelIdentity).where(ChannelIdentity.user_id == "blocked")).one()
        blocked.unreachable_at = datetime.now(UTC)
    by_user: dict[str, list[int]] = {}
    for row in rows(fake_bot.database):
        by_user.setdefault(row.user_id, []).append(row.id)
    twice = by_user["twice"]
    answers = [twice[:first_answer], twice[first_answer:], [], by_user["blocked"], by_user["reachable"]]
    dispatcher = Dispatcher(fake_bot.database, ChannelRegistry([RecordingChannel("console")]))

    def leased(claims: list) -> list[tuple[int, str | None]]:  # type: ignore[type-arg]
        return [(item.id, refusal) for item, refusal in claims]

    class RolledBack(Exception):
        pass

    one_by_one = []
    with pytest.raises(RolledBack), fake_bot.database.transaction() as session:
        one_by_one = [leased(dispatcher.lease(session, item_ids)) for item_ids in answers]
        raise RolledBack  # the leases are undone, for lease_all to take the same rows
    with fake_bot.database.transaction() as session:
        together = [leased(claims) for claims in dispatcher.lease_all(session, answers)]
    assert (
        together
        == one_by_one
        == [
            [(twice[0], None)],
            [],
            [],
            [(by_user["blocked"][0], "the user cannot be reached on this channel")],
            [(by_user["reachable"][0], None)],
        ]
    )
