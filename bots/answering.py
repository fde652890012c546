"""Answering stored messages in a web process: a few lanes, in batches, after the webhooks' stores.

A webhook stores its message and answers 200 (bots.intake.take_in); the answer is worked out
after the response. Each webhook's answer used to run as a task of its own. Under a burst larger
than one process can answer, thousands of those tasks queued for the same threads as the
webhooks' own stores, and a webhook waited behind every answer queued before it: at 200 messages/s
the webhook p99 was over 20 s, past the time Twilio waits for a webhook (15 s).

Now the answers of a process go through at most `LANES` lanes. A lane takes up to `BATCH` waiting
messages at a time: one hop to a worker thread answers them in one transaction (each message in a
transaction of its own should that fail), with each first reply leased there, their replies go
out concurrently, and those sent are written in one transaction (core.outbox's
`dispatch_answers`). The webhooks' stores have threads of their own (bots.intake), so a burst
slows the answers, never the intake; a backlog is answered as soon as the burst is over. A
caller awaits its own messages' answers (a webhook's background task does, so that it ends, in
tests too, when the reply has gone).

A message left waiting when the process stops is answered by the background loop's sweep of
stranded messages (bots.worker), in this process after a restart or in any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bots.settings import Settings
from core.inbox import Inbox
from core.outbox import Claim, Dispatcher
from core.ratelimit import IdentityLimit, Throttle

log = logging.getLogger(__name__)
# Lanes per process: two, so that one lane's replies are on their way to the provider while the
# other works out the next batch. More lanes only take turns on the same interpreter lock.
LANES = 2
# Messages one lane takes at a time: enough that a burst costs few thread hops and transactions
# for the sends, few enough that the first of them is not kept long waiting for the last.
BATCH = 16

Answer = tuple[list[int], list[Claim]]  # the outbox rows an answer wrote, and those leased already


@dataclass
class _Lanes:
    """One event loop's queue and lanes (tests run several loops, one after another)."""

    waiting: deque[tuple[int, asyncio.Future[None]]] = field(default_factory=deque)
    running: set[asyncio.Task[None]] = field(default_factory=set)


class Answerer:
    """Answers stored messages and sends the replies, in at most `lanes` batches at a time."""

    def __init__(
        self,
        inbox: Inbox,
        dispatcher: Dispatcher,
        throttle: Throttle,
        *,
        lanes: int = LANES,
        batch: int = BATCH,
    ) -> None:
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.throttle = throttle
        self.lanes = lanes
        self.batch = batch
        self._loops: dict[asyncio.AbstractEventLoop, _Lanes] = {}

    async def answer(self, message_ids: Sequence[int]) -> None:
        """Answer these stored messages (each once: one answered already is left as it is) and send
        the replies; returns when their batches are done."""
        if not message_ids:
            return
        loop = asyncio.get_running_loop()
        lanes = self._lanes(loop)
        futures = []
        for message_id in message_ids:
            future: asyncio.Future[None] = loop.create_future()
            lanes.waiting.append((message_id, future))
            futures.append(future)
        # A lane that found nothing waiting has ended (done, though its callbacks have not run yet).
        lanes.running = {task for task in lanes.running if not task.done()}
        while len(lanes.running) < self.lanes:
            lanes.running.add(loop.create_task(self._lane(lanes)))
        await asyncio.gather(*futures)

    def _lanes(self, loop: asyncio.AbstractEventLoop) -> _Lanes:
        for closed in [other for other in self._loops if other.is_closed()]:
            del self._loops[closed]
        return self._loops.setdefault(loop, _Lanes())

    async def _lane(self, lanes: _Lanes) -> None:
        while lanes.waiting:
            taken = [lanes.waiting.popleft() for _ in range(min(self.batch, len(lanes.waiting)))]
            try:
                answers = await run_in_threadpool(self._answer_all, [message_id for message_id, _ in taken])
                await self.dispatcher.dispatch_answers(answers)
            except (OperationalError, InterfaceError) as exc:
                # The database went away while sending: what is left is answered by the sweep.
                log.warning("answering paused, database unavailable: %s", type(exc.orig).__name__)
            except Exception:
                log.exception("answering a batch of messages failed; the sweep answers what is left")
            finally:
                for _, future in taken:
                    if not future.done():
                        future.set_result(None)

    def _answer_all(self, message_ids: list[int]) -> list[Answer]:
        """In a worker thread: answer the messages in one transaction, each with its first reply
        leased for sending (Throttle.screen and Dispatcher's own claim would take one each).

        Should that fail (a database error, a failure to decide one), each is answered in a
        transaction of its own instead, where a failure to decide one is its own apology
        (core.inbox). At a database error there, the answers so far are returned, to be sent,
        and the rest left to the sweep."""
        together = self._answer_together(message_ids) if len(message_ids) > 1 else None
        if together is not None:
            return together
        answers: list[Answer] = []
        for message_id in message_ids:
            try:
                answers.append(self._answer_one(message_id))
            except (OperationalError, InterfaceError) as exc:
                log.warning("answering paused, database unavailable: %s", type(exc.orig).__name__)
                break
        return answers

    def _answer_together(self, message_ids: list[int]) -> list[Answer] | None:
        """The messages answered in one transaction (Inbox.process_all), or None when it rolled back."""
        leased: list[list[Claim]] = []

        def lease(session: Session, answers: list[list[int]]) -> None:
            leased[:] = self.dispatcher.lease_all(session, answers)

        try:
            written = self.inbox.process_all(message_ids, screen=self.throttle.screen, written=lease)
        except Exception:  # noqa: BLE001 (each message is answered again alone, and meets its own error)
            return None
        return list(zip(written, leased, strict=True))

    def _answer_one(self, message_id: int) -> Answer:
        """One transaction screens, answers, and leases the first reply for sending: the rows
        written, and those leased."""
        leased: list[Claim] = []

        def lease(session: Session, item_ids: list[int]) -> None:
            leased[:] = self.dispatcher.lease(session, item_ids)  # an apology replaces a failed answer's

        return self.inbox.process(message_id, screen=self.throttle.screen, written=lease), leased


def identity_limit(settings: Settings) -> IdentityLimit:
    """The per-identity limit: RATE_LIMIT_MESSAGES per RATE_LIMIT_WINDOW_SECONDS."""
    return IdentityLimit(
        messages=settings.rate_limit_messages, window=timedelta(seconds=settings.rate_limit_window_seconds)
    )
