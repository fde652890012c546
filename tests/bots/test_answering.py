"""Answering in lanes and batches (bots.answering), the intake's own threads (bots.intake.store),
and, with ANSWERS_BY_WORKERS, the workers answering what the web processes stored (bots.worker)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from anyio import to_thread
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from bots import intake
from bots.answering import Answer, Answerer
from bots.intake import STORE_BATCH, answer, store
from bots.settings import load_settings
from bots.wiring import Services, build
from bots.worker import answer_waiting
from core import waiting
from core.inbox import CONFLICT_ATTEMPTS, Accepted
from core.messages import Capabilities, InboundMessage
from core.storage.models import Message, OutboxItem, utcnow
from tests.fakes.channels import RecordingChannel
from tests.fakes.knowledge import FakeKnowledge

USERS = 40


class CountingAnswerer(Answerer):
    """Records the size of every batch and the most batches worked on at once."""

    def __init__(self, services: Services, **options: int) -> None:
        super().__init__(services.inbox, services.dispatcher, services.answerer.throttle, **options)
        self.sizes: list[int] = []
        self.busy = self.most_busy = 0
        self.lock = threading.Lock()

    def _answer_all(self, message_ids: list[int]) -> list[Answer]:
        with self.lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            self.sizes.append(len(message_ids))
        try:
            return super()._answer_all(message_ids)
        finally:
            with self.lock:
                self.busy -= 1


def built(database_url: str, **settings: object) -> Services:
    # SMS-like: a reply longer than 30 characters goes in parts
    channel = RecordingChannel("fake", capabilities=Capabilities(max_text_length=30))
    return build(load_settings(database_url=database_url, **settings), channels=(channel,), knowledge=FakeKnowledge())


@pytest.fixture()
def services(database_url: str):  # type: ignore[no-untyped-def]
    services = built(database_url)
    yield services
    services.database.dispose()


def received(services: Services, users: int, text: str = "when is my payout") -> list[int]:
    return [
        services.inbox.receive(
            InboundMessage(channel="fake", user_id=f"u{n}", provider_message_id=f"m{n}", text=text)
        ).message_id
        for n in range(users)
    ]


def outbox(services: Services) -> list[OutboxItem]:
    with services.database.sessions() as session:
        return list(session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


def unanswered(services: Services) -> int:
    with services.database.sessions() as session:
        query = select(Message.id).where(Message.direction == "in", Message.processed_at.is_(None))
        return len(list(session.scalars(query)))


async def test_concurrent_callers_are_answered_once_in_batches_by_at_most_two_lanes(services: Services) -> None:
    answerer = CountingAnswerer(services, lanes=2, batch=8)
    ids = received(services, USERS)
    await asyncio.gather(*(answerer.answer([message_id]) for message_id in ids))
    channel = services.channels.get("fake")
    assert sum(answerer.sizes) == USERS and max(answerer.sizes) <= 8 and len(answerer.sizes) < USERS
    assert answerer.most_busy <= 2
    parts = Counter(row.user_id for row in outbox(services))
    assert set(parts) == {f"u{n}" for n in range(USERS)} and len(set(parts.values())) == 1  # one reply each
    assert Counter(message.user_id for message in channel.sent) == parts
    assert unanswered(services) == 0


async def test_every_part_of_a_reply_is_sent_in_order_and_written_sent(services: Services) -> None:
    ids = received(services, 3)
    await services.answerer.answer(ids)
    rows = outbox(services)
    channel = services.channels.get("fake")
    assert len(rows) > 3  # "Payouts are sent after the campaign ends.", in parts
    assert {row.status for row in rows} == {"sent"} and all(row.receipt_id for row in rows)
    for n in range(3):
        parts = [message.text for message in channel.sent if message.user_id == f"u{n}"]
        assert parts == [row.text for row in rows if row.user_id == f"u{n}"]


async def test_a_database_failure_mid_batch_sends_what_was_answered_and_leaves_the_rest(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    answerer = CountingAnswerer(services, lanes=1, batch=8)
    ids = received(services, 4)
    real, calls = answerer._answer_one, [0]

    def fails_second(message_id: int) -> Answer:
        calls[0] += 1
        if calls[0] == 2:
            raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))
        return real(message_id)

    def outage(*_args: object, **_kwargs: object) -> list[list[int]]:
        raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(services.inbox, "process_all", outage)  # the batch's transaction fails first
    monkeypatch.setattr(answerer, "_answer_one", fails_second)
    await answerer.answer(ids)  # no error for the caller: the sweep answers the rest
    assert {message.user_id for message in services.channels.get("fake").sent} == {"u0"}
    assert unanswered(services) == 3
    assert len(services.inbox.pending(before=utcnow() + timedelta(minutes=1))) == 3


def commits(services: Services) -> list[int]:
    """A list that counts the transactions committed on the services' database from now on."""
    counted: list[int] = []
    event.listen(services.database.engine, "commit", lambda _connection: counted.append(1))
    return counted


def test_a_batch_is_answered_in_one_transaction_each_message_in_order_and_once(services: Services) -> None:
    ids = received(services, 6)
    again = services.inbox.receive(InboundMessage(channel="fake", user_id="u2", provider_message_id="m2b", text="hi"))
    ids.append(again.message_id)  # a second message of u2's, in the same batch
    committed = commits(services)
    answers = services.answerer._answer_all(ids)
    assert len(committed) == 1 and unanswered(services) == 0
    assert all(written for written, _ in answers)
    # each answer's first reply is leased for sending, but for u2's second: the rest of u2's first
    # answer (a reply in parts) goes first
    leased = [[item.user_id for item, _ in claims] for _, claims in answers]
    assert leased == [["u0"], ["u1"], ["u2"], ["u3"], ["u4"], ["u5"], []]
    rows = {row.id: row for row in outbox(services)}
    first, second = (rows[answer[0][0]] for answer in (answers[2], answers[6]))
    assert first.id < second.id and "Payouts" in first.text and second.status == "pending"


def test_a_batch_given_a_later_message_first_answers_the_earlier_one_first_and_once(services: Services) -> None:
    first, second = (
        services.inbox.receive(InboundMessage(channel="fake", user_id="u", provider_message_id=f"x{n}", text=text))
        for n, text in enumerate(("hi", "when is my payout"))
    )
    others = received(services, 2)
    answers = services.inbox.process_all([others[0], second.message_id, first.message_id, others[1]])
    assert answers[0] and answers[3]
    assert answers[2] == []  # answered with the later one, in the order written
    rows = {row.id: row for row in outbox(services)}
    answered = [rows[item_id].text for item_id in answers[1]]
    payout = next(n for n, text in enumerate(answered) if "Payouts are sent" in text)
    assert answered[0].startswith("Hi!") and 0 < payout  # the greeting for "hi" first
    assert unanswered(services) == 0


def test_a_message_that_cannot_be_decided_is_answered_alone_and_the_others_as_usual(services: Services) -> None:
    ids = received(services, 2)
    boom = services.inbox.receive(InboundMessage(channel="fake", user_id="ub", provider_message_id="mb", text="boom"))
    ids.insert(1, boom.message_id)
    committed = commits(services)
    answers = services.answerer._answer_all(ids)  # the batch rolls back, then each in its own transaction
    assert len(committed) == 3 and unanswered(services) == 0
    texts = {item.user_id: item.text for answer in answers for item, _ in answer[1]}
    assert texts["ub"].startswith("Sorry, something went") and "Payouts are sent" in texts["u0"]
    assert Counter(row.user_id for row in outbox(services) if row.text == texts["ub"]) == {"ub": 1}


async def test_a_message_is_stored_while_every_thread_of_the_default_pool_is_taken(services: Services) -> None:
    limiter = to_thread.current_default_thread_limiter()
    tokens, limiter.total_tokens = limiter.total_tokens, 1
    release = threading.Event()
    blocker = asyncio.ensure_future(to_thread.run_sync(release.wait))
    try:
        await asyncio.sleep(0.05)
        assert limiter.borrowed_tokens == 1
        message = InboundMessage(channel="fake", user_id="u", provider_message_id="m", text="hi")
        accepted = await asyncio.wait_for(store(services.inbox, message), timeout=10)
        assert not accepted.duplicate and unanswered(services) == 1
    finally:
        release.set()
        await blocker
        limiter.total_tokens = tokens


def hold_first_batch(monkeypatch: pytest.MonkeyPatch, services: Services) -> tuple[list[int], threading.Event]:
    """Records the size of every batch Inbox.receive_all stores; the first waits for the event."""
    sizes: list[int] = []
    release = threading.Event()
    real = services.inbox.receive_all

    def receive_all(messages: list[InboundMessage]) -> list[Accepted]:
        sizes.append(len(messages))
        if len(sizes) == 1:
            release.wait(10)
        return real(messages)

    monkeypatch.setattr(services.inbox, "receive_all", receive_all)
    return sizes, release


async def test_webhooks_waiting_for_the_intake_are_stored_together_each_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes, release = hold_first_batch(monkeypatch, services)
    messages = [
        InboundMessage(channel="fake", user_id=f"u{n}", provider_message_id=f"m{n}", text="hi") for n in range(50)
    ]
    deliveries = messages + messages[:10]  # ten delivered twice, among the others
    storing = [asyncio.ensure_future(store(services.inbox, message)) for message in deliveries]
    await asyncio.sleep(0.2)  # every store is waiting, the first batch held
    release.set()
    accepted = await asyncio.wait_for(asyncio.gather(*storing), timeout=30)
    assert sum(sizes) == len(deliveries) and max(sizes) == STORE_BATCH and len(sizes) < len(deliveries) // 2
    # of a message delivered twice, either delivery may be stored first (batches commit in any order)
    assert [item.message_id for item in accepted[50:]] == [item.message_id for item in accepted[:10]]
    assert [
        (first.duplicate, again.duplicate) in {(False, True), (True, False)}
        for first, again in zip(accepted[:10], accepted[50:])
    ] == [True] * 10
    assert not any(item.duplicate for item in accepted[10:50])
    assert len({item.message_id for item in accepted}) == 50 and unanswered(services) == 50


async def test_a_batch_that_fails_is_stored_one_by_one_and_only_the_failing_webhook_fails(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = services.inbox.receive

    def conflict(messages: list[InboundMessage]) -> list[Accepted]:
        raise IntegrityError("INSERT INTO channel_identities", {}, ValueError("a concurrent store"))

    def receive(message: InboundMessage) -> Accepted:
        if message.user_id == "u3":
            raise OperationalError("INSERT INTO messages", {}, ValueError("value too long"))
        return real(message)

    monkeypatch.setattr(services.inbox, "receive_all", conflict)
    monkeypatch.setattr(services.inbox, "receive", receive)
    messages = [
        InboundMessage(channel="fake", user_id=f"u{n}", provider_message_id=f"m{n}", text="hi") for n in range(8)
    ]
    results = await asyncio.gather(*(store(services.inbox, message) for message in messages), return_exceptions=True)
    assert [type(result).__name__ for result in results] == ["Accepted"] * 3 + ["OperationalError"] + ["Accepted"] * 4
    assert unanswered(services) == 7


async def test_a_webhook_that_stops_waiting_before_a_thread_takes_it_is_not_stored(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bots.intake.INTAKE_THREADS", 1)
    sizes, release = hold_first_batch(monkeypatch, services)
    first = asyncio.ensure_future(
        store(services.inbox, InboundMessage(channel="fake", user_id="a", provider_message_id="1", text="hi"))
    )
    await asyncio.sleep(0.1)
    gone = asyncio.ensure_future(
        store(services.inbox, InboundMessage(channel="fake", user_id="b", provider_message_id="2", text="hi"))
    )
    await asyncio.sleep(0.05)
    gone.cancel()  # the client went away: no 200, so the provider sends it again
    release.set()
    assert not (await asyncio.wait_for(first, timeout=10)).duplicate
    for _ in range(100):
        if not intake._WAITING:  # the thread has passed the cancelled one by
            break
        await asyncio.sleep(0.02)
    assert sizes == [1] and unanswered(services) == 1


async def test_with_answers_by_workers_the_web_leaves_messages_that_two_workers_answer_once(database_url: str) -> None:
    web, workers = built(database_url, answers_by_workers=True), [built(database_url) for _ in range(2)]
    try:
        ids = received(web, USERS)
        await answer(web, ids)  # what a webhook does after its response
        assert unanswered(web) == USERS and outbox(web) == []

        stopping = asyncio.Event()
        answering = [asyncio.create_task(answer_waiting(w.inbox, w.answerer, stopping=stopping)) for w in workers]
        for _ in range(500):
            if unanswered(web) == 0:
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*answering), timeout=30)

        assert unanswered(web) == 0
        parts = Counter(row.user_id for row in outbox(web))
        assert set(parts) == {f"u{n}" for n in range(USERS)} and len(set(parts.values())) == 1  # one reply each
        sent = Counter(m.user_id for w in workers for m in w.channels.get("fake").sent)
        assert sent == parts and web.channels.get("fake").sent == []
    finally:
        for services in (web, *workers):
            services.database.dispose()


async def test_a_worker_answers_messages_that_come_while_it_waits(services: Services) -> None:
    stopping = asyncio.Event()
    answering = asyncio.create_task(answer_waiting(services.inbox, services.answerer, stopping=stopping))
    try:
        for wave in range(3):
            await asyncio.sleep(0.3)  # idle long enough to have backed off to its longest wait
            services.inbox.receive(
                InboundMessage(channel="fake", user_id=f"w{wave}", provider_message_id=f"w{wave}", text="hi")
            )
            for _ in range(100):
                if unanswered(services) == 0:
                    break
                await asyncio.sleep(0.02)
            assert unanswered(services) == 0
    finally:
        stopping.set()
        await asyncio.wait_for(answering, timeout=30)
    assert {m.user_id for m in services.channels.get("fake").sent} == {"w0", "w1", "w2"}


def conflict() -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL rolls a transaction back to break a deadlock."""
    return OperationalError("SELECT", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def test_an_answer_rolled_back_for_a_deadlock_is_tried_again_not_apologised_for(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (first, second) = received(services, 2)
    real, calls = services.inbox._process, Counter[int]()

    def deadlocked(session: Session, message_id: int, screen: object = None) -> list[int]:
        calls[message_id] += 1
        if message_id == second or calls[message_id] == 1:  # the second message every time
            raise conflict()
        return real(session, message_id)

    monkeypatch.setattr(services.inbox, "_process", deadlocked)
    assert services.inbox.process(first)  # answered at the second try
    with pytest.raises(OperationalError):
        services.inbox.process(second)
    assert calls == {first: 2, second: CONFLICT_ATTEMPTS}
    assert "dialogue failed" not in caplog.text and unanswered(services) == 1  # the second waits for the sweep
    assert not any(row.text.startswith("Sorry") for row in outbox(services))


@pytest.mark.only_on(
    "postgresql", reason="SQLite has one writer at a time: its transactions never hold each other's locks"
)
def test_two_batches_sharing_conversations_in_opposite_orders_do_not_deadlock(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = received(services, 2)
    meet = threading.Barrier(2, timeout=2)
    real, met = services.inbox._answer_waiting, Counter[int]()

    def meeting(session: Session, conversation: object, waiting: list, message_id: int, screen: object) -> list[int]:  # type: ignore[type-arg]
        answered = real(session, conversation, waiting, message_id, screen)  # type: ignore[arg-type]
        met[message_id] += 1
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()  # each batch holds its first conversation here, unless it holds both
        return answered

    # the step process_all takes for each message, its conversations locked
    monkeypatch.setattr(services.inbox, "_answer_waiting", meeting)
    with ThreadPoolExecutor(2) as pool:  # a deadlock would roll one back with an error
        answers = list(pool.map(services.inbox.process_all, [[a, b], [b, a]]))
    assert sorted(len([rows for rows in answer if rows]) for answer in answers) == [0, 2]
    assert met == {a: 1, b: 1}  # one batch answered both, under both locks; the other found them answered
    assert unanswered(services) == 0


@pytest.mark.only_on(
    "postgresql", reason="SQLite has one writer at a time: a store always waits for an answer's transaction"
)
def test_a_message_is_stored_while_its_conversation_is_being_answered(services: Services) -> None:
    (first,) = received(services, 1)
    again = InboundMessage(channel="fake", user_id="u0", provider_message_id="m0b", text="and my refund?")
    # a timeout leaves the transaction first, so that the lock is let go and the pool can end
    with ThreadPoolExecutor(1) as pool, services.database.transaction() as session:
        session.execute(waiting.LOCK_CONVERSATION, {"message_id": first}).first()  # as an answer holds it
        stored = pool.submit(services.inbox.receive, again).result(timeout=10)
    assert not stored.duplicate and unanswered(services) == 2
