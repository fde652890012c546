"""Claims on shared work, by "processes" with their own connection pools (threads with their own
engines): dispatchers never send a row twice, keep each conversation's order, renew the lease of
a slow send, and write a send's outcome through a short database outage; each SLA timer and the
weekly report fire once; one process polls X at a time. A claim whose holder died is taken up
again once its lease runs out. On PostgreSQL the dispatchers take batches with
SELECT ... FOR UPDATE SKIP LOCKED; on SQLite (one writer at a time) they take rows one by one.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from core.channels import ChannelRegistry
from core.cursors import lease_cursor
from core.messages import Capabilities, OutboundMessage, Receipt
from core.outbox import Dispatcher, RetryPolicy
from core.storage.database import Database
from core.storage.desk import DeskTimer
from core.storage.models import OutboxItem
from core.timers import LEASE, WEEKLY_REPORT, Timers, WeeklyTime, add_timer


class SharedChannel:
    """A console channel several dispatchers send through; records (row text, start, end) per send."""

    name = "console"
    capabilities = Capabilities(buttons=False)

    def __init__(self, *, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.sends: list[tuple[int, str, float, float]] = []
        self._lock = threading.Lock()

    async def send(self, message: OutboundMessage) -> Receipt:
        started = time.monotonic()
        await asyncio.sleep(self.seconds)
        with self._lock:
            self.sends.append((message.conversation_id or 0, message.text, started, time.monotonic()))
            return Receipt(provider_message_id=f"r{len(self.sends)}")


def at_once(calls: list[Callable[[], object]]) -> None:
    """Each call in a thread of its own (another process, as far as the database can tell): all
    started before any is waited for."""
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def queue(fake_bot, users: int, per_user: int) -> None:  # type: ignore[no-untyped-def]
    """`per_user` replies waiting for each of `users` people, numbered so their order can be read back."""
    for position in range(per_user):
        for user in range(users):
            fake_bot.say("when is my payout", user=f"user-{user}", send=False)
    with fake_bot.database.transaction() as session:
        for row in session.scalars(select(OutboxItem).order_by(OutboxItem.id)):
            row.text = f"{row.id:06d}"


def run_dispatchers(
    url: str,
    channel: SharedChannel,
    *,
    count: int,
    policy: RetryPolicy,
    seconds: float,
    until_sent: int | None = None,
) -> None:
    """`count` dispatchers, each in its own thread with its own engine, looping for `seconds`
    (or until the channel has sent `until_sent` messages)."""

    def one() -> None:
        database = Database.from_url(url)
        dispatcher = Dispatcher(database, ChannelRegistry([channel]), policy=policy)

        async def loop() -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (until_sent is None or len(channel.sends) < until_sent):
                if not await dispatcher.dispatch_due():
                    await asyncio.sleep(0.02)

        try:
            asyncio.run(loop())
        finally:
            database.dispose()

    at_once([one] * count)


def statuses(database: Database) -> Counter[str]:
    with database.sessions() as session:
        return Counter(session.scalars(select(OutboxItem.status)))


def test_four_dispatchers_send_every_row_once_and_each_conversation_in_order(fake_bot, database_url: str) -> None:  # type: ignore[no-untyped-def]
    queue(fake_bot, users=12, per_user=4)
    channel = SharedChannel(seconds=0.01)
    run_dispatchers(database_url, channel, count=4, policy=RetryPolicy(), seconds=30, until_sent=48)

    assert statuses(fake_bot.database) == Counter({"sent": 48})
    texts = [text for _conversation, text, _start, _end in channel.sends]
    assert len(texts) == len(set(texts)) == 48
    by_conversation: dict[int, list[tuple[str, float, float]]] = {}
    for conversation, text, started, ended in channel.sends:
        by_conversation.setdefault(conversation, []).append((text, started, ended))
    for sends in by_conversation.values():
        sends.sort(key=lambda send: send[1])
        assert [text for text, _s, _e in sends] == sorted(text for text, _s, _e in sends)
        # one at a time: a conversation's next reply starts only after the previous one was sent
        assert all(later[1] >= earlier[2] for earlier, later in itertools.pairwise(sends))


def test_a_slow_send_keeps_its_lease_and_is_not_sent_again_by_another_dispatcher(fake_bot, database_url: str) -> None:  # type: ignore[no-untyped-def]
    queue(fake_bot, users=1, per_user=1)
    channel = SharedChannel(seconds=3.0)  # the send outlasts the lease more than twice over
    run_dispatchers(
        database_url,
        channel,
        count=2,
        policy=RetryPolicy(lease_seconds=1.2),
        seconds=4.5,
    )
    assert len(channel.sends) == 1
    assert statuses(fake_bot.database) == Counter({"sent": 1})


def test_an_outcome_is_written_once_the_database_answers_again(fake_bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    queue(fake_bot, users=1, per_user=1)
    channel = SharedChannel()
    dispatcher = Dispatcher(
        fake_bot.database,
        ChannelRegistry([channel]),
        policy=RetryPolicy(lease_seconds=10),
    )
    real_sent, failures = dispatcher._sent, [2]

    def sent_after_an_outage(sent) -> None:  # type: ignore[no-untyped-def]
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE outbox", {}, ConnectionError("server closed the connection"))
        real_sent(sent)

    monkeypatch.setattr(dispatcher, "_sent", sent_after_an_outage)
    assert asyncio.run(dispatcher.dispatch_due()) == 1
    assert failures == [0] and len(channel.sends) == 1
    assert statuses(fake_bot.database) == Counter({"sent": 1})


def test_one_of_many_processes_gets_a_new_pollers_lease(database: Database, database_url: str) -> None:
    engines = [Database.from_url(database_url) for _ in range(6)]
    results: list[bool] = []
    barrier = threading.Barrier(len(engines))

    def take(own: Database) -> None:
        barrier.wait()
        results.append(lease_cursor(own, "x-dm", owner=f"process-{id(own)}", seconds=60))

    at_once([partial(take, own) for own in engines])
    for own in engines:
        own.dispose()
    assert sorted(results) == [False] * 5 + [True]


def fire_together(url: str, *, count: int, now: datetime, fired: list[int]) -> list[int]:
    """`count` processes' timer loops (own engines, own threads) firing what is due at `now` at once;
    how many each fired. The handler records each timer it fires, in the timer's transaction."""
    lock = threading.Lock()

    def record(_session, timer: DeskTimer, _now: datetime) -> None:  # type: ignore[no-untyped-def]
        with lock:
            fired.append(timer.id)

    handlers = {"sla_reminder": record, "sla_breach": record, WEEKLY_REPORT: record}
    results: list[int] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        own = Database.from_url(url)
        try:
            timers = Timers(own, handlers)
            barrier.wait()
            results.append(timers.fire_due(now))
        finally:
            own.dispose()

    at_once([one] * count)
    return results


def test_each_due_timer_is_fired_by_exactly_one_of_several_processes(database: Database, database_url: str) -> None:
    now = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    with database.transaction() as session:
        for number in range(30):
            add_timer(
                session,
                key=f"sla_breach:{number}:0",
                kind="sla_breach",
                due_at=now - timedelta(seconds=number),
            )
        add_timer(
            session,
            key="sla_breach:later:0",
            kind="sla_breach",
            due_at=now + timedelta(minutes=5),
        )
    fired: list[int] = []
    results = fire_together(database_url, count=4, now=now, fired=fired)

    assert sum(results) == 30 and len(fired) == len(set(fired)) == 30
    with database.sessions() as session:
        states = Counter(session.scalars(select(DeskTimer.status)))
    assert states == Counter({"fired": 30, "pending": 1})


def test_a_timer_claimed_by_a_process_that_died_is_fired_by_another_once_the_lease_runs_out(
    database: Database,
) -> None:
    now = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    with database.transaction() as session:
        add_timer(session, key="sla_reminder:1:0", kind="sla_reminder", due_at=now)
    fired: list[tuple[int, datetime]] = []
    handlers = {"sla_reminder": lambda _s, timer, at: fired.append((timer.id, at))}
    dead = Timers(database, handlers)
    (timer_id,) = dead._due(now, 10)
    assert dead._claim(timer_id, now)  # ...and the process dies before firing it

    survivor = Timers(database, handlers)
    assert survivor.fire_due(now + LEASE - timedelta(seconds=1)) == 0  # the lease still runs
    assert survivor.fire_due(now + LEASE + timedelta(seconds=1)) == 1
    assert survivor.fire_due(now + LEASE * 3) == 0  # fired: never again
    assert fired == [(timer_id, now + LEASE + timedelta(seconds=1))]


def test_the_weekly_report_scheduled_by_every_process_is_one_timer_fired_once(
    database: Database, database_url: str
) -> None:
    zone = ZoneInfo("Africa/Johannesburg")
    sunday = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    weekly = WeeklyTime.parse("mon 08:00")
    engines = [Database.from_url(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))

    def schedule(own: Database) -> None:
        barrier.wait()
        Timers(own, {}).schedule_weekly(weekly, zone, sunday)

    at_once([partial(schedule, own) for own in engines])
    for own in engines:
        own.dispose()
    with database.sessions() as session:
        (timer,) = session.scalars(select(DeskTimer))
    assert (timer.kind, timer.key) == (WEEKLY_REPORT, "weekly_report:2026-02-02")

    fired: list[int] = []
    monday_8 = datetime(2026, 2, 2, 6, 0, tzinfo=UTC)
    assert sum(fire_together(database_url, count=4, now=monday_8, fired=fired)) == 1
    assert fired == [timer.id]


def test_a_pollers_lease_held_by_a_process_that_died_is_taken_over_once_it_runs_out(
    database: Database, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    start = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
    clock = [start]
    monkeypatch.setattr("core.cursors.utcnow", lambda: clock[0])
    assert lease_cursor(database, "x-dm", owner="dead-process", seconds=45)
    clock[0] = start + timedelta(seconds=44)
    assert not lease_cursor(database, "x-dm", owner="live-process", seconds=45)
    clock[0] = start + timedelta(seconds=46)
    assert lease_cursor(database, "x-dm", owner="live-process", seconds=45)
    assert not lease_cursor(database, "x-dm", owner="dead-process", seconds=45)  # back too late: taken
